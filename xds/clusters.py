"""Clusters: the nodes' REST and gRPC ports (endpoints from EDS), and the daemon's ext_proc server.

The node clusters balance with ``override_host``: the host named by the ``x-tfscache-node`` header (or
the same key in ``envoy.lb`` metadata) when it is one of the cluster's endpoints and healthy; with a list
(``a,b``), the first such host, and the next one on a retry. Nothing else: a request is never sent to a node
that was not named (it would not hold the model, and would answer "not found"), so when no named host is
usable Envoy answers 503 "no healthy upstream" (the fallback policy is a subset policy that selects nothing).
Envoy keeps health and outlier state per host: outlier detection takes a node whose connections fail out of
rotation within a second or so, before the daemon hears of it.

Each node's port also has a cluster of its own (``single_node_cluster``): a fast-path route to a model that
one node holds names it, which costs Envoy less per request than the header and ``override_host``.
"""

from __future__ import annotations

import re

from envoy_data_plane.envoy.config.cluster.v3 import (
    Cluster,
    ClusterDiscoveryType,
    ClusterEdsClusterConfig,
    LoadBalancingPolicy,
    LoadBalancingPolicyPolicy,
    OutlierDetection,
)
from envoy_data_plane.envoy.config.core.v3 import Address as EnvoyAddress
from envoy_data_plane.envoy.config.core.v3 import EnvoyInternalAddress, TypedExtensionConfig
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.extensions.load_balancing_policies.override_host.v3 import (
    OverrideHost,
    OverrideHostOverrideHostSource,
)
from envoy_data_plane.envoy.extensions.load_balancing_policies.round_robin.v3 import RoundRobin
from envoy_data_plane.envoy.extensions.load_balancing_policies.subset.v3 import (
    Subset,
    SubsetLbSubsetFallbackPolicy,
    SubsetLbSubsetSelector,
)
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
_NOT_NAME_CHARS = re.compile(r"[^0-9A-Za-z_-]")
#: Endpoint metadata no endpoint has: the subset policy used as a fallback selects no host.
_NO_SUCH_KEY = "tfscache-no-host"
#: Outlier detection: connection failures in a row that take a node out, how often it is checked, how long.
LOCAL_FAILURES_TO_EJECT = 3
OUTLIER_INTERVAL_S = 1.0
EJECTION_S = 5.0


def node_cluster(name: str, timeouts: Timeouts, limits: Limits, *, http2: bool) -> Cluster:
    """A cluster of every node's REST (HTTP/1.1) or gRPC (``http2``) port, filled by EDS under ``name``."""
    return Cluster(
        name=name,
        type=ClusterDiscoveryType.EDS,
        eds_cluster_config=ClusterEdsClusterConfig(eds_config=ads(), service_name=name),
        connect_timeout=seconds(timeouts.connect_s),
        per_connection_buffer_limit_bytes=limits.message_bytes,
        load_balancing_policy=override_host_policy(),
        outlier_detection=outlier_detection(),
        typed_extension_protocol_options=_http2_protocol(limits) if http2 else {},
    )


def single_node_cluster_name(shared: str, address: Address) -> str:
    """The cluster of one node's port: the shared cluster's name and the address, ``[.:]`` as ``_``."""
    return f"{shared}_{_NOT_NAME_CHARS.sub('_', str(address))}"


def single_node_cluster(
    shared: str, host: Host, timeouts: Timeouts, limits: Limits, *, http2: bool
) -> Cluster:
    """``host`` alone, for the fast-path routes of the models only it holds (``xds.fastpath``).

    Such a route names its cluster, so it needs neither the ``x-tfscache-node`` header nor ``override_host``
    (measured: about 2 µs of Envoy CPU per request less, bench/grpc_filter_cost.py). Static: the address
    is in the name, so a node that moves is a new cluster; same outlier detection as the shared clusters.
    """
    name = single_node_cluster_name(shared, host.address)
    return Cluster(
        name=name,
        type=ClusterDiscoveryType.STATIC,
        connect_timeout=seconds(timeouts.connect_s),
        load_assignment=load_assignment(name, [host]),
        per_connection_buffer_limit_bytes=limits.message_bytes,
        outlier_detection=outlier_detection(),
        typed_extension_protocol_options=_http2_protocol(limits) if http2 else {},
    )


def outlier_detection() -> OutlierDetection:
    """Eject a node after connection failures in a row (not after TF Serving's own 5xx answers, which are
    about a model: a failed load, a bad request), for a few seconds at a time; any number of nodes."""
    return OutlierDetection(
        split_external_local_origin_errors=True,
        consecutive_local_origin_failure=LOCAL_FAILURES_TO_EJECT,
        enforcing_consecutive_local_origin_failure=100,
        enforcing_consecutive_5xx=0,
        enforcing_consecutive_gateway_failure=0,
        enforcing_success_rate=0,
        enforcing_local_origin_success_rate=0,
        interval=seconds(OUTLIER_INTERVAL_S),
        base_ejection_time=seconds(EJECTION_S),
        max_ejection_percent=100,
    )


def override_host_policy() -> LoadBalancingPolicy:
    """The host(s) the daemon chose (header, then ``envoy.lb`` metadata), and no other."""
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
                fallback_policy=_policy(extension("envoy.load_balancing_policies.subset", _no_host())),
            ),
        )
    )


def _no_host() -> Subset:
    """A subset policy whose only subset needs metadata no endpoint has, with no fallback: no host."""
    return Subset(
        subset_selectors=[SubsetLbSubsetSelector(keys=[_NO_SUCH_KEY])],
        fallback_policy=SubsetLbSubsetFallbackPolicy.NO_FALLBACK,
        subset_lb_policy=_policy(extension("envoy.load_balancing_policies.round_robin", RoundRobin())),
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


def internal_listener_cluster(name: str, listener: str, timeouts: Timeouts, limits: Limits) -> Cluster:
    """Envoy's own internal listener ``listener`` as an HTTP/2 upstream (no socket: an in-process pipe)."""
    endpoint = Endpoint(
        address=EnvoyAddress(envoy_internal_address=EnvoyInternalAddress(server_listener_name=listener))
    )
    return Cluster(
        name=name,
        type=ClusterDiscoveryType.STATIC,
        connect_timeout=seconds(timeouts.connect_s),
        load_assignment=ClusterLoadAssignment(
            cluster_name=name, endpoints=[LocalityLbEndpoints(lb_endpoints=[LbEndpoint(endpoint=endpoint)])]
        ),
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
