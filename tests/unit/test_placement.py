"""Placement by rendezvous hashing: R distinct live nodes, deterministic, minimal movement, holders,
weights."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfscachectl.core.placement import Node, NodeId, place, place_all, rank
from tfscachectl.errors import ConfigError

MODELS = [f"tenant-{i}" for i in range(2000)]

node_ids = st.lists(
    st.text("abcdefgh0123456789-", min_size=1, max_size=6), min_size=1, max_size=8, unique=True
)
model_names = st.text(min_size=1, max_size=20)


def nodes(count: int) -> list[NodeId]:
    return [NodeId(f"node-{i}") for i in range(count)]


def test_the_hash_is_stable_across_processes_and_releases() -> None:
    # Changing the hash would move every model of every deployment on upgrade: this pins it.
    assert rank("half_plus_two", ["a", "b", "c", "d"]) == ("b", "c", "d", "a")
    assert place("resnet", nodes(5), replicas=2) == ("node-0", "node-2")


@given(ids=node_ids, model=model_names, replicas=st.integers(1, 4))
def test_exactly_r_distinct_live_nodes(ids: list[str], model: str, replicas: int) -> None:
    chosen = place(model, ids, replicas)
    assert len(chosen) == min(replicas, len(ids))
    assert len(set(chosen)) == len(chosen)
    assert set(chosen) <= set(ids)


@settings(max_examples=50)
@given(ids=node_ids, model=model_names, replicas=st.integers(1, 4), data=st.data())
def test_node_order_does_not_matter(ids: list[str], model: str, replicas: int, data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(ids))
    assert place(model, ids, replicas) == place(model, shuffled, replicas)
    assert rank(model, ids) == rank(model, shuffled)


@given(ids=node_ids, model=model_names, replicas=st.integers(1, 4))
def test_placement_is_the_top_of_the_ranking(ids: list[str], model: str, replicas: int) -> None:
    assert place(model, ids, replicas) == rank(model, ids)[:replicas]


@settings(max_examples=25)
@given(count=st.integers(1, 7), replicas=st.integers(1, 3), new=st.text("xyz", min_size=1, max_size=3))
def test_a_new_node_takes_models_only_for_itself(count: int, replicas: int, new: str) -> None:
    before_nodes = nodes(count)
    after_nodes = [*before_nodes, NodeId(new)]
    for model in MODELS[:100]:
        before = place(model, before_nodes, replicas)
        after = place(model, after_nodes, replicas)
        if before == after:
            continue
        # The new node joined the set; at most one old node (the lowest ranked) left it.
        assert new in after
        assert set(before) - set(after) <= {before[-1]}
        assert set(after) - set(before) == {new}


@settings(max_examples=25)
@given(count=st.integers(2, 8), replicas=st.integers(1, 3), data=st.data())
def test_removing_a_node_moves_only_its_models(count: int, replicas: int, data: st.DataObject) -> None:
    before_nodes = nodes(count)
    gone = data.draw(st.sampled_from(before_nodes))
    after_nodes = [n for n in before_nodes if n != gone]
    for model in MODELS[:100]:
        before = place(model, before_nodes, replicas)
        after = place(model, after_nodes, replicas)
        if gone not in before:
            assert after == before
        else:
            survivors = tuple(n for n in before if n != gone)
            assert after[: len(survivors)] == survivors


@pytest.mark.parametrize(("count", "replicas"), [(2, 1), (4, 1), (9, 1), (4, 2)])
def test_a_new_node_moves_about_its_share(count: int, replicas: int) -> None:
    before_nodes = nodes(count)
    after_nodes = [*before_nodes, NodeId("new")]
    moved = sum(
        place(model, before_nodes, replicas) != place(model, after_nodes, replicas) for model in MODELS
    )
    expected = len(MODELS) * replicas / (count + 1)
    assert abs(moved - expected) < 0.15 * expected, (moved, expected)


def test_models_spread_evenly() -> None:
    counts = Counter(place(f"model-{i}", nodes(5))[0] for i in range(10_000))
    assert set(counts) == set(nodes(5))
    assert all(abs(c - 2000) < 200 for c in counts.values()), counts


def test_weights_share_models_in_proportion() -> None:
    weighted = [Node(NodeId("big"), 3.0), Node(NodeId("small"), 1.0)]
    counts: Counter[str] = Counter(place(model, weighted)[0] for model in MODELS)
    assert abs(counts["big"] / len(MODELS) - 0.75) < 0.04, counts


def test_weights_keep_minimal_movement() -> None:
    before_nodes = [Node(NodeId("a"), 1.0), Node(NodeId("b"), 2.0)]
    after_nodes = [*before_nodes, Node(NodeId("c"), 1.0)]
    for model in MODELS[:500]:
        before, after = place(model, before_nodes)[0], place(model, after_nodes)[0]
        assert after in (before, "c")


def test_holders_are_kept() -> None:
    live = nodes(4)
    model = "m"
    best = rank(model, live)
    holder = best[-1]  # the worst-ranked node holds it: it stays there anyway
    assert place(model, live, 1, holders={holder}) == (holder,)
    # With two replicas the holder is kept and the best other node is added.
    assert place(model, live, 2, holders={holder}) == (holder, best[0])
    # More holders than replicas: the best-ranked holders.
    assert place(model, live, 1, holders=set(best[1:])) == (best[1],)


def test_holders_that_are_not_live_are_ignored() -> None:
    live = nodes(3)
    assert place("m", live, 1, holders={"gone"}) == place("m", live, 1)


@settings(max_examples=50)
@given(ids=node_ids, model=model_names, replicas=st.integers(1, 4), data=st.data())
def test_live_holders_always_stay(ids: list[str], model: str, replicas: int, data: st.DataObject) -> None:
    holders = data.draw(st.sets(st.sampled_from(ids)))
    chosen = place(model, ids, replicas, holders)
    assert len(chosen) == min(replicas, len(ids))
    kept = [n for n in chosen if n in holders]
    assert len(kept) == min(len(holders), replicas)


def test_no_live_nodes_no_placement() -> None:
    assert place("m", [], 2) == ()
    assert rank("m", []) == ()


def test_fewer_nodes_than_replicas_uses_them_all() -> None:
    assert sorted(place("m", ["a", "b"], replicas=3)) == ["a", "b"]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="replicas"):
        place("m", ["a"], replicas=0)
    with pytest.raises(ConfigError, match="weight"):
        Node(NodeId("a"), 0)
    with pytest.raises(ConfigError, match="weight"):
        Node(NodeId("a"), float("inf"))
    with pytest.raises(ConfigError, match="empty"):
        Node(NodeId(""))
    with pytest.raises(ConfigError, match="twice"):
        place("m", [Node(NodeId("a"), 1.0), Node(NodeId("a"), 2.0)])


def test_duplicate_nodes_count_once() -> None:
    assert place("m", ["a", "a", "b"], replicas=2) == place("m", ["a", "b"], replicas=2)


def test_place_all() -> None:
    live = nodes(3)
    placed = place_all(["m1", "m2"], live, replicas=2, holders={"m1": {live[2]}})
    assert placed["m1"][0] == live[2]
    assert placed["m2"] == place("m2", live, 2)
