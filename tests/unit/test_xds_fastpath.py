"""Fast-path route configurations: the hand-encoded bytes read back as the messages they stand for."""

from __future__ import annotations

import dataclasses

import pytest
from envoy_data_plane.envoy.config.route.v3 import Route, RouteConfiguration
from envoy_data_plane.envoy.extensions.matching.common_inputs.network.v3 import FilterStateInput
from envoy_data_plane.envoy.type.matcher.v3 import HttpRequestHeaderMatchInput
from envoy_data_plane.xds.type.matcher.v3 import Matcher, MatcherOnMatch

from xds import names, wire
from xds.clusters import single_node_cluster_name
from xds.descriptors import read_descriptor_set
from xds.fastpath import (
    MODEL_KEY_STATE,
    FastKey,
    FastPathEncoder,
    FastPathEntry,
    _encoded_on_match,
    _on_match,
    fast_route,
    routable,
)
from xds.resources import build_fast_path_configurations
from xds.routes import retry_policy
from xds.view import Address, ClusterView, NodeView, Timeouts

A_REST, A_GRPC = Address("127.0.0.1", 8501), Address("127.0.0.1", 8500)
B_REST, B_GRPC = Address("127.0.0.2", 8501), Address("127.0.0.2", 8500)
RETRIES = 2


def view() -> ClusterView:
    return ClusterView(
        nodes=(NodeView("a", A_REST, A_GRPC), NodeView("b", B_REST, B_GRPC)),
        ext_proc=Address("127.0.0.1", 18001),
        rest_listener=Address("127.0.0.1", 8601),
        grpc_listener=Address("127.0.0.1", 8600),
        timeouts=Timeouts(ensure_deadline_s=30.0, request_s=7.0),
        grpc_descriptors=read_descriptor_set(),
        retries=RETRIES,
    )


def configurations(entries: list[FastPathEntry]) -> tuple[RouteConfiguration, RouteConfiguration]:
    rest, grpc = build_fast_path_configurations(view(), entries, FastPathEncoder())
    return RouteConfiguration.parse(bytes(rest)), RouteConfiguration.parse(bytes(grpc))


def route_of(on_match: MatcherOnMatch) -> Route:
    assert on_match.action is not None
    assert on_match.action.typed_config is not None
    route = on_match.action.typed_config.unpack()
    assert isinstance(route, Route)
    return route


@pytest.mark.parametrize(
    ("varint", "encoded"),
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02")],
)
def test_varints_are_base_128(varint: int, encoded: bytes) -> None:
    assert wire.varint(varint) == encoded


def test_keys_say_what_envoy_matches() -> None:
    assert FastKey("m").rest_prefix == "/v1/models/m:"
    assert FastKey("m", 3).rest_prefix == "/v1/models/m/versions/3:"
    assert FastKey("m").grpc_key == '["m"]|[]|[]'
    assert FastKey("m", 3).grpc_key == '["m"]|["3"]|[]'
    assert FastKey("m").stat_prefix != FastKey("m", 3).stat_prefix
    assert FastKey("m").stat_prefix.startswith("fp_")
    assert routable("tenant-0001.v2_x")
    for name in ("a b", "a%2F", 'a"b', "ü", "a?b"):
        assert not routable(name)
        with pytest.raises(ValueError, match="cannot have a fast-path route"):
            FastKey(name)


def test_with_no_entries_every_request_takes_the_default_route() -> None:
    rest, grpc = configurations([])
    (vhost,) = rest.virtual_hosts
    assert vhost.domains == ["*"]
    assert vhost.routes == []
    assert vhost.matcher is not None
    assert vhost.matcher.matcher_tree is None
    default = route_of(vhost.matcher.on_no_match)
    assert default.name == "default"
    assert names.FILTER_EXT_PROC in default.typed_per_filter_config
    # gRPC: the reload denial by path first, then (no keys) the default route
    (grpc_vhost,) = grpc.virtual_hosts
    assert grpc_vhost.matcher is not None
    tree = grpc_vhost.matcher.matcher_tree
    assert tree is not None
    assert tree.exact_match_map is not None
    assert list(tree.exact_match_map.map) == [names.RELOAD_CONFIG_PATH]
    assert route_of(tree.exact_match_map.map[names.RELOAD_CONFIG_PATH]).name == "reload-config-denied"
    assert grpc_vhost.matcher.on_no_match.matcher is not None
    assert route_of(grpc_vhost.matcher.on_no_match.matcher.on_no_match).name == "default"


