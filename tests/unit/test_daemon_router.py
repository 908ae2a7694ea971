"""The daemon's routing decisions, with in-memory agents (``InMemoryAgent``: no processes, no sockets)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tfscachectl.agent.api.client import AgentUnreachableError
from tfscachectl.agent.api.values import EnsureResult, ResidencyEvent
from tfscachectl.core.placement import NodeId, place
from tfscachectl.core.refs import ModelKey
from tfscachectl.core.requests import ModelApi, ModelRequest, RequestProtocol
from tfscachectl.daemon.cluster import Cluster
from tfscachectl.daemon.router import PlacementRouter
from tfscachectl.daemon.settings import DaemonSettings, NodeSettings
from tfscachectl.errors import Code, ServingError


class InMemoryAgent:
    """An agent that loads instantly, or fails as told; counts ensures."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.resident: set[str] = set()
        self.ensures: list[str] = []
        self.preloads: list[str] = []
        self.fail_with: ServingError | None = None

    async def ensure(
        self, name: str, version: int | None = None, *, label: str | None = None, **_: Any
    ) -> EnsureResult:
        self.ensures.append(name)
        if self.fail_with is not None:
            raise self.fail_with
        outcome = "hit" if name in self.resident else "loaded"
        self.resident.add(name)
        return EnsureResult(ModelKey(name, version or 1), outcome, 0.0)  # type: ignore[arg-type]

    async def preload(
        self, name: str, version: int | None = None, *, label: str | None = None
    ) -> EnsureResult:
        self.preloads.append(name)
        self.resident.add(name)
        return EnsureResult(ModelKey(name, version or 1), "loaded", 0.0)  # type: ignore[arg-type]

    async def watch_residency(
        self, watcher: str | None = None, confirm_unloads: bool = False
    ) -> AsyncIterator[ResidencyEvent]:
        await asyncio.Event().wait()
        yield  # type: ignore[misc]

    async def close(self) -> None:
        return None


NODES = [
    NodeSettings(
        id=f"n{i}",
        rest=f"127.0.0.1:{8501 + 10 * i}",
        grpc=f"127.0.0.1:{8500 + 10 * i}",
        agent=f"127.0.0.1:{8600 + i}",
    )
    for i in range(3)
]


def make_router(replicas: int = 1) -> tuple[PlacementRouter, dict[str, InMemoryAgent]]:
    settings = DaemonSettings(nodes=tuple(NODES), replicas=replicas)
    agents: dict[str, InMemoryAgent] = {}

    def factory(target: str) -> Any:
        agents[target] = InMemoryAgent(target)
        return agents[target]

    cluster = Cluster(settings.nodes, client=factory)
    by_node = {n.id: agents[n.agent] for n in NODES}
    return PlacementRouter(cluster, settings), by_node


def request(name: str, protocol: RequestProtocol = RequestProtocol.REST) -> ModelRequest:
    return ModelRequest(name, None, None, ModelApi.PREDICT, protocol)


def route(router: PlacementRouter, req: ModelRequest) -> Any:
    return asyncio.run(router.choose(req, time.monotonic() + 5))


def test_a_model_goes_to_its_placement_and_stays() -> None:
    router, agents = make_router()
    [expected] = place("tenant-1", [n.id for n in NODES], 1)
    first = route(router, request("tenant-1"))
    assert first.node == expected
    assert first.loaded
    assert first.address == next(n.rest for n in NODES if n.id == expected)
    again = route(router, request("tenant-1", RequestProtocol.GRPC))
    assert (again.node, again.loaded) == (expected, False)
    assert again.address == next(n.grpc for n in NODES if n.id == expected)
    assert agents[expected].ensures == ["tenant-1", "tenant-1"]


def test_holders_are_preferred_over_the_placement() -> None:
    router, _agents = make_router()
    [placed] = place("m", [n.id for n in NODES], 1)
    other = next(n.id for n in NODES if n.id != placed)
    router.cluster.note_loaded(NodeId(other), "m", 1)
    assert route(router, request("m")).node == other


def test_an_unreachable_agent_falls_back_to_the_next_node() -> None:
    router, agents = make_router()
    [placed] = place("m", [n.id for n in NODES], 1)
    agents[placed].fail_with = AgentUnreachableError(Code.UNAVAILABLE, "agent at x is unreachable: refused")
    decision = route(router, request("m"))
    assert decision.node != placed
    assert router.counters.fallbacks == 1


def test_what_the_store_lacks_is_left_for_a_node_to_answer() -> None:
    router, agents = make_router()
    [placed] = place("nope", [n.id for n in NODES], 1)
    agents[placed].fail_with = ServingError(Code.NOT_FOUND, "Servable not found for request: Latest(nope)")
    decision = route(router, request("nope"))
    # TF Serving itself answers (its exact error, body checks first), and nothing is loaded
    assert (decision.node, decision.loaded) == (placed, False)


def test_load_errors_reach_the_client_as_tf_serving_errors() -> None:
    router, agents = make_router()
    [placed] = place("broken", [n.id for n in NODES], 1)
    agents[placed].fail_with = ServingError(
        Code.DATA_LOSS, "Can't parse /c/broken/1/saved_model.pb as binary proto"
    )
    with pytest.raises(ServingError) as caught:
        route(router, request("broken"))
    assert caught.value.code == Code.DATA_LOSS


def test_a_slow_load_is_a_503_saying_so() -> None:
    router, agents = make_router()
    [placed] = place("big", [n.id for n in NODES], 1)
    agents[placed].fail_with = ServingError(
        Code.DEADLINE_EXCEEDED, "big:1 is not loaded yet: timed out after 2 s"
    )
    with pytest.raises(ServingError) as caught:
        route(router, request("big"))
    assert caught.value.code == Code.UNAVAILABLE
    assert "still loading" in caught.value.message


def test_replicas_are_warmed_and_then_share_requests() -> None:
    router, agents = make_router(replicas=2)
    chosen = place("m", [n.id for n in NODES], 2)

    async def scenario() -> set[NodeId]:
        first = await router.choose(request("m"), time.monotonic() + 5)
        await asyncio.gather(*router._warming)
        for node in chosen:
            router.cluster.note_loaded(node, "m", 1)
        served = {first.node}
        for _ in range(4):
            served.add((await router.choose(request("m"), time.monotonic() + 5)).node)
        return served

    assert asyncio.run(scenario()) == set(chosen)
    assert sum(len(a.preloads) for a in agents.values()) == 1
