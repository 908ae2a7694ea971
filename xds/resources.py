"""Every Envoy resource of the cache, built from a ``ClusterView`` by pure functions (docs/routing.md).

- Listeners ``tfscache_rest`` (HTTP/1.1 and HTTP/2) and ``tfscache_grpc`` (HTTP/2): filters
  ``[grpc_field_extraction, set_filter_state,] ext_proc, router``, routes from RDS. With the gRPC model-key
  module (``view.grpc_key_module``) the gRPC listener has ``[model key module, router]`` only, and its
  default route goes to the internal listener ``tfscache_grpc_miss`` (cluster of the same name), which has
  ``grpc_field_extraction, ext_proc, router`` and inline routes: the slow path.
- Route configurations ``tfscache_rest`` and ``tfscache_grpc``. Given ``fast_path`` entries (the daemon
  always gives them, if none), they are matcher trees (``xds.fastpath``): one lookup finds a resident model's
  route, else the default route through ext_proc. Otherwise plain lists: any extra routes given, then the
  default route. The gRPC one first denies ``HandleReloadConfigRequest``.
- Clusters ``tfscache_nodes_rest`` / ``tfscache_nodes_grpc`` (EDS, override_host and no other host), one
  static cluster per node and port for fast-path routes to a single holder
  (``tfscache_nodes_rest_<ip>_<port>``...) and ``tfscache_ext_proc`` (static, the daemon).
- ClusterLoadAssignments for the two node clusters.

``ext_proc=False`` leaves the ext_proc filter out of both listeners (and its cluster out of CDS): requests
then go only where a route names a node (tests). The daemon never does this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import betterproto2
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import Route, RouteConfiguration
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import HttpFilter

from xds import filters, names, type_urls
from xds.clusters import ext_proc_cluster, internal_listener_cluster, node_cluster, single_node_cluster
from xds.endpoints import Host, load_assignment, node_hosts
from xds.fastpath import (
    EncodedRouteConfiguration,
    FastPathEncoder,
    FastPathEntry,
    model_key_filter,
    model_key_module_filter,
)
from xds.listeners import http_listener, internal_http_listener
from xds.routes import default_route, miss_route, reload_config_denied, route_configuration
from xds.view import ClusterView

RouteConfigurations = tuple[RouteConfiguration | EncodedRouteConfiguration, ...]


@dataclass(frozen=True, slots=True)
class Resources:
    """One full set of resources, by kind."""

    listeners: tuple[Listener, ...]
    routes: RouteConfigurations
    clusters: tuple[Cluster, ...]
    endpoints: tuple[ClusterLoadAssignment, ...]

    def by_type(self) -> dict[str, Sequence[betterproto2.Message | EncodedRouteConfiguration]]:
        """The resources keyed by xDS type URL, as ``Snapshot`` takes them."""
        return {
            type_urls.LISTENER: self.listeners,
            type_urls.ROUTE: self.routes,
            type_urls.CLUSTER: self.clusters,
            type_urls.ENDPOINT: self.endpoints,
        }


def build_resources(
    view: ClusterView,
    *,
    ext_proc: bool = True,
    rest_routes: Sequence[Route] = (),
    grpc_routes: Sequence[Route] = (),
    fast_path: Sequence[FastPathEntry] | None = None,
    encoder: FastPathEncoder | None = None,
) -> Resources:
    """All resources for ``view``.

    With ``fast_path`` (entries, possibly none) the route configurations are matcher trees holding them,
    encoded with ``encoder`` (keep one across calls: it remembers encoded routes); otherwise
    ``rest_routes`` / ``grpc_routes`` go before each default route.
    """
    if fast_path is not None:
        routes = build_fast_path_configurations(view, fast_path, encoder or FastPathEncoder())
    else:
        routes = build_route_configurations(view, rest=rest_routes, grpc=grpc_routes)
    return Resources(
        listeners=build_listeners(view, ext_proc=ext_proc),
        routes=routes,
        clusters=build_clusters(view, ext_proc=ext_proc),
        endpoints=build_endpoints(view),
    )


def build_listeners(view: ClusterView, *, ext_proc: bool = True) -> tuple[Listener, ...]:
    processing = [filters.ext_proc(view.timeouts, view.limits)] if ext_proc else []
    rest = http_listener(
        names.LISTENER_REST,
        view.rest_listener,
        names.ROUTES_REST,
        [*processing, filters.router()],
        view.timeouts,
        view.limits,
        http2_only=False,
    )
    slow_path = [filters.grpc_field_extraction(view.grpc_descriptors), *processing, filters.router()]
    if view.grpc_key_module is None:
        grpc_filters = [slow_path[0], model_key_filter(), *slow_path[1:]]
        return rest, _grpc_listener(view, grpc_filters)
    # gRPC hits: the module reads the key, the router forwards; misses go on to the internal listener.
    # The reserved headers are removed there, on misses only: no route of this listener uses a client's
    # value (a fast-path route names its node's own cluster, or sets the node header itself; the default
    # route goes to the internal listener), and their removal cost hits 2 % of Envoy's work.
    grpc = _grpc_listener(
        view, [model_key_module_filter(view.grpc_key_module), filters.router()], strip_reserved=False
    )
    miss = internal_http_listener(
        names.LISTENER_GRPC_MISS,
        route_configuration(
            names.ROUTES_GRPC_MISS,
            [reload_config_denied(), default_route(names.CLUSTER_NODES_GRPC, view.timeouts, view.retries)],
        ),
        slow_path,
        view.timeouts,
        view.limits,
        strip_reserved=True,
    )
    return rest, grpc, miss


def _grpc_listener(
    view: ClusterView, http_filters: Sequence[HttpFilter], *, strip_reserved: bool = True
) -> Listener:
    return http_listener(
        names.LISTENER_GRPC,
        view.grpc_listener,
        names.ROUTES_GRPC,
        http_filters,
        view.timeouts,
        view.limits,
        http2_only=True,
        strip_reserved=strip_reserved,
    )


def grpc_default_route(view: ClusterView) -> Route:
    """The gRPC listener's slow path: through ext_proc, or to the internal listener that has it."""
    if view.grpc_key_module is None:
        return default_route(names.CLUSTER_NODES_GRPC, view.timeouts, view.retries)
    return miss_route(names.CLUSTER_GRPC_MISS, view.timeouts, view.retries)