def test_with_the_module_grpc_routes_are_found_by_key_alone() -> None:
    """The internal miss listener denies the reload: the gRPC listener looks up no path."""
    with_module = dataclasses.replace(view(), grpc_key_module="/modules/libtfscache_grpc_key.so")
    entries = [FastPathEntry(FastKey("m"), (A_REST,), (A_GRPC,))]
    for routed, keys in (([], set()), (entries, {'["m"]|[]|[]'})):
        _, encoded = build_fast_path_configurations(with_module, routed, FastPathEncoder())
        (vhost,) = RouteConfiguration.parse(bytes(encoded)).virtual_hosts
        assert vhost.matcher is not None
        default = route_of(vhost.matcher.on_no_match).route
        assert default is not None
        assert default.cluster == names.CLUSTER_GRPC_MISS
        if not keys:
            assert vhost.matcher.matcher_tree is None
            continue
        tree = vhost.matcher.matcher_tree
        assert tree is not None
        assert tree.input is not None
        assert tree.input.typed_config is not None
        assert tree.input.typed_config.unpack() == FilterStateInput(key=MODEL_KEY_STATE)
        assert tree.exact_match_map is not None
        assert set(tree.exact_match_map.map) == keys


def test_resident_versions_get_routes_to_their_holders_with_ext_proc_left_alone() -> None:
    entries = [
        FastPathEntry(FastKey("m"), (A_REST,), (A_GRPC,)),
        FastPathEntry(FastKey("m", 2), (A_REST, B_REST), (A_GRPC, B_GRPC)),
    ]
    rest, grpc = configurations(entries)
    (vhost,) = rest.virtual_hosts
    assert vhost.retry_policy is None  # each route has its own, or none
    assert vhost.matcher is not None
    tree = vhost.matcher.matcher_tree
    assert tree is not None
    assert tree.input is not None
    assert tree.input.typed_config is not None
    assert tree.input.typed_config.unpack() == HttpRequestHeaderMatchInput(header_name=":path")
    assert tree.prefix_match_map is not None
    by_prefix = tree.prefix_match_map.map
    assert set(by_prefix) == {"/v1/models/m:", "/v1/models/m/versions/2:"}

    single = route_of(by_prefix["/v1/models/m:"])
    assert single.stat_prefix == FastKey("m").stat_prefix
    assert single.typed_per_filter_config == {}
    assert single.route is not None
    # One holder: that node's own cluster, no header to choose a host.
    assert single.route.cluster == f"{names.CLUSTER_NODES_REST}_127_0_0_1_8501"
    assert single.route.cluster == single_node_cluster_name(names.CLUSTER_NODES_REST, A_REST)
    assert single.route.timeout is not None
    assert single.route.timeout.total_seconds() == 7.0
    assert single.request_headers_to_add == []
    # Nothing to retry on: no retry policy, which would cost Envoy work on every request.
    assert single.route.retry_policy is None

    spread = route_of(by_prefix["/v1/models/m/versions/2:"])
    assert spread.route is not None
    assert spread.route.weighted_clusters is not None
    choices = [
        (c.name, c.weight, [h.header.value for h in c.request_headers_to_add if h.header])
        for c in spread.route.weighted_clusters.clusters
    ]
    assert choices == [
        (names.CLUSTER_NODES_REST, 1, [f"{A_REST},{B_REST}"]),
        (names.CLUSTER_NODES_REST, 1, [f"{B_REST},{A_REST}"]),
    ]
    # A failed connection is retried on the other holder.
    assert spread.route.retry_policy == retry_policy(RETRIES)

    (grpc_vhost,) = grpc.virtual_hosts
    assert grpc_vhost.matcher is not None
    inner = grpc_vhost.matcher.on_no_match.matcher
    assert isinstance(inner, Matcher)
    assert inner.matcher_tree is not None
    assert inner.matcher_tree.input is not None
    assert inner.matcher_tree.input.typed_config is not None
    assert inner.matcher_tree.input.typed_config.unpack() == FilterStateInput(key=MODEL_KEY_STATE)
    assert inner.matcher_tree.exact_match_map is not None
    by_key = inner.matcher_tree.exact_match_map.map
    assert set(by_key) == {'["m"]|[]|[]', '["m"]|["2"]|[]'}
    grpc_route = route_of(by_key['["m"]|[]|[]'])
    assert grpc_route.route is not None
    assert grpc_route.route.cluster == single_node_cluster_name(names.CLUSTER_NODES_GRPC, A_GRPC)


