"""The stack's TCP ports: the fixed ones from the settings, the others picked free at start.

Every port is checked before anything starts, so a taken port is one clear error rather than a child that
dies later. A port picked free (the kernel's choice for port 0) could in principle be taken by someone else
between the pick and the child's bind; the child's death then names it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

from tfscachectl.errors import ConfigError
from tfscachectl.local.settings import StackSettings

LOOPBACK = "127.0.0.1"
#: Ports each node uses: its serving backend's gRPC and REST, its agent's API and metrics page.
PORTS_PER_NODE = 4


@dataclass(frozen=True, slots=True)
class NodePorts:
    serving_grpc: int
    serving_rest: int
    agent: int
    agent_metrics: int

    def __iter__(self) -> Iterator[int]:
        return iter((self.serving_grpc, self.serving_rest, self.agent, self.agent_metrics))


@dataclass(frozen=True, slots=True)
class StackPorts:
    """Every port of one run (a port asked as 0 is a free one picked here, so the daemon can be told it)."""

    rest: int
    grpc: int
    admin: int
    xds: int
    ext_proc: int
    metrics: int
    nodes: tuple[NodePorts, ...]
    admin_api: int = 0  # the daemon's admin API

    def all(self) -> tuple[int, ...]:
        """Every port the stack listens on (the admin port when it is fixed)."""
        fixed = (self.rest, self.grpc, self.xds, self.ext_proc, self.metrics)
        admin = tuple(port for port in (self.admin, self.admin_api) if port)
        return (*fixed, *admin, *(port for node in self.nodes for port in node))


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a listening socket could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class _PortPicker:
    """Hands out free loopback ports, never the same one twice, and never one the settings fix."""

    def __init__(self, reserved: set[int]) -> None:
        self._issued = set(reserved)

    def pick(self, wanted: int) -> int:
        if wanted:
            return wanted
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((LOOPBACK, 0))
                port: int = probe.getsockname()[1]
            if port not in self._issued:
                self._issued.add(port)
                return port
        raise ConfigError("no free loopback port found")


def allocate_ports(settings: StackSettings) -> StackPorts:
    """The ports of this run: the settings' fixed ports, free ports for the rest; all checked free.

    Raises ``ConfigError`` naming a port that is already taken, or given twice.
    """
    node_ports: list[NodePorts | None] = [None] * settings.nodes
    if settings.node_base_port is not None:
        for index in range(settings.nodes):
            base = settings.node_base_port + PORTS_PER_NODE * index
            node_ports[index] = NodePorts(base, base + 1, base + 2, base + 3)
    fixed: dict[str, int] = {
        "rest_port": settings.rest_port,
        "grpc_port": settings.grpc_port,
        "admin_port": settings.admin_port,
        "xds_port": settings.xds_port,
        "ext_proc_port": settings.ext_proc_port,
        "metrics_port": settings.metrics_port,
        "admin_api_port": settings.admin_api_port,
    }
    for index, node in enumerate(node_ports):
        if node is not None:
            fixed.update({f"node-{index + 1} port": port for port in node})
    named = {name: port for name, port in fixed.items() if port}
    _refuse_duplicates(named)
    picker = _PortPicker(set(named.values()))
    ports = StackPorts(
        rest=settings.rest_port,
        grpc=settings.grpc_port,
        admin=picker.pick(settings.admin_port),
        xds=picker.pick(settings.xds_port),
        ext_proc=picker.pick(settings.ext_proc_port),
        metrics=picker.pick(settings.metrics_port),
        admin_api=picker.pick(settings.admin_api_port),
        nodes=tuple(
            node or NodePorts(picker.pick(0), picker.pick(0), picker.pick(0), picker.pick(0))
            for node in node_ports
        ),
    )
    _refuse_taken(settings.host, ports.rest, ports.grpc, *(named.values()))
    return ports


def _refuse_duplicates(named: dict[str, int]) -> None:
    seen: dict[int, str] = {}
    for name, port in named.items():
        if port in seen:
            raise ConfigError(f"port {port} is given twice ({seen[port]} and {name})")
        seen[port] = name


def _refuse_taken(host: str, rest: int, grpc: int, *others: int) -> None:
    for port, on in [(rest, host), (grpc, host), *((port, LOOPBACK) for port in others)]:
        if not port_is_free(port, on):
            raise ConfigError(f"port {port} on {on} is already in use (choose another one with the options)")
