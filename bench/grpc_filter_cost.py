"""What each filter of the gRPC fast path costs Envoy, against the nginx stand-in (gRPC, 16 connections).

A gRPC request names its model in the body, so a gRPC hit needs filters a REST hit does not. Without the
model-key module: the field extraction (parses the first message), ``set_filter_state`` (the model key, then
the route is chosen again), and ext_proc, which stays in the filter chain (the chain is made for the route
chosen before the key is known) though the fast-path route turns it off. Each variant is a static Envoy
config adding one of them; the last one has tfscache's model-key module (``envoy/modules/grpc_model_key.c``)
alone instead, as the daemon configures it when the module can be built, and then the parts of a fast-path
route one by one. The last two variants route with the daemon's own gRPC route configuration, once with one
model and once with 2,001: route lookup must not grow with the number of resident models. The table gives
requests/s, p50 and Envoy's CPU per request. Run by hand (not part of ``make bench``)::

    .venv/bin/python -m bench.grpc_filter_cost
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import betterproto2
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

from bench.load import LoadSettings, grpc_target, run_load
from bench.payloads import MODEL_NAME, write_payloads
from bench.standin import NginxStandIn
from tests.harness.envoy import EnvoyProcess
from tests.harness.processes import LOOPBACK, ProcessRegistry, free_port, port_accepts, wait_until
from tfscachectl.envoy_launcher import envoy_file
from tfscachectl.envoy_module import grpc_key_module
from xds.clusters import node_cluster, single_node_cluster_name
from xds.descriptors import DESCRIPTOR_SET_NAME, read_descriptor_set
from xds.fastpath import (
    GRPC_KEY_FORMAT,
    MODEL_KEY_STATE,
    MODULE_FILTER_NAME,
    FastKey,
    FastPathEncoder,
    FastPathEntry,
)
from xds.listeners import RESERVED_HEADERS
from xds.names import CLUSTER_NODES_GRPC, NODE_HEADER
from xds.resources import build_fast_path_configurations
from xds.routes import HOST_SELECTION_ATTEMPTS, RETRY_ON
from xds.view import Address, ClusterView, Limits, NodeView, Timeouts

CONCURRENCY = 16
ROUNDS = 2
_TYPES = "type.googleapis.com/envoy.extensions.filters"
VARIANTS = (
    ("static route", ()),
    ("+ grpc_field_extraction", ("extract",)),
    ("+ set_filter_state, route chosen again", ("extract", "key")),
    ("+ ext_proc in the chain, off for the route", ("extract", "key", "ext_proc")),
    ("static route + tfscache's model-key module (route chosen again)", ("module",)),
    ("+ the virtual host's retry policy (previous hosts)", ("module", "retry")),
    ("+ the route's stat prefix and node header", ("module", "retry", "stats")),
    ("+ override_host and outlier detection on the cluster", ("module", "retry", "stats", "override")),
    ("+ the reserved headers' early removal", ("module", "retry", "stats", "override", "strip")),
)
#: The daemon's own gRPC route configuration (matcher tree, per-node cluster), with one model's route and
#: with 2,000 more: route lookup must not grow with the number of resident models.
ROUTE_TABLE_VARIANTS = (
    ("the daemon's gRPC routes, 1 model routed", ("module", "strip", "table", "routes=0")),
    ("the daemon's gRPC routes, 2,001 models routed", ("module", "strip", "table", "routes=2000")),
)
#: Parts of the fast path's route, cluster and connection manager rather than filters.
_NOT_FILTERS = frozenset({"retry", "stats", "override", "strip", "table"})


def _filter(kind: str) -> dict[str, Any]:
    if kind == "module":
        module = grpc_key_module()
        if module is None:
            raise SystemExit("the model-key module could not be built here (see the log)")
        return {
            "name": "tfscache.grpc_model_key",
            "typed_config": {
                "@type": f"{_TYPES}.http.dynamic_modules.v3.DynamicModuleFilter",
                "dynamic_module_config": {
                    "module": {"local": {"filename": str(module)}},
                    "do_not_close": True,
                },
                "filter_name": MODULE_FILTER_NAME,
                "filter_config": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": MODEL_KEY_STATE,
                },
            },
        }
    if kind == "extract":
        fields: dict[str, dict[str, Any]] = {
            f: {} for f in ("model_spec.name", "model_spec.version.value", "model_spec.version_label")
        }
        return {
            "name": "envoy.filters.http.grpc_field_extraction",
            "typed_config": {
                "@type": f"{_TYPES}.http.grpc_field_extraction.v3.GrpcFieldExtractionConfig",
                "descriptor_set": {"filename": str(envoy_file(DESCRIPTOR_SET_NAME))},
                "extractions_by_method": {
                    "tensorflow.serving.PredictionService.Predict": {"request_field_extractions": fields}
                },
            },
        }
    if kind == "key":
        value: dict[str, Any] = {"object_key": "tfscache.model_key", "factory_key": "envoy.string"}
        value["format_string"] = {"text_format_source": {"inline_string": GRPC_KEY_FORMAT}}
        return {
            "name": "envoy.filters.http.set_filter_state",
            "typed_config": {
                "@type": f"{_TYPES}.http.set_filter_state.v3.Config",
                "clear_route_cache": True,
                "on_request_headers": [value],
            },
        }
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": f"{_TYPES}.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": "upstream"}},
        },
    }


def bootstrap(filters: tuple[str, ...], port: int, upstream: str) -> dict[str, Any]:
    host, _, upstream_port = upstream.rpartition(":")
    route: dict[str, Any] = {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}
    if "ext_proc" in filters:
        route["typed_per_filter_config"] = {
            "envoy.filters.http.ext_proc": {
                "@type": f"{_TYPES}.http.ext_proc.v3.ExtProcPerRoute",
                "disabled": True,
            }
        }
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": f"{_TYPES}.http.router.v3.Router"},
    }
    manager: dict[str, Any] = {
        "@type": f"{_TYPES}.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "grpc",
        "codec_type": "HTTP2",
        "http_filters": [
            *(_filter(f) for f in filters if f not in _NOT_FILTERS and not f.startswith("routes=")),
            router,
        ],
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
    }
    if "retry" in filters:
        manager["route_config"]["virtual_hosts"][0]["retry_policy"] = {
            "retry_on": RETRY_ON,
            "num_retries": 2,
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3."
                        "PreviousHostsPredicate"
                    },
                }
            ],
            "host_selection_retry_max_attempts": HOST_SELECTION_ATTEMPTS,
        }
    if "stats" in filters:
        route["stat_prefix"] = "fp_0123456789abcdef_latest"
        route["request_headers_to_add"] = [
            {"header": {"key": NODE_HEADER, "value": upstream}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        ]
    if "strip" in filters:
        manager["early_header_mutation_extensions"] = [
            {
                "name": "envoy.http.early_header_mutation.header_mutation",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation."
                    "header_mutation.v3.HeaderMutation",
                    "mutations": [{"remove": header} for header in RESERVED_HEADERS],
                },
            }
        ]
    http2 = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }
    endpoint = {"address": {"socket_address": {"address": host, "port_value": int(upstream_port)}}}
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "grpc",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "upstream",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": http2,
                    "load_assignment": {
                        "cluster_name": "upstream",
                        "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
                    },
                    **(_node_cluster_policies() if "override" in filters else {}),
                }
            ],
        },
    }
    for item in filters:
        if item.startswith("routes="):
            _use_daemon_routes(config, manager, upstream, int(item.removeprefix("routes=")))
    return config


def _use_daemon_routes(config: dict[str, Any], manager: dict[str, Any], upstream: str, more: int) -> None:
    """Replace the static route with the route configuration the daemon would build for the bench model
    and ``more`` other models, all held by the upstream (as a node), and add that node's own cluster."""
    host, _, port = upstream.rpartition(":")
    node = Address(host, int(port))
    view = ClusterView(
        nodes=(NodeView("stand-in", node, node),),
        ext_proc=Address(LOOPBACK, 1),
        rest_listener=Address(LOOPBACK, 1),
        grpc_listener=Address(LOOPBACK, 1),
        timeouts=Timeouts(ensure_deadline_s=30.0, request_s=30.0),
        grpc_descriptors=read_descriptor_set(),
    )
    models = [MODEL_NAME, *(f"tenant-{index:04d}" for index in range(1, more + 1))]
    entries = [FastPathEntry(FastKey(model), (node,), (node,)) for model in models]
    _, grpc = build_fast_path_configurations(view, entries, FastPathEncoder())
    manager["route_config"] = RouteConfiguration.parse(bytes(grpc)).to_dict(casing=betterproto2.Casing.SNAKE)
    (cluster,) = config["static_resources"]["clusters"]
    name = single_node_cluster_name(CLUSTER_NODES_GRPC, node)
    own = {**cluster, "name": name, "load_assignment": {**cluster["load_assignment"], "cluster_name": name}}
    config["static_resources"]["clusters"].append(own)