def test_encoded_entries_are_reused_and_replaced_when_holders_change() -> None:
    encoder = FastPathEncoder()
    first = [FastPathEntry(FastKey("m"), (A_REST,), (A_GRPC,))]
    moved = [FastPathEntry(FastKey("m"), (B_REST,), (B_GRPC,))]
    one = build_fast_path_configurations(view(), first, encoder)
    again = build_fast_path_configurations(view(), first, encoder)
    assert [bytes(c) for c in one] == [bytes(c) for c in again]
    rest, _ = build_fast_path_configurations(view(), moved, encoder)
    assert len(encoder._entries) == 2  # the key's entry in each listener, the old ones replaced
    parsed = RouteConfiguration.parse(bytes(rest))
    vhost = parsed.virtual_hosts[0]
    assert vhost.matcher is not None
    assert vhost.matcher.matcher_tree is not None
    assert vhost.matcher.matcher_tree.prefix_match_map is not None
    route = route_of(vhost.matcher.matcher_tree.prefix_match_map.map["/v1/models/m:"])
    assert route.route is not None
    assert route.route.cluster == single_node_cluster_name(names.CLUSTER_NODES_REST, B_REST)
    # The routes use B's own cluster now, the default route the shared one.
    assert rest.clusters == frozenset(
        {names.CLUSTER_NODES_REST, single_node_cluster_name(names.CLUSTER_NODES_REST, B_REST)}
    )


def test_a_thousand_models_make_configurations_of_a_few_hundred_kilobytes() -> None:
    entries = [FastPathEntry(FastKey(f"tenant-{i:04d}", 1), (A_REST,), (A_GRPC,)) for i in range(1000)]
    rest, grpc = build_fast_path_configurations(view(), entries, FastPathEncoder())
    assert len(bytes(rest)) < 400_000
    assert len(bytes(grpc)) < 400_000
    assert len(RouteConfiguration.parse(bytes(rest)).virtual_hosts) == 1


@pytest.mark.parametrize("chosen_late", [False, True])
@pytest.mark.parametrize("holders", [(A_GRPC,), (A_GRPC, B_GRPC)])
def test_each_route_is_its_shared_template_and_its_own_stat_prefix(
    chosen_late: bool, holders: tuple[Address, ...]
) -> None:
    encoder = FastPathEncoder()
    for key in (FastKey("m"), FastKey("m", 3), FastKey("other.model-1", 12)):
        encoded = encoder._route_bytes(
            key, names.CLUSTER_NODES_GRPC, holders, 7.0, RETRIES, chosen_late=chosen_late
        )
        expected = fast_route(key, names.CLUSTER_NODES_GRPC, holders, 7.0, RETRIES, chosen_late=chosen_late)
        assert Route.parse(encoded) == expected
        assert route_of(MatcherOnMatch.parse(_encoded_on_match("fast", encoded))) == expected
        assert MatcherOnMatch.parse(_encoded_on_match("fast", encoded)) == _on_match("fast", expected)
    assert len(encoder._templates) == 1  # one template for every key with the same holders


def test_templates_of_holder_sets_no_longer_used_are_dropped() -> None:
    encoder = FastPathEncoder()
    build_fast_path_configurations(view(), [FastPathEntry(FastKey("m"), (A_REST,), (A_GRPC,))], encoder)
    assert {template[1] for template in encoder._templates} == {(A_REST,), (A_GRPC,)}
    build_fast_path_configurations(view(), [FastPathEntry(FastKey("m"), (B_REST,), (B_GRPC,))], encoder)
    assert {template[1] for template in encoder._templates} == {(B_REST,), (B_GRPC,)}
