"""Clusters: the nodes' REST and gRPC ports (endpoints from EDS), and the daemon's ext_proc server.

The node clusters balance with ``override_host``: the host named by the ``x-tfscache-node`` header (or
the same key in ``envoy.lb`` metadata) when it is one of the cluster's endpoints, else ``ring_hash`` on the
route's hash policy (the model header), so one model sticks to one node even without a decision.
Per-node clusters are never needed, and Envoy keeps health and outlier state per host.
"""

from __future__ import annotations

from envoy_data_plane.envoy.config.cluster.v3 import (
    Cluster,
    ClusterDiscoveryType,
    ClusterEdsClusterConfig,
    LoadBalancingPolicy,
    LoadBalancingPolicyPolicy,
)
from envoy_data_plane.envoy.config.core.v3 import TypedExtensionConfig
from envoy_data_plane.envoy.extensions.load_balancing_policies.override_host.v3 import (
    OverrideHost,
    OverrideHostOverrideHostSource,
)
from envoy_data_plane.envoy.extensions.load_balancing_policies.ring_hash.v3 import RingHash
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.metadata.v3 import MetadataKey, MetadataKeyPathSegment
from envoy_data_plane.google.protobuf import Any

from xds import names
from xds.endpoints import Host, load_assignment
from xds.extensions import ads, extension, http2_options, pack, seconds
from xds.view import Address, Limits, Timeouts

_HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def node_cluster(name: str, timeouts: Timeouts, limits: Limits, *, http2: bool) -> Cluster:
    """A cluster of every node's REST (HTTP/1.1) or gRPC (``http2``) port, filled by EDS under ``name``."""
    return Cluster(
        name=name,
        type=ClusterDiscoveryType.EDS,
        eds_cluster_config=ClusterEdsClusterConfig(eds_config=ads(), service_name=name),
        connect_timeout=seconds(timeouts.connect_s),
        per_connection_buffer_limit_bytes=limits.message_bytes,
        load_balancing_policy=override_host_policy(),
        typed_extension_protocol_options=_http2_protocol(limits) if http2 else {},
    )


def override_host_policy() -> LoadBalancingPolicy:
    """The host the daemon chose (header, then ``envoy.lb`` metadata), else the ring hash of the model."""
    return _policy(
        extension(
            "envoy.load_balancing_policies.override_host",
            OverrideHost(
                override_host_sources=[
                    OverrideHostOverrideHostSource(header=names.NODE_HEADER),
                    OverrideHostOverrideHostSource(
                        metadata=MetadataKey(
                            key=names.LB_NAMESPACE, path=[MetadataKeyPathSegment(key=names.NODE_HEADER)]
                        )
                    ),
                ],
                fallback_policy=_policy(extension("envoy.load_balancing_policies.ring_hash", RingHash())),
            ),
        )
    )


def ext_proc_cluster(address: Address, timeouts: Timeouts, limits: Limits) -> Cluster:
    """The daemon's ext_proc server (gRPC, so HTTP/2), at a fixed address."""
    return Cluster(
        name=names.CLUSTER_EXT_PROC,
        type=ClusterDiscoveryType.STATIC,
        connect_timeout=seconds(timeouts.connect_s),
        load_assignment=load_assignment(names.CLUSTER_EXT_PROC, [Host("ext_proc", address)]),
        per_connection_buffer_limit_bytes=limits.message_bytes,
        typed_extension_protocol_options=_http2_protocol(limits),
    )


def eds_names(cluster: Cluster) -> list[str]:
    """The EDS resource a cluster asks for (none unless it is an EDS cluster)."""
    if cluster.type != ClusterDiscoveryType.EDS:
        return []
    config = cluster.eds_cluster_config
    service_name = config.service_name if config is not None else ""
    return [service_name or cluster.name]


def _policy(config: TypedExtensionConfig) -> LoadBalancingPolicy:
    return LoadBalancingPolicy(policies=[LoadBalancingPolicyPolicy(typed_extension_config=config)])


def _http2_protocol(limits: Limits) -> dict[str, Any]:
    options = HttpProtocolOptions(
        explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
            http2_protocol_options=http2_options(limits)
        )
    )
    return {_HTTP_PROTOCOL_OPTIONS: pack(options)}
