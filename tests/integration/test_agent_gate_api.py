"""Unloading safely across processes: a real agent process holds an unload until its confirming watcher
(standing in for the control daemon) sends ``ConfirmUnload``, its stream ends, or ``timeouts.unload_gate``
passes. A real serving backend says whether the version is still AVAILABLE.

Every agent here has ``max_models=1`` and no guard window: ensuring one tenant evicts the other.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.harness import ProcessRegistry, ServingBackend
from tests.integration.test_agent_api import (
    RunningAgent,
    eventually,
    rest_predict,
    start_agent,
    start_backend,
    state_of,
    with_client,
)
from tfscachectl.agent.api import AgentClient, EnsureResult, ResidencyEvent
from tfscachectl.core.refs import ModelKey
from tfscachectl.errors import Code, ServingError
from tfscachectl.modelgen.store import ModelStoreTree
from tfscachectl.modelgen.tenants import tenant_name, tenant_weights

pytestmark = pytest.mark.integration

A = ModelKey(tenant_name(1), 1)
B = ModelKey(tenant_name(2), 1)
WATCHER = "gate-test-daemon"
# Long enough that no wait of these tests reaches it: an unload that goes on was released, not timed out.
HELD_GATE_S = 60.0
SHORT_GATE_S = 0.5
EVENT_TIMEOUT_S = 60.0
TIMEOUTS = {"fetch": 60, "load": 60, "unload": 30, "ensure": 90, "ready": 60}


@pytest.fixture(scope="module")
def store_root(generated_models: ModelStoreTree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gate-store")
    for key in (A, B):
        shutil.copytree(generated_models.base_path(key.name), root / key.name)
    return root


@pytest.fixture(scope="module")
def backend(module_processes: ProcessRegistry, tmp_path_factory: pytest.TempPathFactory) -> ServingBackend:
    return start_backend(module_processes, tmp_path_factory.mktemp("gate-backend"), "gate-backend")


@pytest.fixture(scope="module")
def agent(
    module_processes: ProcessRegistry,
    backend: ServingBackend,
    store_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningAgent]:
    running = start_agent(
        module_processes,
        backend,
        store_root,
        tmp_path_factory.mktemp("gate-agent"),
        name="gate-agent",
        max_models=1,
        timeouts={**TIMEOUTS, "unload_gate": HELD_GATE_S},
    )
    yield running
    running.process.stop()


def backend_state(backend: ServingBackend, key: ModelKey) -> str:
    """The version's state in the serving backend's model status (TF Serving's GetModelStatus)."""
    versions = backend.model_status(key.name)["model_version_status"]
    return str(next(v["state"] for v in versions if int(v["version"]) == key.version))


class Watcher:
    """A residency stream read into a queue by a task; ``stop()`` ends the stream (cancels the call)."""

    def __init__(self, client: AgentClient, watcher: str | None, confirm_unloads: bool) -> None:
        self.events: asyncio.Queue[ResidencyEvent] = asyncio.Queue()
        self._task = asyncio.create_task(self._read(client.watch_residency(watcher, confirm_unloads)))

    async def _read(self, stream: AsyncIterator[ResidencyEvent]) -> None:
        async for event in stream:
            self.events.put_nowait(event)

    async def next_of(self, key: ModelKey) -> str:
        """The kind of the next event about ``key`` (events about other versions are skipped)."""
        while True:
            event = await asyncio.wait_for(self.events.get(), EVENT_TIMEOUT_S)
            if event.key == key:
                return event.kind

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def make_resident(client: AgentClient, key: ModelKey) -> None:
    """``key`` resident and the other tenant not: with no confirming watcher, nothing holds the unload."""
    await client.ensure(key.name, key.version)
    await eventually(lambda: _only(client, key), f"{key} to be the only version resident")


async def _only(client: AgentClient, key: ModelKey) -> bool:
    return (await client.status()).in_state("resident") == (key,)


def test_unload_waits_for_the_watchers_confirmation(agent: RunningAgent, backend: ServingBackend) -> None:
    async def scenario(client: AgentClient) -> tuple[list[str], list[str], bool, EnsureResult, list[str]]:
        await make_resident(client, A)
        watcher = Watcher(client, WATCHER, confirm_unloads=True)
        try:
            seen = [await watcher.next_of(A)]  # the first events: what is resident
            ensure_b = asyncio.create_task(client.ensure(B.name, B.version))
            seen.append(await watcher.next_of(A))  # unloading: stop routing to A
            # the agent holds the unload: A is still served by the backend, and B waits for room
            held = [
                await state_of(client, A) or "-",
                backend_state(backend, A),
                await state_of(client, B) or "-",
            ]
            assert not ensure_b.done()
            awaited = await client.confirm_unload(WATCHER, A)
            loaded_b = await ensure_b
            seen.append(await watcher.next_of(A))
            return seen, held, awaited, loaded_b, [backend_state(backend, A), backend_state(backend, B)]
        finally:
            await watcher.stop()

    seen, held, awaited, loaded_b, after = with_client(agent.target, scenario)
    assert seen == ["loaded", "unloading", "unloaded"]
    assert held[:2] == ["unloading", "AVAILABLE"]
    assert held[2] in ("-", "cached", "loading")  # not resident before A is gone
    assert awaited  # the agent was waiting for exactly this confirmation
    assert (loaded_b.key, loaded_b.outcome) == (B, "loaded")
    assert after == ["END", "AVAILABLE"]
    assert rest_predict(backend, B.name, 2.0) == [tenant_weights(2).predict(2.0)]


def test_a_watcher_that_disconnects_releases_the_unload(agent: RunningAgent, backend: ServingBackend) -> None:
    async def scenario(client: AgentClient) -> tuple[str, str, EnsureResult, float, bool]:
        await make_resident(client, B)
        watcher = Watcher(client, WATCHER, confirm_unloads=True)
        try:
            assert await watcher.next_of(B) == "loaded"
            ensure_a = asyncio.create_task(client.ensure(A.name, A.version))
            assert await watcher.next_of(B) == "unloading"
            held = backend_state(backend, B)
        finally:
            await watcher.stop()  # the daemon goes away without confirming
        released = time.monotonic()
        loaded_a = await ensure_a
        waited = time.monotonic() - released
        # its stream is gone: a confirmation now counts for nothing
        return held, backend_state(backend, B), loaded_a, waited, await client.confirm_unload(WATCHER, B)

    held, after, loaded_a, waited, late = with_client(agent.target, scenario)
    assert held == "AVAILABLE"
    assert after == "END"
    assert (loaded_a.key, loaded_a.outcome) == (A, "loaded")
    assert waited < HELD_GATE_S / 2  # released by the disconnect, not by the gate's timeout
    assert not late


def test_a_watcher_that_does_not_confirm_is_not_waited_for(agent: RunningAgent) -> None:
    """A stream without ``confirm_unloads`` (the CLI, a dashboard) sees the events and holds nothing."""

    async def scenario(client: AgentClient) -> tuple[list[str], bool]:
        await make_resident(client, A)
        watcher = Watcher(client, "a-dashboard", confirm_unloads=False)
        try:
            assert await watcher.next_of(A) == "loaded"
            await client.ensure(B.name, B.version)  # nothing holds A's unload
            kinds = [await watcher.next_of(A), await watcher.next_of(A)]
            return kinds, await client.confirm_unload("a-dashboard", A)
        finally:
            await watcher.stop()

    kinds, awaited = with_client(agent.target, scenario)
    assert kinds == ["unloading", "unloaded"]
    assert not awaited


def test_confirm_unload_needs_a_watcher_id(agent: RunningAgent) -> None:
    with pytest.raises(ServingError) as caught:
        with_client(agent.target, lambda client: client.confirm_unload("", A))
    assert caught.value.code is Code.INVALID_ARGUMENT


def test_unload_goes_on_when_the_gate_times_out(
    processes: ProcessRegistry, store_root: Path, tmp_path: Path
) -> None:
    backend = start_backend(processes, tmp_path / "backend", "gate-timeout-backend")
    agent = start_agent(
        processes,
        backend,
        store_root,
        tmp_path / "agent",
        name="gate-timeout-agent",
        max_models=1,
        timeouts={**TIMEOUTS, "unload_gate": SHORT_GATE_S},
    )

    async def scenario(client: AgentClient) -> tuple[list[str], EnsureResult, float]:
        await make_resident(client, A)
        watcher = Watcher(client, WATCHER, confirm_unloads=True)
        try:
            assert await watcher.next_of(A) == "loaded"
            ensure_b = asyncio.create_task(client.ensure(B.name, B.version))
            assert await watcher.next_of(A) == "unloading"
            announced = time.monotonic()
            kinds = [await watcher.next_of(A)]  # never confirmed: unloaded after the gate's timeout
            gone_after = time.monotonic() - announced
            return kinds, await ensure_b, gone_after
        finally:
            await watcher.stop()

    kinds, loaded_b, gone_after = with_client(agent.target, scenario)
    assert kinds == ["unloaded"]
    assert (loaded_b.key, loaded_b.outcome) == (B, "loaded")
    assert gone_after >= SHORT_GATE_S * 0.8  # held for the gate's timeout first
    assert backend_state(backend, A) == "END"
    log = agent.process.log_text()
    assert "unload_gate_timeout" in log
    assert f"unconfirmed={WATCHER}" in log
