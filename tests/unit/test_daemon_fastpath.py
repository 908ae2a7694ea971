"""What fast-path routes the daemon asks for, and how the hits Envoy counted are shared among holders."""

from __future__ import annotations

from tfscachectl.agent.api.values import ModelHits
from tfscachectl.core.placement import NodeId
from tfscachectl.daemon.fastpath import due_names, fast_path_entries, holders_by_stat_prefix
from tfscachectl.daemon.recency import (
    hits_by_node,
    in_flight_filter,
    increases,
    parse_in_flight,
    parse_route_counters,
)
from xds.fastpath import FastKey
from xds.view import Address

A, B = NodeId("a"), NodeId("b")
ADDRESSES = {
    A: (Address("127.0.0.1", 8501), Address("127.0.0.1", 8500)),
    B: (Address("127.0.0.2", 8501), Address("127.0.0.2", 8500)),
}


def test_each_resident_version_gets_a_route_and_the_latest_one_its_name_too() -> None:
    held = {A: {("m", 1), ("m", 2), ("n", 5)}, B: {("m", 2)}}
    entries = fast_path_entries(held, {"m": 2}, ADDRESSES)
    by_key = {e.key: e for e in entries}
    assert list(by_key) == [FastKey("m"), FastKey("m", 1), FastKey("m", 2), FastKey("n", 5)]
    assert by_key[FastKey("m")].rest == (ADDRESSES[A][0], ADDRESSES[B][0])
    assert by_key[FastKey("m")].grpc == (ADDRESSES[A][1], ADDRESSES[B][1])
    assert by_key[FastKey("m", 1)].rest == (ADDRESSES[A][0],)
    # "n" was never resolved as latest: its unversioned requests take the slow path, which resolves it
    assert FastKey("n") not in by_key


def test_names_that_need_escaping_and_unknown_nodes_get_no_route() -> None:
    held = {A: {("needs escaping", 1), ("ok", 1)}, NodeId("gone"): {("ok", 1)}}
    entries = fast_path_entries(held, {"needs escaping": 1, "ok": 1}, ADDRESSES)
    assert [(e.key, e.rest) for e in entries] == [
        (FastKey("ok"), (ADDRESSES[A][0],)),
        (FastKey("ok", 1), (ADDRESSES[A][0],)),
    ]


def test_route_counters_are_read_from_envoys_stats_text() -> None:
    m, m1 = FastKey("m").stat_prefix, FastKey("m", 1).stat_prefix
    text = "\n".join(
        [
            f"vhost.tfscache_rest.route.{m}.upstream_rq_completed: 7",
            f"vhost.tfscache_grpc.route.{m}.upstream_rq_completed: 3",
            f"vhost.tfscache_rest.route.{m1}.upstream_rq_completed: 1",
            f"vhost.tfscache_rest.route.{m1}.upstream_rq_total: 99",
            "cluster.tfscache_nodes_rest.upstream_rq_completed: 50",
        ]
    )
    assert parse_route_counters(text) == {m: 10, m1: 1}


def test_increases_start_from_a_baseline_and_survive_a_reset() -> None:
    assert increases(None, {"x": 5}) == {}
    assert increases({"x": 5}, {"x": 8, "y": 2}) == {"x": 3, "y": 2}
    assert increases({"x": 5}, {"x": 5}) == {}
    assert increases({"x": 50}, {"x": 4}) == {"x": 4}  # Envoy restarted


def test_hits_are_shared_among_holders_and_latest_routes_credit_the_concrete_version() -> None:
    holders = holders_by_stat_prefix({A: {("m", 2)}, B: {("m", 2)}}, {"m": 2})
    assert holders[FastKey("m").stat_prefix] == ("m", 2, (A, B))
    assert holders[FastKey("m", 2).stat_prefix] == ("m", 2, (A, B))
    grown = {FastKey("m").stat_prefix: 5, FastKey("m", 2).stat_prefix: 2, "fp_unknown_1": 9}
    assert hits_by_node(grown, holders, 100.0) == {
        A: [ModelHits("m", 2, 4, 100.0)],
        B: [ModelHits("m", 2, 3, 100.0)],
    }


def test_requests_in_flight_are_those_routed_and_not_answered() -> None:
    text = "\n".join(
        [
            "vhost.tfscache_rest.route.fp_aa_1.upstream_rq_total: 7",
            "vhost.tfscache_rest.route.fp_aa_1.upstream_rq_completed: 5",
            "vhost.fp_aa_1.route.fp_aa_1.upstream_rq_total: 3",
            "vhost.fp_aa_1.route.fp_aa_1.upstream_rq_completed: 3",
            "vhost.tfscache_rest.route.fp_aa_1.upstream_rq_2xx: 5",
        ]
    )
    assert parse_in_flight(text) == 2
    assert parse_in_flight("") == 0
    pattern = in_flight_filter(["fp_bb_latest", "fp_aa_1"])
    assert pattern == r"^vhost\.[^.]+\.route\.(fp_aa_1|fp_bb_latest)\.upstream_rq_(total|completed)$"


def test_due_names_take_every_name_in_turn_and_wrap_around() -> None:
    names = ["a", "b", "c", "d", "e"]
    seen: list[str] = []
    position = 0
    for _ in range(5):
        due, position = due_names(names, position, 2)
        seen += due
    assert seen == names * 2  # each name twice in five turns of two
    assert due_names(names, 3, 9) == (["d", "e", "a", "b", "c"], 3)  # never one name twice in a turn
    # Names that came and went: a position past the end wraps; nothing to check gives nothing.
    assert due_names(["a", "b"], 7, 1) == (["b"], 0)
    assert due_names([], 4, 3) == ([], 0)
    assert due_names(names, 0, 0) == ([], 0)