def _node_cluster_policies() -> dict[str, Any]:
    """The node clusters' load balancing and outlier detection (xds.clusters), as JSON."""
    cluster = node_cluster("upstream", Timeouts(ensure_deadline_s=1.0, request_s=1.0), Limits(), http2=True)
    as_json = cluster.to_dict(casing=betterproto2.Casing.SNAKE)
    # betterproto2 writes the field enforcing_consecutive_5xx as "..._5_xx".
    outliers = {key.replace("_5_xx", "_5xx"): value for key, value in as_json["outlier_detection"].items()}
    return {"load_balancing_policy": as_json["load_balancing_policy"], "outlier_detection": outliers}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tfscache-grpc-cost-") as temp:
        work = Path(temp)
        registry = ProcessRegistry(work / "logs")
        try:
            nginx = NginxStandIn(registry, work / "nginx").start()
            payloads = write_payloads(work / "payloads")
            print("| filters | requests/s | p50 ms | Envoy CPU µs / request |\n|---|---:|---:|---:|")
            for round_number in range(ROUNDS):
                for label, filters in (*VARIANTS, *ROUTE_TABLE_VARIANTS):
                    port = free_port()
                    name = f"envoy-{round_number}-{len(filters)}"
                    config = bootstrap(filters, port, nginx.grpc_address)
                    envoy = EnvoyProcess(
                        registry, config, work / name, name=name, log_level="warning"
                    ).start()
                    wait_until(lambda: port_accepts(port), 10, "Envoy's listener")  # noqa: B023 (awaited here)
                    before = cpu_seconds(envoy.process.pid)
                    target = grpc_target(f"127.0.0.1:{port}", payloads.grpc_body)
                    result = run_load(
                        target, CONCURRENCY, LoadSettings(duration_s=4, warm_up_s=0.5), work / "h2load"
                    )
                    per_request = 1e6 * (cpu_seconds(envoy.process.pid) - before) / max(result.requests, 1)
                    print(
                        f"| {label} | {result.rps:,.0f} | {result.p50_ms:.3f} | {per_request:.1f} |",
                        flush=True,
                    )
                    envoy.stop()
        finally:
            registry.stop_all()


if __name__ == "__main__":
    main()
