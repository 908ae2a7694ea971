"""Routes: the default route (the slow path), the gRPC reload denial, and forwarding routes in general.

Each listener has its default route (prefix ``/``) through ext_proc to the node cluster, and the gRPC
listener answers ``ModelService/HandleReloadConfigRequest`` itself with PERMISSION_DENIED: clients cannot
reconfigure nodes through the cache. The ext_proc filter is disabled in the filter chain and enabled by the
routes that need it (``through_ext_proc``), so a fast-path route (``xds.fastpath``) carries nothing for it.

``route_configuration`` makes a plain configuration (routes tried in order); the daemon's configurations
find fast-path routes with a matcher tree instead (``xds.fastpath.FastPathEncoder``).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy_data_plane.envoy.config.core.v3 import (
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
)
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    RetryPolicy,
    RetryPolicyRetryHostPredicate,
    Route,
    RouteAction,
    RouteActionHashPolicy,
    RouteActionHashPolicyHeader,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.retry.host.previous_hosts.v3 import PreviousHostsPredicate

from tfscachectl.errors import Code
from xds import names
from xds.extensions import pack, seconds
from xds.filters import ext_proc_enabled
from xds.view import Address, Timeouts

#: Failures after which a request is sent again, to another host: it never reached a node's application.
RETRY_ON = "connect-failure,refused-stream"
#: How many hosts the retry predicate may reject before it takes a previously tried one anyway.
HOST_SELECTION_ATTEMPTS = 3
RELOAD_DENIED_MESSAGE = "tfscache: the model configuration of the nodes cannot be changed through the cache"


def route_configuration(name: str, routes: Sequence[Route]) -> RouteConfiguration:
    """A route configuration whose one virtual host matches every domain, routes tried in order."""
    return RouteConfiguration(
        name=name,
        virtual_hosts=[VirtualHost(name=name, domains=["*"], routes=list(routes))],
    )


def forward_route(
    name: str,
    match: RouteMatch,
    cluster: str,
    timeouts: Timeouts,
    retries: int,
    *,
    pinned: Sequence[Address] = (),
    through_ext_proc: bool = False,
) -> Route:
    """Forward to ``cluster``, with the route timeout, the retry policy and the model hash.

    ``pinned`` names the node(s) to use, in order (the ``override_host`` header, set by the route itself);
    without it the node comes from ext_proc's answer (``through_ext_proc``); with neither, none is used
    (Envoy answers 503).
    """
    headers_to_add = [set_header(names.NODE_HEADER, ",".join(map(str, pinned)))] if pinned else []
    return Route(
        name=name,
        match=match,
        route=RouteAction(
            cluster=cluster,
            timeout=seconds(timeouts.route_s),
            retry_policy=retry_policy(retries),
            hash_policy=[
                RouteActionHashPolicy(header=RouteActionHashPolicyHeader(header_name=names.MODEL_HEADER))
            ],
        ),
        request_headers_to_add=headers_to_add,
        typed_per_filter_config=ext_proc_enabled() if through_ext_proc else {},
    )


def retry_policy(retries: int) -> RetryPolicy:
    """Retry only failures that never reached a node, each time on a host not tried yet."""
    return RetryPolicy(
        retry_on=RETRY_ON,
        num_retries=retries,
        retry_host_predicate=[
            RetryPolicyRetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts", typed_config=pack(PreviousHostsPredicate())
            )
        ],
        host_selection_retry_max_attempts=HOST_SELECTION_ATTEMPTS,
    )


def default_route(cluster: str, timeouts: Timeouts, retries: int) -> Route:
    """Everything no other route took: through ext_proc (the slow path) to the node cluster."""
    return forward_route("default", RouteMatch(prefix="/"), cluster, timeouts, retries, through_ext_proc=True)


def miss_route(cluster: str, timeouts: Timeouts, retries: int) -> Route:
    """Everything no other route took, to ``cluster`` (the internal listener where ext_proc runs).

    Its timeout exceeds that listener's own route timeout by a connect timeout, so the inner route, which
    knows what failed, is the one that answers a timeout.
    """
    return Route(
        name="default",
        match=RouteMatch(prefix="/"),
        route=RouteAction(
            cluster=cluster,
            timeout=seconds(timeouts.route_s + timeouts.connect_s),
            retry_policy=retry_policy(retries),
        ),
    )


def reload_config_denied() -> Route:
    """``HandleReloadConfigRequest`` answered by Envoy: a gRPC PERMISSION_DENIED, trailers only."""
    return Route(
        name="reload-config-denied",
        match=RouteMatch(path=names.RELOAD_CONFIG_PATH),
        direct_response=DirectResponseAction(status=200),
        response_headers_to_add=[
            set_header("content-type", "application/grpc"),
            set_header("grpc-status", str(int(Code.PERMISSION_DENIED))),
            set_header("grpc-message", RELOAD_DENIED_MESSAGE),
        ],
    )


def set_header(key: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(
        header=HeaderValue(key=key, value=value),
        append_action=HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def route_clusters(route_config: RouteConfiguration) -> list[str]:
    """Every cluster a route configuration sends requests to."""
    found = []
    for virtual_host in route_config.virtual_hosts:
        for route in virtual_host.routes:
            action = route.route
            if action is None:
                continue
            if action.cluster:
                found.append(action.cluster)
            if action.weighted_clusters is not None:
                found.extend(weighted.name for weighted in action.weighted_clusters.clusters)
    return found
