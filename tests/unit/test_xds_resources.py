"""The Envoy resources built from a cluster view: pure functions, checked field by field."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import HealthStatus
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import FilterConfig, Route, RouteConfiguration, RouteMatch
from envoy_data_plane.envoy.extensions.filters.http.dynamic_modules.v3 import DynamicModuleFilter
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import (
    ExternalProcessor,
    ExtProcPerRoute,
    ProcessingModeBodySendMode,
    ProcessingModeHeaderSendMode,
)
from envoy_data_plane.envoy.extensions.filters.http.grpc_field_extraction.v3 import GrpcFieldExtractionConfig
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
)
from envoy_data_plane.envoy.extensions.load_balancing_policies.override_host.v3 import OverrideHost
from envoy_data_plane.envoy.extensions.load_balancing_policies.subset.v3 import (
    Subset,
    SubsetLbSubsetFallbackPolicy,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import HttpProtocolOptions
from envoy_data_plane.google.protobuf import StringValue
from google.protobuf import descriptor_pb2, descriptor_pool

from tfscachectl.core.requests import GRPC_MODEL_METHODS
from tfscachectl.errors import Code, ConfigError
from xds import names, type_urls
from xds.clusters import eds_names
from xds.descriptors import read_descriptor_set
from xds.extensions import http2_options
from xds.fastpath import FILTER_SET_FILTER_STATE, MODEL_KEY_STATE
from xds.filters import GRPC_MODEL_FIELDS
from xds.listeners import RESERVED_HEADERS, grpc_service_clusters, route_config_names
from xds.resources import Resources, build_resources
from xds.routes import forward_route, route_clusters
from xds.view import Address, ClusterView, Limits, NodeView, Timeouts

DESCRIPTORS = read_descriptor_set()


def node(node_id: str, last_octet: int, *, healthy: bool = True) -> NodeView:
    return NodeView(
        node_id, Address(f"127.0.0.{last_octet}", 8501), Address(f"127.0.0.{last_octet}", 8500), healthy
    )


def make_view(*nodes: NodeView, retries: int = 2, grpc_key_module: str | None = None) -> ClusterView:
    return ClusterView(
        nodes=nodes or (node("node-b", 2), node("node-a", 1)),
        ext_proc=Address("127.0.0.1", 9100),
        rest_listener=Address("127.0.0.1", 8501),
        grpc_listener=Address("127.0.0.1", 8500),
        timeouts=Timeouts(ensure_deadline_s=30.0, request_s=60.0, ext_proc_margin_s=2.0, connect_s=0.5),
        grpc_descriptors=DESCRIPTORS,
        limits=Limits(message_bytes=300 * 1024 * 1024),
        retries=retries,
        grpc_key_module=grpc_key_module,
    )


def by_name(items: tuple[Any, ...], name: str) -> Any:
    for item in items:
        if getattr(item, "name", None) == name or getattr(item, "cluster_name", None) == name:
            return item
    raise AssertionError(f"no resource {name} in {items}")


def manager(listener: Listener) -> HttpConnectionManager:
    config = listener.filter_chains[0].filters[0].typed_config.unpack()
    assert isinstance(config, HttpConnectionManager)
    return config


def routes_of(config: RouteConfiguration) -> list[Route]:
    assert len(config.virtual_hosts) == 1
    assert config.virtual_hosts[0].domains == ["*"]
    return config.virtual_hosts[0].routes


@pytest.fixture(scope="module")
def resources() -> Resources:
    return build_resources(make_view())


# --- the view checks itself ---------------------------------------------------------------------------


def test_address_needs_an_ip_because_override_host_does() -> None:
    with pytest.raises(ConfigError, match="not an IP address"):
        Address("node-a.internal", 8500)
    with pytest.raises(ConfigError, match="out of range"):
        Address("127.0.0.1", 70000)


def test_address_parses_and_prints_as_envoy_writes_it() -> None:
    assert Address.parse("127.0.0.1:8500") == Address("127.0.0.1", 8500)
    assert Address.parse("[::1]:8500") == Address("::1", 8500)
    assert str(Address("::1", 8500)) == "[::1]:8500"
    assert str(Address("10.0.0.5", 80)) == "10.0.0.5:80"
    with pytest.raises(ConfigError, match="host:port"):
        Address.parse("127.0.0.1")


def test_view_refuses_duplicate_nodes_and_shared_addresses() -> None:
    with pytest.raises(ConfigError, match="more than once: node-a"):
        make_view(node("node-a", 1), node("node-a", 2))
    with pytest.raises(ConfigError, match=r"share the rest address 127\.0\.0\.1:8501"):
        make_view(node("node-a", 1), node("node-b", 1))
    with pytest.raises(ConfigError, match="has no port"):
        NodeView("node-a", Address("127.0.0.1", 0), Address("127.0.0.1", 8500))


def test_view_refuses_bad_timeouts_limits_and_retries() -> None:
    with pytest.raises(ConfigError, match="ensure_deadline_s"):
        Timeouts(ensure_deadline_s=0, request_s=1)
    with pytest.raises(ConfigError, match="request_s"):
        Timeouts(ensure_deadline_s=1, request_s=float("inf"))
    with pytest.raises(ConfigError, match="message limit"):
        Limits(message_bytes=2**32)
    with pytest.raises(ConfigError, match="retries"):
        make_view(retries=-1)


def test_timeouts_derive_ext_proc_and_route_timeouts() -> None:
    timeouts = Timeouts(ensure_deadline_s=30.0, request_s=60.0, ext_proc_margin_s=2.0)
    assert timeouts.ext_proc_message_s == 32.0
    assert timeouts.route_s == 92.0


def test_a_view_with_other_nodes_keeps_everything_else() -> None:
    view = make_view()
    other = view.with_nodes((node("node-c", 3),))
    assert [n.id for n in other.nodes] == ["node-c"]
    assert (other.timeouts, other.limits, other.ext_proc) == (view.timeouts, view.limits, view.ext_proc)


# --- what is built ----------------------------------------------------------------------------------------


def test_names_of_every_resource(resources: Resources) -> None:
    assert [listener.name for listener in resources.listeners] == ["tfscache_rest", "tfscache_grpc"]
    assert [config.name for config in resources.routes] == ["tfscache_rest", "tfscache_grpc"]
    assert [cluster.name for cluster in resources.clusters] == [
        "tfscache_nodes_rest",
        "tfscache_nodes_grpc",
        "tfscache_ext_proc",
        # each node's own, sorted by node id, for fast-path routes to a single holder
        "tfscache_nodes_rest_127_0_0_1_8501",
        "tfscache_nodes_grpc_127_0_0_1_8500",
        "tfscache_nodes_rest_127_0_0_2_8501",
        "tfscache_nodes_grpc_127_0_0_2_8500",
    ]
    assert [cla.cluster_name for cla in resources.endpoints] == ["tfscache_nodes_rest", "tfscache_nodes_grpc"]
    assert list(resources.by_type()) == [
        type_urls.LISTENER,
        type_urls.ROUTE,
        type_urls.CLUSTER,
        type_urls.ENDPOINT,
    ]


def test_building_is_deterministic() -> None:
    first, second = build_resources(make_view()), build_resources(make_view())
    for kind in ("listeners", "routes", "clusters", "endpoints"):
        assert [bytes(r) for r in getattr(first, kind)] == [bytes(r) for r in getattr(second, kind)]


def test_every_resource_survives_a_round_trip_through_bytes(resources: Resources) -> None:
    for kind, items in (
        (Listener, resources.listeners),
        (RouteConfiguration, resources.routes),
        (Cluster, resources.clusters),
        (ClusterLoadAssignment, resources.endpoints),
    ):
        for item in items:
            assert bytes(kind.parse(bytes(item))) == bytes(item)


def test_rest_listener_filters_and_codec(resources: Resources) -> None:
    listener = by_name(resources.listeners, names.LISTENER_REST)
    assert listener.address.socket_address.address == "127.0.0.1"
    assert listener.address.socket_address.port_value == 8501
    assert listener.per_connection_buffer_limit_bytes == 300 * 1024 * 1024
    hcm = manager(listener)
    assert hcm.codec_type == HttpConnectionManagerCodecType.AUTO
    assert hcm.rds.route_config_name == names.ROUTES_REST
    assert hcm.rds.config_source.ads is not None
    assert [f.name for f in hcm.http_filters] == [names.FILTER_EXT_PROC, names.FILTER_ROUTER]
    assert hcm.stream_idle_timeout == datetime.timedelta(seconds=92.5)  # the route timeout + connect timeout


def test_grpc_listener_extracts_fields_before_ext_proc(resources: Resources) -> None:
    hcm = manager(by_name(resources.listeners, names.LISTENER_GRPC))
    assert hcm.codec_type == HttpConnectionManagerCodecType.HTTP2
    assert hcm.rds.route_config_name == names.ROUTES_GRPC
    assert [f.name for f in hcm.http_filters] == [
        names.FILTER_GRPC_FIELD_EXTRACTION,
        FILTER_SET_FILTER_STATE,
        names.FILTER_EXT_PROC,
        names.FILTER_ROUTER,
    ]
    extraction = hcm.http_filters[0].typed_config.unpack()
    assert isinstance(extraction, GrpcFieldExtractionConfig)
    assert extraction.descriptor_set.inline_bytes == DESCRIPTORS
    predict = extraction.extractions_by_method["tensorflow.serving.PredictionService.Predict"]
    assert sorted(predict.request_field_extractions) == [
        "model_spec.name",
        "model_spec.signature_name",
        "model_spec.version.value",
        "model_spec.version_label",
    ]
    multi = extraction.extractions_by_method["tensorflow.serving.PredictionService.MultiInference"]
    assert {"tasks.model_spec.name", "tasks.method_name"} <= set(multi.request_field_extractions)
    # What Envoy extracts is what the daemon's request parsing reads, method by method.
    extracted = {
        name: tuple(fields.request_field_extractions)
        for name, fields in extraction.extractions_by_method.items()
    }
    assert extracted == {name: method.extracted_fields for name, method in GRPC_MODEL_METHODS.items()}


def removed_on_arrival(listener: Listener) -> list[str]:
    return [
        rule.remove
        for mutation in manager(listener).early_header_mutation_extensions
        for rule in mutation.typed_config.unpack().mutations
    ]


def test_clients_cannot_set_the_cache_headers(resources: Resources) -> None:
    for listener in resources.listeners:
        assert removed_on_arrival(listener) == list(RESERVED_HEADERS)
    assert list(RESERVED_HEADERS) == [names.NODE_HEADER, names.MODEL_HEADER]


def test_with_the_module_grpc_misses_lose_the_cache_headers_and_hits_skip_that_work() -> None:
    listeners = build_resources(make_view(grpc_key_module=MODULE_PATH)).listeners
    assert removed_on_arrival(by_name(listeners, names.LISTENER_REST)) == list(RESERVED_HEADERS)
    # Removed where the slow path begins: the gRPC listener's routes never use a client's value.
    assert removed_on_arrival(by_name(listeners, names.LISTENER_GRPC_MISS)) == list(RESERVED_HEADERS)
    assert removed_on_arrival(by_name(listeners, names.LISTENER_GRPC)) == []


def test_ext_proc_sends_headers_only_with_a_load_sized_timeout(resources: Resources) -> None:
    hcm = manager(by_name(resources.listeners, names.LISTENER_GRPC))
    ext_proc = hcm.http_filters[2]
    # off in the chain, on for the routes that need it (the default routes): the fast path skips it
    assert ext_proc.disabled is True
    config = ext_proc.typed_config.unpack()
    assert isinstance(config, ExternalProcessor)
    assert config.grpc_service.envoy_grpc.cluster_name == names.CLUSTER_EXT_PROC
    assert config.failure_mode_allow is False
    assert config.message_timeout == datetime.timedelta(seconds=32)
    mode = config.processing_mode
    assert mode.request_header_mode == ProcessingModeHeaderSendMode.SEND
    assert mode.response_header_mode == ProcessingModeHeaderSendMode.SKIP
    assert mode.request_body_mode == ProcessingModeBodySendMode.NONE
    assert mode.response_body_mode == ProcessingModeBodySendMode.NONE
    assert config.metadata_options.forwarding_namespaces.untyped == [names.FILTER_GRPC_FIELD_EXTRACTION]
    assert config.metadata_options.receiving_namespaces.untyped == [names.LB_NAMESPACE]


def test_default_routes_time_retry_and_hash(resources: Resources) -> None:
    for config_name, cluster in (
        (names.ROUTES_REST, names.CLUSTER_NODES_REST),
        (names.ROUTES_GRPC, names.CLUSTER_NODES_GRPC),
    ):
        default = routes_of(by_name(resources.routes, config_name))[-1]
        assert default.match.prefix == "/"
        enabled = default.typed_per_filter_config[names.FILTER_EXT_PROC].unpack()  # through ext_proc
        assert isinstance(enabled, FilterConfig)
        assert enabled.disabled is False
        assert isinstance(enabled.config.unpack(), ExtProcPerRoute)
        action = default.route
        assert action.cluster == cluster
        assert action.timeout == datetime.timedelta(seconds=92)
        assert action.retry_policy.retry_on == "connect-failure,refused-stream"
        assert action.retry_policy.num_retries == 2
        (predicate,) = action.retry_policy.retry_host_predicate
        assert predicate.name == "envoy.retry_host_predicates.previous_hosts"
        assert [policy.header.header_name for policy in action.hash_policy] == [names.MODEL_HEADER]


def test_reload_config_is_denied_by_envoy_itself(resources: Resources) -> None:
    reload_route, _ = routes_of(by_name(resources.routes, names.ROUTES_GRPC))
    assert reload_route.match.path == "/tensorflow.serving.ModelService/HandleReloadConfigRequest"
    assert reload_route.direct_response.status == 200
    headers = {option.header.key: option.header.value for option in reload_route.response_headers_to_add}
    assert headers["grpc-status"] == str(int(Code.PERMISSION_DENIED))
    assert headers["content-type"] == "application/grpc"
    assert headers["grpc-message"]
    assert reload_route.typed_per_filter_config == {}  # ext_proc stays off
    assert len(routes_of(by_name(resources.routes, names.ROUTES_REST))) == 1


def test_extra_routes_go_before_the_default_route() -> None:
    view = make_view()
    pinned = forward_route(
        "model-m",
        RouteMatch(prefix="/v1/models/m"),
        names.CLUSTER_NODES_REST,
        view.timeouts,
        view.retries,
        pinned=(Address("127.0.0.2", 8501), Address("127.0.0.1", 8501)),
        through_ext_proc=False,
    )
    built = build_resources(view, rest_routes=[pinned])
    routes = routes_of(by_name(built.routes, names.ROUTES_REST))
    assert [route.name for route in routes] == ["model-m", "default"]
    (header,) = routes[0].request_headers_to_add
    assert header.header.key == names.NODE_HEADER
    assert header.header.value == "127.0.0.2:8501,127.0.0.1:8501"
    assert routes[0].typed_per_filter_config == {}  # ext_proc stays off


def test_node_clusters_use_eds_and_override_host(resources: Resources) -> None:
    for name, http2 in ((names.CLUSTER_NODES_REST, False), (names.CLUSTER_NODES_GRPC, True)):
        cluster = by_name(resources.clusters, name)
        assert cluster.type == ClusterDiscoveryType.EDS
        assert cluster.eds_cluster_config.service_name == name
        assert cluster.eds_cluster_config.eds_config.ads is not None
        assert cluster.connect_timeout == datetime.timedelta(seconds=0.5)
        (policy,) = cluster.load_balancing_policy.policies
        override = policy.typed_extension_config.typed_config.unpack()
        assert isinstance(override, OverrideHost)
        assert override.override_host_sources[0].header == names.NODE_HEADER
        assert override.override_host_sources[1].metadata.key == names.LB_NAMESPACE
        (fallback,) = override.fallback_policy.policies
        no_host = fallback.typed_extension_config.typed_config.unpack()
        assert isinstance(no_host, Subset)  # never a node that was not named
        assert no_host.fallback_policy == SubsetLbSubsetFallbackPolicy.NO_FALLBACK
        assert cluster.outlier_detection.consecutive_local_origin_failure == 3
        assert cluster.outlier_detection.enforcing_consecutive_5xx == 0
        options = cluster.typed_extension_protocol_options
        if http2:
            protocol = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].unpack()
            assert isinstance(protocol, HttpProtocolOptions)
            assert protocol.explicit_http_config.http2_protocol_options is not None
        else:
            assert options == {}


def test_ext_proc_cluster_is_static_http2(resources: Resources) -> None:
    cluster = by_name(resources.clusters, names.CLUSTER_EXT_PROC)
    assert cluster.type == ClusterDiscoveryType.STATIC
    (endpoint,) = cluster.load_assignment.endpoints[0].lb_endpoints
    assert endpoint.endpoint.address.socket_address.port_value == 9100
    assert (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" in cluster.typed_extension_protocol_options
    )
    assert eds_names(cluster) == []


def test_endpoints_are_the_nodes_sorted_with_health() -> None:
    built = build_resources(make_view(node("node-b", 2, healthy=False), node("node-a", 1)))
    for name, port in ((names.CLUSTER_NODES_REST, 8501), (names.CLUSTER_NODES_GRPC, 8500)):
        (locality,) = by_name(built.endpoints, name).endpoints
        hosts = [
            (e.endpoint.hostname, e.endpoint.address.socket_address.address, e.health_status)
            for e in locality.lb_endpoints
        ]
        assert hosts == [
            ("node-a", "127.0.0.1", HealthStatus.HEALTHY),
            ("node-b", "127.0.0.2", HealthStatus.UNHEALTHY),
        ]
        assert {e.endpoint.address.socket_address.port_value for e in locality.lb_endpoints} == {port}


def test_no_nodes_gives_empty_assignments() -> None:
    built = build_resources(make_view().with_nodes(()))
    for assignment in built.endpoints:
        assert [locality.lb_endpoints for locality in assignment.endpoints] == [[]]


def test_without_ext_proc_there_is_no_filter_and_no_cluster() -> None:
    built = build_resources(make_view(), ext_proc=False)
    assert [f.name for f in manager(built.listeners[0]).http_filters] == [names.FILTER_ROUTER]
    assert [f.name for f in manager(built.listeners[1]).http_filters] == [
        names.FILTER_GRPC_FIELD_EXTRACTION,
        FILTER_SET_FILTER_STATE,
        names.FILTER_ROUTER,
    ]
    assert names.CLUSTER_EXT_PROC not in [cluster.name for cluster in built.clusters]


def test_references_are_readable_back(resources: Resources) -> None:
    rest, grpc = resources.listeners
    assert route_config_names(rest) == [names.ROUTES_REST]
    assert grpc_service_clusters(grpc) == [names.CLUSTER_EXT_PROC]
    assert route_clusters(by_name(resources.routes, names.ROUTES_GRPC)) == [names.CLUSTER_NODES_GRPC]
    assert eds_names(by_name(resources.clusters, names.CLUSTER_NODES_REST)) == [names.CLUSTER_NODES_REST]


# --- with the gRPC model-key module ------------------------------------------------------------------------

MODULE_PATH = "/opt/tfscache/libtfscache_grpc_key.so"


def test_the_module_path_must_be_absolute() -> None:
    with pytest.raises(ConfigError, match="absolute path"):
        make_view(grpc_key_module="libtfscache_grpc_key.so")


def test_with_the_module_a_grpc_hit_meets_only_the_module_and_the_router() -> None:
    built = build_resources(make_view(grpc_key_module=MODULE_PATH))
    rest, grpc, _miss = built.listeners
    assert [f.name for f in manager(grpc).http_filters] == [names.FILTER_GRPC_MODEL_KEY, names.FILTER_ROUTER]
    module = manager(grpc).http_filters[0].typed_config.unpack()
    assert isinstance(module, DynamicModuleFilter)
    assert module.dynamic_module_config is not None
    assert module.dynamic_module_config.module is not None
    assert module.dynamic_module_config.module.local is not None
    assert module.dynamic_module_config.module.local.filename == MODULE_PATH
    assert module.filter_name == "grpc_model_key"
    assert module.filter_config is not None
    key = module.filter_config.unpack()
    assert isinstance(key, StringValue)
    assert key.value == MODEL_KEY_STATE
    # REST is as without the module.
    assert [f.name for f in manager(rest).http_filters] == [names.FILTER_EXT_PROC, names.FILTER_ROUTER]
    assert grpc_service_clusters(grpc) == []


def test_with_the_module_grpc_misses_go_through_the_internal_listener_to_ext_proc() -> None:
    view = make_view(grpc_key_module=MODULE_PATH)
    built = build_resources(view)
    miss = by_name(built.listeners, names.LISTENER_GRPC_MISS)
    assert miss.address is None
    assert miss.internal_listener is not None
    miss_manager = manager(miss)
    assert miss_manager.codec_type == HttpConnectionManagerCodecType.HTTP2
    assert [f.name for f in miss_manager.http_filters] == [
        names.FILTER_GRPC_FIELD_EXTRACTION,
        names.FILTER_EXT_PROC,
        names.FILTER_ROUTER,
    ]
    assert grpc_service_clusters(miss) == [names.CLUSTER_EXT_PROC]
    inline = miss_manager.route_config
    assert inline is not None
    assert inline.name == names.ROUTES_GRPC_MISS
    paths = [route.match.path for route in routes_of(inline) if route.match is not None]
    assert names.RELOAD_CONFIG_PATH in paths
    assert route_clusters(inline) == [names.CLUSTER_NODES_GRPC]
    assert routes_of(inline)[-1].typed_per_filter_config.keys() == {names.FILTER_EXT_PROC}
    # The gRPC listener's own default route leads there, with a timeout past the inner one.
    grpc_routes = build_resources(view, fast_path=None, grpc_routes=()).routes
    default = routes_of(by_name(grpc_routes, names.ROUTES_GRPC))[-1]
    assert default.route is not None
    assert default.route.cluster == names.CLUSTER_GRPC_MISS
    assert default.typed_per_filter_config == {}
    assert default.route.timeout == datetime.timedelta(
        seconds=view.timeouts.route_s + view.timeouts.connect_s
    )
    cluster = by_name(built.clusters, names.CLUSTER_GRPC_MISS)
    assert cluster.type == ClusterDiscoveryType.STATIC
    assert cluster.load_assignment is not None
    endpoint = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint
    assert endpoint.address.envoy_internal_address.server_listener_name == names.LISTENER_GRPC_MISS
    assert (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" in cluster.typed_extension_protocol_options
    )


def test_each_node_port_has_a_static_cluster_of_its_own() -> None:
    built = build_resources(make_view(node("node-a", 1), node("node-b", 2, healthy=False)))
    own = by_name(built.clusters, "tfscache_nodes_grpc_127_0_0_2_8500")
    assert own.type == ClusterDiscoveryType.STATIC
    assert own.load_assignment is not None
    (lb_endpoint,) = own.load_assignment.endpoints[0].lb_endpoints
    assert lb_endpoint.health_status == HealthStatus.UNHEALTHY
    assert lb_endpoint.endpoint.address.socket_address.port_value == 8500
    assert own.outlier_detection == by_name(built.clusters, names.CLUSTER_NODES_GRPC).outlier_detection
    assert own.load_balancing_policy is None
    assert set(own.typed_extension_protocol_options) == {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    }
    assert (
        by_name(built.clusters, "tfscache_nodes_rest_127_0_0_2_8501").typed_extension_protocol_options == {}
    )


def test_without_the_module_there_is_no_internal_listener(resources: Resources) -> None:
    assert [listener.name for listener in resources.listeners] == [names.LISTENER_REST, names.LISTENER_GRPC]
    assert names.CLUSTER_GRPC_MISS not in [cluster.name for cluster in resources.clusters]


# --- the committed descriptor set -------------------------------------------------------------------------


def test_descriptor_set_has_every_extracted_field() -> None:
    """Every method and field path the filter extracts exists in the committed set (no TensorFlow needed)."""
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS)
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_set.file:  # dependencies first, or Add fails
        pool.Add(file)
    for method_name, paths in GRPC_MODEL_FIELDS.items():
        method = pool.FindMethodByName(method_name)
        for path in paths:
            message = method.input_type
            *parents, leaf = path.split(".")
            for part in parents:
                message = message.fields_by_name[part].message_type
            assert leaf in message.fields_by_name, f"{method_name}: {path}"
    assert pool.FindMethodByName("tensorflow.serving.ModelService.HandleReloadConfigRequest")


def test_http2_windows_fit_the_largest_message(resources: Resources) -> None:
    """A stream's buffer limit is its HTTP/2 window; the field extraction buffers a whole message."""
    limit = 300 * 1024 * 1024
    hcm = manager(by_name(resources.listeners, names.LISTENER_GRPC))
    assert hcm.http2_protocol_options.initial_stream_window_size == limit
    assert hcm.http2_protocol_options.initial_connection_window_size == limit
    cluster = by_name(resources.clusters, names.CLUSTER_NODES_GRPC)
    protocol = cluster.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert protocol.unpack().explicit_http_config.http2_protocol_options.initial_stream_window_size == limit
    assert http2_options(Limits(message_bytes=1000)).initial_stream_window_size == 65_535
    assert http2_options(Limits(message_bytes=2**32 - 1)).initial_stream_window_size == 2**31 - 1
