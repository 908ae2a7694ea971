"""Scenario (b): Envoy with no cache logic, one static route per protocol straight to one upstream.

Two listeners on loopback: REST (HTTP/1.1, or HTTP/2 if a client asks) to a cluster spoken to over HTTP/1.1,
and gRPC (HTTP/2 only) to a cluster spoken to over HTTP/2. Each has a single catch-all route and no HTTP
filter but the router: this is the cost of Envoy itself, which the cache's fast path is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.envoy import EnvoyProcess
from tests.harness.processes import LOOPBACK, ProcessRegistry, free_port, port_accepts, wait_until
from tfscachectl.errors import ConfigError

LISTENERS_READY_TIMEOUT_S = 10.0
UPSTREAM_CONNECT_TIMEOUT = "1s"
#: As the tfscache bootstrap has it (Envoy warns at start without a bound).
MAX_DOWNSTREAM_CONNECTIONS = 50_000
LOG_LEVEL = "warning"
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_HTTP_PROTOCOL_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_DOWNSTREAM_CONNECTIONS = (
    "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3"
    ".DownstreamConnectionsConfig"
)


def _socket_address(address: str) -> dict[str, Any]:
    host, separator, port = address.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise ConfigError(f"an upstream address is host:port, not {address!r}")
    return {"socket_address": {"address": host, "port_value": int(port)}}


def _listener(name: str, port: int, cluster: str, *, http2_only: bool) -> dict[str, Any]:
    manager = {
        "@type": _HCM,
        "stat_prefix": name,
        "codec_type": "HTTP2" if http2_only else "AUTO",
        "route_config": {
            "name": name,
            "virtual_hosts": [
                {
                    "name": name,
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
                }
            ],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    return {
        "name": name,
        "address": _socket_address(f"{LOOPBACK}:{port}"),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def _cluster(name: str, address: str, *, http2: bool) -> dict[str, Any]:
    protocol: dict[str, Any] = {"http2_protocol_options": {}} if http2 else {"http_protocol_options": {}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": UPSTREAM_CONNECT_TIMEOUT,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_PROTOCOL_OPTIONS,
                "explicit_http_config": protocol,
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket_address(address)}}]}],
        },
    }


def static_bootstrap(
    rest_port: int, grpc_port: int, upstream_rest: str, upstream_grpc: str
) -> dict[str, Any]:
    """The bootstrap: REST on ``rest_port`` to ``upstream_rest``, gRPC on ``grpc_port`` to ``upstream_grpc``
    (both ``host:port``). The admin interface is added by whoever writes it (loopback, a free port)."""
    return {
        "static_resources": {
            "listeners": [
                _listener("rest", rest_port, "upstream_rest", http2_only=False),
                _listener("grpc", grpc_port, "upstream_grpc", http2_only=True),
            ],
            "clusters": [
                _cluster("upstream_rest", upstream_rest, http2=False),
                _cluster("upstream_grpc", upstream_grpc, http2=True),
            ],
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": _DOWNSTREAM_CONNECTIONS,
                        "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
                    },
                }
            ]
        },
    }


@dataclass(frozen=True, slots=True)
class StaticEnvoy:
    """A running static Envoy and its client-facing addresses."""

    envoy: EnvoyProcess
    rest_port: int
    grpc_port: int

    @property
    def rest_address(self) -> str:
        return f"{LOOPBACK}:{self.rest_port}"

    @property
    def grpc_address(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    def stop(self) -> int | None:
        return self.envoy.stop()


def start_static_envoy(
    registry: ProcessRegistry,
    work_dir: Path,
    upstream_rest: str,
    upstream_grpc: str,
    *,
    name: str = "envoy-static",
    concurrency: int | None = None,
) -> StaticEnvoy:
    """Start Envoy with ``static_bootstrap`` on free loopback ports; returns once both listeners accept."""
    rest_port, grpc_port = free_port(), free_port()
    bootstrap = static_bootstrap(rest_port, grpc_port, upstream_rest, upstream_grpc)
    envoy = EnvoyProcess(
        registry, bootstrap, work_dir, name=name, log_level=LOG_LEVEL, concurrency=concurrency
    ).start()
    wait_until(
        lambda: port_accepts(rest_port) and port_accepts(grpc_port),
        LISTENERS_READY_TIMEOUT_S,
        "the static Envoy's listeners",
        process=envoy.process,
    )
    return StaticEnvoy(envoy, rest_port, grpc_port)
