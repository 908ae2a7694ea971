"""Which resident models move when nodes join: those whose rendezvous placement now includes a new node."""

from __future__ import annotations

from tfscachectl.core.placement import Node, NodeId, place
from tfscachectl.daemon.membership import Move, moves_on_join

A, B, C = NodeId("node-1"), NodeId("node-2"), NodeId("node-3")


def test_a_third_node_takes_about_a_third_of_the_models_and_only_those_placed_on_it() -> None:
    names = [f"tenant-{i:04d}" for i in range(300)]
    two = [Node(A), Node(B)]
    held: dict[NodeId, set[tuple[str, int]]] = {A: set(), B: set()}
    for name in names:
        (node,) = place(name, two, 1)
        held[node].add((name, 1))
    three = [*two, Node(C)]
    moves = moves_on_join(held, three, 1, {C})
    assert {m.to for m in moves} == {C}
    assert {m.name for m in moves} == {n for n in names if place(n, three, 1) == (C,)}
    assert 0.25 < len(moves) / len(names) < 0.42  # about 1/3
    for move in moves:
        assert (move.name, move.version) in held[move.source]


def test_models_already_on_the_new_node_or_still_placed_stay() -> None:
    three = [Node(A), Node(B), Node(C)]
    name = next(n for n in (f"m{i}" for i in range(100)) if place(n, three, 1) == (C,))
    assert moves_on_join({A: set(), C: {(name, 1)}}, three, 1, {C}) == []
    other = next(n for n in (f"m{i}" for i in range(100)) if place(n, three, 1) == (A,))
    assert moves_on_join({A: {(other, 1)}}, three, 1, {C}) == []
    assert moves_on_join({B: {(name, 2)}}, three, 1, {C}) == [Move(name, 2, B, C)]
