"""The cluster view: everything the resource builders need to know, as frozen values.

The daemon builds a ``ClusterView`` from its settings and from discovery (which nodes exist, which are
healthy) and hands it to ``xds.build_resources``. Nothing here does I/O; the values check themselves when
they are made, so a builder never sees an impossible view.

Node addresses are IP literals: Envoy's ``override_host`` load balancing policy only accepts ``IP:port``
in the header that names the chosen node, so EDS endpoints are IP addresses too.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from dataclasses import dataclass, field

from tfscachectl.errors import ConfigError

#: TF Serving accepts messages up to 2 GiB; Envoy's buffers and gRPC messages allow this much by default.
DEFAULT_MESSAGE_LIMIT_BYTES = 256 * 1024 * 1024
#: Time allowed for the ext_proc answer beyond the ensure deadline (the daemon's own work and the hop).
DEFAULT_EXT_PROC_MARGIN_S = 2.0
#: Time allowed to open a TCP connection to a node or to the daemon.
DEFAULT_CONNECT_TIMEOUT_S = 1.0
#: Retries of a request whose connection to a node failed or whose stream was refused.
DEFAULT_RETRIES = 2

_MAX_PORT = 65535
# Envoy stores buffer limits in a uint32.
_MAX_BUFFER_BYTES = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Address:
    """An IP address and a TCP port (``0`` lets the kernel pick, for listeners only)."""

    host: str
    port: int

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError as exc:
            raise ConfigError(f"{self.host!r} is not an IP address (Envoy needs IP:port here)") from exc
        if not 0 <= self.port <= _MAX_PORT:
            raise ConfigError(f"port {self.port} of {self.host} is out of range")

    @classmethod
    def parse(cls, text: str) -> Address:
        """``"127.0.0.1:8500"`` or ``"[::1]:8500"``."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"{text!r} is not host:port")
        return cls(host.removeprefix("[").removesuffix("]"), int(port))

    def __str__(self) -> str:
        """``host:port`` as Envoy writes it (IPv6 in brackets): the form ``override_host`` expects."""
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class NodeView:
    """One TF Serving node as Envoy sees it: its REST and gRPC addresses and whether it is healthy."""

    id: str
    rest: Address
    grpc: Address
    healthy: bool = True

    def __post_init__(self) -> None:
        if not self.id:
            raise ConfigError("a node id is empty")
        for address in (self.rest, self.grpc):
            if address.port == 0:
                raise ConfigError(f"node {self.id}: {address} has no port")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each part of a request that Envoy times."""

    ensure_deadline_s: float
    """How long the daemon may take to make a model resident (fetch and load) before answering ext_proc."""
    request_s: float
    """How long a node may take to answer a request once it is forwarded."""
    ext_proc_margin_s: float = DEFAULT_EXT_PROC_MARGIN_S
    connect_s: float = DEFAULT_CONNECT_TIMEOUT_S

    def __post_init__(self) -> None:
        for name in ("ensure_deadline_s", "request_s", "ext_proc_margin_s", "connect_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"timeout {name} must be a positive number of seconds, not {value!r}")

    @property
    def ext_proc_message_s(self) -> float:
        """ext_proc's ``message_timeout``: Envoy's default (200 ms) would fail every model load."""
        return self.ensure_deadline_s + self.ext_proc_margin_s

    @property
    def route_s(self) -> float:
        """The route timeout, which also covers the ext_proc call made before the request is forwarded."""
        return self.ext_proc_message_s + self.request_s


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes of the largest request and response Envoy buffers or passes (bytes)."""

    message_bytes: int = DEFAULT_MESSAGE_LIMIT_BYTES

    def __post_init__(self) -> None:
        if not 0 < self.message_bytes <= _MAX_BUFFER_BYTES:
            raise ConfigError(f"message limit {self.message_bytes} must be in 1..{_MAX_BUFFER_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The whole input of the resource builders."""

    nodes: tuple[NodeView, ...]
    ext_proc: Address
    """Where the daemon's ext_proc server listens."""
    rest_listener: Address
    grpc_listener: Address
    timeouts: Timeouts
    grpc_descriptors: bytes = field(repr=False)
    """TF Serving's gRPC API as a serialized FileDescriptorSet (``xds.descriptors.read_descriptor_set``)."""
    limits: Limits = field(default_factory=Limits)
    retries: int = DEFAULT_RETRIES
    grpc_key_module: str | None = None
    """Where Envoy finds the compiled gRPC model-key module (``tfscachectl.envoy_module``), if it has one:
    gRPC hits are then routed by it alone, and gRPC misses go through an internal listener (routing.md)."""

    def __post_init__(self) -> None:
        ids = [node.id for node in self.nodes]
        duplicates = sorted({node_id for node_id in ids if ids.count(node_id) > 1})
        if duplicates:
            raise ConfigError(f"node ids listed more than once: {', '.join(duplicates)}")
        for kind in ("rest", "grpc"):
            addresses = [str(getattr(node, kind)) for node in self.nodes]
            shared = sorted({a for a in addresses if addresses.count(a) > 1})
            if shared:
                raise ConfigError(f"several nodes share the {kind} address {', '.join(shared)}")
        if self.ext_proc.port == 0:
            raise ConfigError(f"the ext_proc address {self.ext_proc} has no port")
        if not self.grpc_descriptors:
            raise ConfigError("the gRPC descriptor set is empty")
        if self.retries < 0:
            raise ConfigError(f"retries must not be negative, not {self.retries}")
        if self.grpc_key_module is not None and not self.grpc_key_module.startswith("/"):
            raise ConfigError(
                f"the gRPC model-key module must be an absolute path, not {self.grpc_key_module!r}"
            )

    def with_nodes(self, nodes: tuple[NodeView, ...]) -> ClusterView:
        """The same view with another set of nodes (membership changed)."""
        return dataclasses.replace(self, nodes=nodes)
