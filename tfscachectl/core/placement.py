"""Placement: which live nodes serve a model, by rendezvous (highest-random-weight) hashing.

Every (node, model) pair gets a score from a stable hash (blake2b, never Python's salted ``hash()``); a
model goes to the ``replicas`` nodes with the highest scores. A pair's score depends on nothing else, so:

- the answer does not depend on the order nodes are listed in, nor on which process computes it;
- when a node joins, a model moves only if the new node now ranks among its top ``replicas``, and then
  only onto the new node (about ``replicas/(N+1)`` of the models for N nodes before);
- when a node leaves, only the models it held move, each to its next-ranked node.

Capacity weights use the logarithmic method (score = weight / -ln(u) with u the hash mapped into (0, 1)),
so a node of weight 2 gets about twice the models of a node of weight 1 and the properties above still hold.

Nodes that already hold a model are preferred: live holders are kept (the best-ranked ones, if there are
more than ``replicas``), and only the remaining replicas are chosen by rank. A model loaded somewhere
stays there while that node lives, instead of being loaded again elsewhere.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from hashlib import blake2b
from typing import NewType

from tfscachectl.errors import ConfigError

NodeId = NewType("NodeId", str)

#: One replica per model unless configured otherwise.
DEFAULT_REPLICAS = 1

_PERSON = b"tfscache-place"
_HASH_BITS = 52
_UNUSED_BITS = 64 - _HASH_BITS
_HASH_SPACE = float(2**_HASH_BITS)


@dataclass(frozen=True, slots=True)
class Node:
    """A live node and its capacity weight (relative; 1.0 for every node when capacities are equal)."""

    id: NodeId
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.id:
            raise ConfigError("node id is empty")
        if not math.isfinite(self.weight) or self.weight <= 0:
            raise ConfigError(f"node {self.id}: weight must be a positive number, not {self.weight!r}")


def _unit_hash(node: NodeId, model_name: str) -> float:
    """A stable pseudo-random number in (0, 1) for the pair (length-prefixed, so pairs never collide)."""
    digest = blake2b(digest_size=8, person=_PERSON)
    for part in (node.encode(), model_name.encode()):
        digest.update(struct.pack(">Q", len(part)))
        digest.update(part)
    value = int.from_bytes(digest.digest(), "big")
    # 52 bits, so that (value + 0.5) is exact in a float and the result is strictly inside (0, 1).
    return ((value >> _UNUSED_BITS) + 0.5) / _HASH_SPACE


def score(node: Node, model_name: str) -> float:
    """The rendezvous score of ``model_name`` on ``node``; higher wins."""
    return node.weight / -math.log(_unit_hash(node.id, model_name))


def _as_nodes(nodes: Iterable[Node | NodeId | str]) -> list[Node]:
    unique: dict[str, Node] = {}
    for item in nodes:
        node = item if isinstance(item, Node) else Node(NodeId(item))
        known = unique.get(node.id)
        if known is not None and known != node:
            raise ConfigError(f"node {node.id} is listed twice with different weights")
        unique[node.id] = node
    return list(unique.values())


def rank(model_name: str, nodes: Iterable[Node | NodeId | str]) -> tuple[NodeId, ...]:
    """Every node, best first for ``model_name`` (ties, which need equal 64-bit hashes, by node id)."""
    scored = sorted(_as_nodes(nodes), key=lambda n: (-score(n, model_name), n.id))
    return tuple(n.id for n in scored)


def place(
    model_name: str,
    nodes: Iterable[Node | NodeId | str],
    replicas: int = DEFAULT_REPLICAS,
    holders: Collection[NodeId | str] = (),
) -> tuple[NodeId, ...]:
    """The nodes to serve ``model_name``: ``replicas`` distinct live nodes (all, if fewer), best first.

    ``nodes`` are the live nodes (ids, or ``Node`` with a weight); ``holders`` are the nodes that already
    hold the model (any that are not live are ignored). Live holders come first, by rank; the remaining
    replicas are the best-ranked other nodes. No live nodes: an empty tuple.
    """
    if replicas < 1:
        raise ConfigError(f"replicas must be at least 1, not {replicas}")
    ranked = rank(model_name, nodes)
    held = set(holders)
    kept = [n for n in ranked if n in held][:replicas]
    others = [n for n in ranked if n not in held][: replicas - len(kept)]
    return tuple(kept + others)


def place_all(
    model_names: Iterable[str],
    nodes: Iterable[Node | NodeId | str],
    replicas: int = DEFAULT_REPLICAS,
    holders: Mapping[str, Collection[NodeId | str]] | None = None,
) -> dict[str, tuple[NodeId, ...]]:
    """``place`` for many models at once; ``holders`` maps a model name to the nodes that hold it."""
    live = _as_nodes(nodes)
    held = holders or {}
    return {name: place(name, live, replicas, held.get(name, ())) for name in model_names}
