"""Listeners: an HTTP connection manager whose routes come over RDS (ADS) and whose filters are given.

Clients may not choose a node or a model hash themselves: the ``x-tfscache-*`` headers are removed from
every request as it arrives (an early header mutation, before routing and before any filter), so only
ext_proc's answer or a fast-path route can set them.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy_data_plane.envoy.config.common.mutation_rules.v3 import HeaderMutation as HeaderMutationRule
from envoy_data_plane.envoy.config.core.v3 import TypedExtensionConfig
from envoy_data_plane.envoy.config.listener.v3 import (
    Filter,
    FilterChain,
    Listener,
    ListenerInternalListenerConfig,
)
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import ExternalProcessor
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
    HttpFilter,
    Rds,
)
from envoy_data_plane.envoy.extensions.http.early_header_mutation.header_mutation.v3 import HeaderMutation

from xds import names
from xds.extensions import ads, extension, http2_options, pack, seconds, socket_address
from xds.view import Address, Limits, Timeouts

HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
#: Request headers only the cache may set.
RESERVED_HEADERS = (names.NODE_HEADER, names.MODEL_HEADER)


def http_listener(
    name: str,
    address: Address,
    route_config_name: str,
    http_filters: Sequence[HttpFilter],
    timeouts: Timeouts,
    limits: Limits,
    *,
    http2_only: bool,
    strip_reserved: bool = True,
) -> Listener:
    """A listener at ``address`` (HTTP/1.1 and HTTP/2 unless ``http2_only``) with routes from RDS.

    ``strip_reserved``: remove the reserved headers a client may have sent, before any filter (Envoy's
    early header mutation, about 4,300 instructions per request); only a listener none of whose routes can
    use a client's value may go without (see ``build_listeners``).
    """
    manager = HttpConnectionManager(
        stat_prefix=name,
        codec_type=HttpConnectionManagerCodecType.HTTP2
        if http2_only
        else HttpConnectionManagerCodecType.AUTO,
        rds=Rds(config_source=ads(), route_config_name=route_config_name),
        http_filters=list(http_filters),
        # A cold request waits for its model's load without a byte moving: allow the whole route timeout,
        # and the connect timeout more, so that a route's own timeout (the gRPC miss route's is that much
        # longer) answers first, saying what timed out.
        stream_idle_timeout=seconds(timeouts.route_s + timeouts.connect_s),
        http2_protocol_options=http2_options(limits),
        early_header_mutation_extensions=_reserved_headers_removal() if strip_reserved else [],
    )
    return Listener(
        name=name,
        address=socket_address(address),
        per_connection_buffer_limit_bytes=limits.message_bytes,
        filter_chains=[
            FilterChain(filters=[Filter(name=HTTP_CONNECTION_MANAGER, typed_config=pack(manager))])
        ],
    )


def internal_http_listener(
    name: str,
    routes: RouteConfiguration,
    http_filters: Sequence[HttpFilter],
    timeouts: Timeouts,
    limits: Limits,
    *,
    strip_reserved: bool = False,
) -> Listener:
    """An internal listener (reached only from Envoy's own clusters, no socket) speaking HTTP/2, with
    ``routes`` inline. Envoy needs the ``envoy.bootstrap.internal_listener`` extension in its bootstrap.

    ``strip_reserved``: remove the reserved headers a client may have sent (as ``http_listener``), for
    requests that come from a listener that passed them on.
    """
    manager = HttpConnectionManager(
        stat_prefix=name,
        codec_type=HttpConnectionManagerCodecType.HTTP2,
        route_config=routes,
        http_filters=list(http_filters),
        stream_idle_timeout=seconds(timeouts.route_s),
        http2_protocol_options=http2_options(limits),
        early_header_mutation_extensions=_reserved_headers_removal() if strip_reserved else [],
    )
    return Listener(
        name=name,
        internal_listener=ListenerInternalListenerConfig(),
        per_connection_buffer_limit_bytes=limits.message_bytes,
        filter_chains=[
            FilterChain(filters=[Filter(name=HTTP_CONNECTION_MANAGER, typed_config=pack(manager))])
        ],
    )


def _reserved_headers_removal() -> list[TypedExtensionConfig]:
    return [
        extension(
            "envoy.http.early_header_mutation.header_mutation",
            HeaderMutation(mutations=[HeaderMutationRule(remove=header) for header in RESERVED_HEADERS]),
        )
    ]


def route_config_names(listener: Listener) -> list[str]:
    """The RDS route configurations a listener's HTTP connection managers ask for."""
    return [manager.rds.route_config_name for manager in _connection_managers(listener) if manager.rds]


def grpc_service_clusters(listener: Listener) -> list[str]:
    """The clusters a listener's HTTP filters call over gRPC (the ext_proc server)."""
    found = []
    for manager in _connection_managers(listener):
        for http_filter in manager.http_filters:
            config = http_filter.typed_config.unpack() if http_filter.typed_config else None
            if isinstance(config, ExternalProcessor) and config.grpc_service is not None:
                envoy_grpc = config.grpc_service.envoy_grpc
                if envoy_grpc is not None:
                    found.append(envoy_grpc.cluster_name)
    return found


def _connection_managers(listener: Listener) -> list[HttpConnectionManager]:
    managers = []
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            config = network_filter.typed_config.unpack() if network_filter.typed_config else None
            if isinstance(config, HttpConnectionManager):
                managers.append(config)
    return managers