def build_route_configurations(
    view: ClusterView,
    *,
    rest: Sequence[Route] = (),
    grpc: Sequence[Route] = (),
) -> tuple[RouteConfiguration, ...]:
    timeouts, retries = view.timeouts, view.retries
    return (
        route_configuration(
            names.ROUTES_REST,
            [*rest, default_route(names.CLUSTER_NODES_REST, timeouts, retries)],
        ),
        route_configuration(
            names.ROUTES_GRPC,
            [
                reload_config_denied(),
                *grpc,
                grpc_default_route(view),
            ],
        ),
    )


def build_fast_path_configurations(
    view: ClusterView, entries: Sequence[FastPathEntry], encoder: FastPathEncoder
) -> RouteConfigurations:
    """Both route configurations as matcher trees with ``entries`` (``xds.fastpath``)."""
    timeouts, retries = view.timeouts, view.retries
    rest = encoder.rest(
        names.ROUTES_REST,
        default_route(names.CLUSTER_NODES_REST, timeouts, retries),
        entries,
        timeouts.request_s,
        retries,
    )
    grpc = encoder.grpc(
        names.ROUTES_GRPC,
        grpc_default_route(view),
        # With the module, the default route leads to the internal listener, which denies the reload
        # itself: no request pays for a lookup by path (3,000 instructions of a gRPC hit's Envoy work).
        {} if view.grpc_key_module is not None else {names.RELOAD_CONFIG_PATH: reload_config_denied()},
        entries,
        timeouts.request_s,
        retries,
    )
    encoder.forget_unused(entries)
    return rest, grpc


def build_clusters(view: ClusterView, *, ext_proc: bool = True) -> tuple[Cluster, ...]:
    clusters = [
        node_cluster(names.CLUSTER_NODES_REST, view.timeouts, view.limits, http2=False),
        node_cluster(names.CLUSTER_NODES_GRPC, view.timeouts, view.limits, http2=True),
    ]
    if ext_proc:
        clusters.append(ext_proc_cluster(view.ext_proc, view.timeouts, view.limits))
    for node in sorted(view.nodes, key=lambda n: n.id):
        for shared, address, http2 in (
            (names.CLUSTER_NODES_REST, node.rest, False),
            (names.CLUSTER_NODES_GRPC, node.grpc, True),
        ):
            host = Host(node.id, address, node.healthy)
            clusters.append(single_node_cluster(shared, host, view.timeouts, view.limits, http2=http2))
    if view.grpc_key_module is not None:
        clusters.append(
            internal_listener_cluster(
                names.CLUSTER_GRPC_MISS, names.LISTENER_GRPC_MISS, view.timeouts, view.limits
            )
        )
    return tuple(clusters)


def build_endpoints(view: ClusterView) -> tuple[ClusterLoadAssignment, ...]:
    return (
        load_assignment(names.CLUSTER_NODES_REST, node_hosts(view.nodes, "rest")),
        load_assignment(names.CLUSTER_NODES_GRPC, node_hosts(view.nodes, "grpc")),
    )
