"""A changing pool: members from discovery as nodes, and which resident models move when a node joins.

Placement is rendezvous hashing that keeps a model where it is loaded (``tfscachectl.core.placement``): a
node that joins would otherwise only get models nobody has loaded yet. So when nodes join, the daemon moves
the resident models whose placement now includes a new node (about ``replicas/N`` of them, N nodes after the
join, as the hashing promises; every other model stays): each is loaded on its new node first, then unloaded
from the node it leaves (that unload withdraws its routes first, like any other), so no request fails and
nothing is loaded twice more than needed. A node that leaves needs no plan: its models are placed again on
their next request, on their next-ranked nodes.

The plan is pure (``moves_on_join``); the daemon carries it out a few moves at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from tfscachectl.core.placement import Node, NodeId, place
from tfscachectl.daemon.settings import NodeSettings
from tfscachectl.discovery.members import Member
from tfscachectl.errors import ConfigError
from xds.view import Address

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, order=True)
class Move:
    """Load ``name:version`` on ``to``, then unload it from ``source``."""

    name: str
    version: int
    source: NodeId
    to: NodeId


@dataclass
class MembershipCounters:
    joins: int = 0
    leaves: int = 0
    moves: int = 0
    move_failures: int = 0
    members_refused: int = 0


def node_settings(member: Member) -> NodeSettings | None:
    """The daemon's node for a registered member, or None (logged) if Envoy could not use its addresses."""
    try:
        for address in (member.rest, member.grpc):
            Address.parse(address)  # Envoy's override_host needs IP:port
        return NodeSettings(
            id=member.node_id, rest=member.rest, grpc=member.grpc, agent=member.agent, weight=member.weight
        )
    except (ConfigError, ValidationError) as exc:
        log.warning("member_refused node=%s error=%s", member.node_id, exc)
        return None


def moves_on_join(
    held: Mapping[NodeId, Iterable[tuple[str, int]]],
    live: Collection[Node],
    replicas: int,
    joined: Collection[NodeId],
) -> list[Move]:
    """The resident versions whose placement now includes a joined node, each from a holder that is no
    longer placed to it. A version already on a joined node, or whose holders all stay placed, stays."""
    holders: dict[tuple[str, int], set[NodeId]] = {}
    for node_id, models in held.items():
        for model in models:
            holders.setdefault(model, set()).add(node_id)
    moves = []
    for (name, version), nodes in sorted(holders.items()):
        ideal = place(name, live, replicas)
        targets = [n for n in ideal if n in joined and n not in nodes]
        leaving = sorted(n for n in nodes if n not in ideal)
        for target, source in zip(targets, leaving, strict=False):
            moves.append(Move(name, version, source, target))
    return moves
