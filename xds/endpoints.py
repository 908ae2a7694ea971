"""ClusterLoadAssignments: the nodes' addresses in one locality, each endpoint's hostname its node id
(as Envoy's ``/clusters`` and access logs show it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from envoy_data_plane.envoy.config.core.v3 import HealthStatus
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)

from xds.extensions import socket_address
from xds.view import Address, NodeView

Port = Literal["rest", "grpc"]


@dataclass(frozen=True, slots=True)
class Host:
    """One endpoint: who it is (shown as its hostname in Envoy's admin), where, and whether it is healthy."""

    name: str
    address: Address
    healthy: bool = True


def load_assignment(cluster_name: str, hosts: Iterable[Host]) -> ClusterLoadAssignment:
    """Every host in one locality, in the order given."""
    return ClusterLoadAssignment(
        cluster_name=cluster_name,
        endpoints=[LocalityLbEndpoints(lb_endpoints=[_lb_endpoint(host) for host in hosts])],
    )


def node_hosts(nodes: Iterable[NodeView], port: Port) -> list[Host]:
    """The nodes' REST or gRPC addresses as hosts, sorted by node id (so the resource is stable)."""
    return [
        Host(node.id, node.rest if port == "rest" else node.grpc, node.healthy)
        for node in sorted(nodes, key=lambda n: n.id)
    ]


def _lb_endpoint(host: Host) -> LbEndpoint:
    return LbEndpoint(
        endpoint=Endpoint(address=socket_address(host.address), hostname=host.name),
        health_status=HealthStatus.HEALTHY if host.healthy else HealthStatus.UNHEALTHY,
    )
