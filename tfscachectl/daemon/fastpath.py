"""Which fast-path routes Envoy should have: pure, from what the nodes hold and what "latest" means.

A node's resident version ``(name, v)`` gets a route for version ``v``; the nodes holding the version the
cache last resolved as the latest of ``name`` (the agents' answer to an ensure without version) also get
the route for ``name`` alone. A name the cache never resolved has no such route: its first unversioned
request takes the slow path, which resolves it. Names that cannot have routes (``xds.fastpath.routable``)
are left out. Holders are listed in node id order; Envoy spreads requests over them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tfscachectl.core.placement import NodeId
from xds.fastpath import FastKey, FastPathEntry, routable, stat_prefix
from xds.view import Address

#: A node's REST and gRPC addresses, as Envoy reaches them.
NodeAddresses = tuple[Address, Address]


def routed_versions(name: str, version: int, latest: Mapping[str, int]) -> tuple[int | None, ...]:
    """The routes a resident version has: its own, and (None) its name's alone while it is the latest."""
    return (version, None) if latest.get(name) == version else (version,)


def fast_path_entries(
    held: Mapping[NodeId, Iterable[tuple[str, int]]],
    latest: Mapping[str, int],
    addresses: Mapping[NodeId, NodeAddresses],
) -> list[FastPathEntry]:
    """The fast-path routes for ``held`` (node -> resident ``(name, version)``), sorted by key."""
    holders: dict[FastKey, list[NodeId]] = {}
    for node_id in sorted(held):
        if node_id not in addresses:
            continue
        for name, version in held[node_id]:
            if not routable(name):
                continue
            for routed in routed_versions(name, version, latest):
                holders.setdefault(FastKey(name, routed), []).append(node_id)
    return [
        FastPathEntry(
            key,
            rest=tuple(addresses[n][0] for n in nodes),
            grpc=tuple(addresses[n][1] for n in nodes),
        )
        for key, nodes in sorted(holders.items(), key=lambda item: _order(item[0]))
    ]


def holders_by_stat_prefix(
    held: Mapping[NodeId, Iterable[tuple[str, int]]], latest: Mapping[str, int]
) -> dict[str, tuple[str, int, tuple[NodeId, ...]]]:
    """Route stat prefix -> (name, concrete version, holders): to credit the hits Envoy counted."""
    found: dict[str, tuple[str, int, list[NodeId]]] = {}
    for node_id in sorted(held):
        for name, version in held[node_id]:
            if not routable(name):
                continue
            # read every recency interval: prefixes without building (and validating) a FastKey each
            for routed in routed_versions(name, version, latest):
                found.setdefault(stat_prefix(name, routed), (name, version, []))[2].append(node_id)
    return {prefix: (name, version, tuple(nodes)) for prefix, (name, version, nodes) in found.items()}


def due_names(names: Sequence[str], position: int, count: int) -> tuple[list[str], int]:
    """The next ``count`` of ``names`` from ``position`` on, wrapping around (each at most once), and the
    position the next turn starts at: taken in turn, every name comes up once per ``len(names) / count``
    turns, even when names come and go in between (a position past the end wraps)."""
    if not names or count <= 0:
        return [], 0
    count = min(count, len(names))
    start = position % len(names)
    return [names[(start + i) % len(names)] for i in range(count)], (start + count) % len(names)


def _order(key: FastKey) -> tuple[str, int]:
    return (key.name, -1 if key.version is None else key.version)


@dataclass
class FastPathCounters:
    """What the daemon did for the fast path, for its metrics."""

    routes: int = 0
    """Fast-path routes in the configuration last published."""
    publications: int = 0
    """Snapshots built and published (changes that come together make one)."""
    publish_seconds: float = 0.0
    """Time spent building and publishing them."""
    withdrawals: int = 0
    """Unloads confirmed to an agent after Envoy acknowledged the withdrawal of the version's routes."""
    drain_timeouts: int = 0
    """Withdrawals whose routes still had requests in flight after ``fast_path.drain_timeout``."""
    withdrawal_failures: int = 0
    """Unloads not confirmed: Envoy did not acknowledge in time, or rejected the configuration."""
