"""Which node serves a request, and making sure its model is loaded there first.

For each request the ext_proc server asks ``route``: placement (rendezvous hashing over the live nodes,
``replicas`` per model, nodes that already hold the model first) picks the candidates; among those that
hold the model, requests are spread round-robin; otherwise the best-ranked one is asked to ensure the model
and the other replicas are warmed in the background. If a node's agent cannot be reached, the next node in
rank order is tried, so one dead node does not fail requests. A load that does not finish within the
ensure deadline is answered 503 / UNAVAILABLE saying so (the load goes on; a later request finds it ready).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from tfscachectl.agent.api.client import AgentUnreachableError
from tfscachectl.core.placement import NodeId, place, rank
from tfscachectl.core.requests import ModelApi, ModelRequest, RequestProtocol
from tfscachectl.daemon.cluster import Cluster
from tfscachectl.daemon.extproc import RouteDecision
from tfscachectl.daemon.settings import DaemonSettings, NodeSettings
from tfscachectl.errors import Code, ServingError

log = logging.getLogger(__name__)

#: How many more nodes, beyond the placement's own, are tried when agents cannot be reached.
MAX_FALLBACK_NODES = 2


@dataclass(frozen=True)
class Routed:
    """The node chosen for a request: its id and the TF Serving address for the request's protocol."""

    node: NodeId
    address: str
    loaded: bool  # the model was loaded for this request (a miss), not already there


@dataclass
class RouterCounters:
    routed: int = 0
    loads: int = 0
    failures: int = 0
    fallbacks: int = 0


class PlacementRouter:
    def __init__(
        self,
        cluster: Cluster,
        settings: DaemonSettings,
        observe: Callable[[str, float], None] | None = None,
        counters: RouterCounters | None = None,
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        self._observe = observe
        self.counters = counters if counters is not None else RouterCounters()
        self._turn = itertools.count()
        self._warming: set[asyncio.Task[None]] = set()

    def candidates(self, name: str) -> list[NodeId]:
        """The nodes to try for ``name``, in order: holders among the placement (rotated), the rest of the
        placement, then a few fallbacks in rank order."""
        live = self.cluster.live()
        if not live:
            return []
        holders = self.cluster.holders(name)
        chosen = list(place(name, live, self.settings.replicas, holders))
        holding = [n for n in chosen if n in holders]
        if len(holding) > 1:
            shift = next(self._turn) % len(holding)
            holding = holding[shift:] + holding[:shift]
        others = [n for n in chosen if n not in holders]
        fallbacks = [n for n in rank(name, live) if n not in chosen][:MAX_FALLBACK_NODES]
        return holding + others + fallbacks

    async def route(self, request: ModelRequest, deadline: float) -> RouteDecision:
        """The ext_proc server's question: which TF Serving address serves this request."""
        started = time.monotonic()
        try:
            routed = await self.choose(request, deadline)
        except ServingError:
            self._record("error", started)
            raise
        self._record("loaded" if routed.loaded else "hit", started)
        return RouteDecision(routed.address)

    def _record(self, outcome: str, started: float) -> None:
        if self._observe is not None:
            self._observe(outcome, time.monotonic() - started)

    async def choose(self, request: ModelRequest, deadline: float) -> Routed:
        """Ensure the request's model on a node and say which; raises ``ServingError`` as TF Serving would."""
        order = self.candidates(request.name)
        if not order:
            raise ServingError(Code.UNAVAILABLE, "No TF Serving node is available")
        chosen = set(order[: self.settings.replicas])
        last: ServingError | None = None
        for node_id in order:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # TF Serving's status ignores a label: the cache does too (the latest version is made available)
            label = None if request.api is ModelApi.STATUS else request.label
            try:
                result = await self.cluster.agents[node_id].ensure(
                    request.name, request.version, label=label, timeout=remaining
                )
            except AgentUnreachableError as exc:
                log.warning("agent_unreachable node=%s error=%r", node_id, exc.message)
                self.counters.fallbacks += 1
                last = exc
                continue
            except ServingError as exc:
                if _unknown_to_the_store(exc):
                    # Nothing to load: let a node answer as TF Serving answers for what it does not have
                    # (the exact error, body parsing first, status wording, labels ignored by status...).
                    node = self.cluster.nodes[node_id]
                    return Routed(node_id, _address(node, request), loaded=False)
                self.counters.failures += 1
                raise _client_error(exc, request, self.settings.timeouts.ensure) from exc
            self.cluster.note_loaded(node_id, result.key.name, result.key.version)
            if request.version is None and label is None:
                self.cluster.note_latest(result.key.name, result.key.version)
            loaded = result.outcome != "hit"
            self.counters.routed += 1
            self.counters.loads += loaded
            if loaded:
                self._warm_replicas(request, chosen - {node_id})
            return Routed(node_id, _address(self.cluster.nodes[node_id], request), loaded)
        self.counters.failures += 1
        if last is not None:
            raise ServingError(Code.UNAVAILABLE, f"No node could load {request.name}: {last.message}")
        raise _still_loading(request, self.settings.timeouts.ensure)

    def any_node(self, protocol: RequestProtocol) -> RouteDecision | None:
        """The first node in a fixed order, for requests that name no model (TF Serving answers them)."""
        live = self.cluster.live()
        if not live:
            return None
        node = self.cluster.nodes[rank("", live)[0]]
        return RouteDecision(node.rest if protocol == RequestProtocol.REST else node.grpc)

    def _warm_replicas(self, request: ModelRequest, nodes: set[NodeId]) -> None:
        for node_id in nodes:
            task = asyncio.create_task(self._warm(node_id, request))
            self._warming.add(task)
            task.add_done_callback(self._warming.discard)

    async def _warm(self, node_id: NodeId, request: ModelRequest) -> None:
        try:
            await self.cluster.agents[node_id].preload(request.name, request.version, label=request.label)
        except ServingError as exc:
            log.info("replica_warm_failed node=%s model=%s error=%r", node_id, request.name, exc.message)

    async def close(self) -> None:
        for task in list(self._warming):
            task.cancel()
        await asyncio.gather(*self._warming, return_exceptions=True)


#: What an agent answers when the store has no such model, version or label (or the name cannot be one):
#: TF Serving's own words for what it does not have, so a node can be asked to answer instead.
_UNKNOWN = ("Servable not found for request:", "Unrecognized servable version label:", "model name ")


def _unknown_to_the_store(exc: ServingError) -> bool:
    return exc.code in (Code.NOT_FOUND, Code.INVALID_ARGUMENT) and exc.message.startswith(_UNKNOWN)


def _address(node: NodeSettings, request: ModelRequest) -> str:
    return node.rest if request.protocol == RequestProtocol.REST else node.grpc


def _still_loading(request: ModelRequest, ensure_timeout: float) -> ServingError:
    return ServingError(
        Code.UNAVAILABLE,
        f"Model {request.name} is still loading: it was not ready within {ensure_timeout:g} s; "
        "retry the request later",
    )


def _client_error(exc: ServingError, request: ModelRequest, ensure_timeout: float) -> ServingError:
    """An agent's error as the client sees it: TF Serving's, except that a slow load is a 503, not a 504."""
    if exc.code == Code.DEADLINE_EXCEEDED:
        return _still_loading(request, ensure_timeout)
    return exc
