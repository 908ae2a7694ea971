"""The node agent as a process (``tfscachectl agent``): its gRPC API through ``AgentClient``, its metrics
page, its errors and its shutdown, against a real serving backend and a model store directory.

Most tests share one backend and one agent (module scope, ``max_models=3``, no guard window); each works on
its own tenant models, so none depends on what another left resident. Tests that need other settings, or
stop the agent, start their own backend and agent.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import grpc
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import ManagedProcess, ProcessRegistry, ServingBackend, free_port, pid_alive, wait_until
from tests.harness.serving import REPO_ROOT
from tfscachectl.agent.api import (
    MAX_RESOLVE_LATEST_NAMES,
    AgentClient,
    AgentUnreachableError,
    LatestVersion,
    ModelHits,
    NodeStatus,
    ResidencyEvent,
    agent_pb2,
    agent_pb2_grpc,
)
from tfscachectl.agent.api.server import AgentServer, AgentService
from tfscachectl.agent.settings import ENV_PREFIX, AgentSettings, S3Options, Timeouts, load_settings
from tfscachectl.core.refs import ModelKey
from tfscachectl.errors import Code, ServingError
from tfscachectl.modelgen.store import ModelStoreTree
from tfscachectl.modelgen.tenants import tenant_name, tenant_weights

pytestmark = pytest.mark.integration
T = TypeVar("T")

TENANTS = [tenant_name(n) for n in range(1, 9)]
# The agent imports TensorFlow (TF Serving's protos) and waits for TF Serving before it serves.
AGENT_READY_TIMEOUT_S = 90.0
PROBE_TIMEOUT_S = 2.0
# A whole async scenario of one test (a few loads and unloads).
SCENARIO_TIMEOUT_S = 120.0
# Waiting for something the agent does in the background (a preload, a metrics observation).
EVENTUALLY_TIMEOUT_S = 60.0
EVENT_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 60.0


# ----- processes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningAgent:
    process: ManagedProcess
    target: str
    metrics_url: str
    node_id: str


def start_backend(registry: ProcessRegistry, config_dir: Path, name: str) -> ServingBackend:
    """An empty serving backend, flagged as docs/agent.md recommends for an agent-managed TF Serving."""
    return ServingBackend.with_models(
        registry,
        config_dir,
        [],
        name=name,
        file_system_poll_wait_seconds=1,
        extra_flags=["--max_num_load_retries=0"],
    ).start()


def api_answers(target: str) -> bool:
    """Readiness: the agent's API answers Status."""
    with grpc.insecure_channel(target) as channel:
        agent_pb2_grpc.NodeAgentStub(channel).Status(agent_pb2.StatusRequest(), timeout=PROBE_TIMEOUT_S)
    return True


def start_agent(
    registry: ProcessRegistry,
    backend: ServingBackend,
    store_root: Path,
    workdir: Path,
    name: str = "agent",
    **overrides: Any,
) -> RunningAgent:
    listen, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    settings: dict[str, Any] = {
        "node_id": name,
        "listen": listen,
        "metrics_listen": metrics,
        "tf_serving_grpc": backend.grpc_target,
        "tf_serving_rest": f"127.0.0.1:{backend.rest_port}",
        "store": str(store_root),
        "cache_dir": str(workdir / "cache"),
        "max_models": 3,
        "guard_window": 0.0,
        "timeouts": {"fetch": 60, "load": 60, "unload": 30, "ensure": 60, "ready": 60},
    }
    settings.update(overrides)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "agent.yaml"
    config.write_text(yaml.safe_dump(settings))
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    process = registry.start(
        name, [sys.executable, "-m", "tfscachectl", "agent", "--config", str(config)], env=env, cwd=REPO_ROOT
    )
    wait_until(
        lambda: api_answers(listen), AGENT_READY_TIMEOUT_S, f"node agent API at {listen}", process=process
    )
    return RunningAgent(process, listen, f"http://{metrics}/metrics", name)


@pytest.fixture(scope="module")
def store_root(generated_models: ModelStoreTree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("agent-api-store")
    for name in [*TENANTS, "broken"]:
        shutil.copytree(generated_models.base_path(name), root / name)
    (root / TENANTS[1] / "labels.json").write_text(json.dumps({"stable": 1}))
    return root


@pytest.fixture(scope="module")
def backend(module_processes: ProcessRegistry, tmp_path_factory: pytest.TempPathFactory) -> ServingBackend:
    return start_backend(module_processes, tmp_path_factory.mktemp("agent-api-backend"), "agent-api-backend")


@pytest.fixture(scope="module")
def agent(
    module_processes: ProcessRegistry,
    backend: ServingBackend,
    store_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningAgent]:
    running = start_agent(module_processes, backend, store_root, tmp_path_factory.mktemp("agent-api"))
    yield running
    running.process.stop()


# ----- calling the agent --------------------------------------------------------------------------


def with_client(target: str, work: Callable[[AgentClient], Awaitable[T]]) -> T:
    """Run ``work`` with a client of the agent at ``target``, on a fresh event loop."""

    async def main() -> T:
        async with AgentClient(target) as client:
            return await asyncio.wait_for(work(client), SCENARIO_TIMEOUT_S)

    return asyncio.run(main())


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` (backing off) until it is true; fail after ``EVENTUALLY_TIMEOUT_S``."""
    deadline = time.monotonic() + EVENTUALLY_TIMEOUT_S
    interval = 0.01
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
        interval = min(interval * 2, 0.2)


async def state_of(client: AgentClient, key: ModelKey) -> str | None:
    info = (await client.status()).model(key)
    return None if info is None else info.state


def metrics(agent: RunningAgent) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the agent's metrics page: (name, sorted labels) -> value."""
    with urllib.request.urlopen(agent.metrics_url, timeout=HTTP_TIMEOUT_S) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def rest_predict(backend: ServingBackend, name: str, x: float) -> Any:
    request = urllib.request.Request(
        f"{backend.rest_url}/v1/models/{name}:predict",
        data=json.dumps({"instances": [x]}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        return json.load(response)["predictions"]


def serving_error(work: Callable[[AgentClient], Awaitable[Any]], agent: RunningAgent) -> ServingError:
    with pytest.raises(ServingError) as caught:
        with_client(agent.target, work)
    return caught.value


# ----- ensure, preload, status --------------------------------------------------------------------


def test_ensure_loads_cold_then_hits(agent: RunningAgent, backend: ServingBackend) -> None:
    name = TENANTS[0]
    key = ModelKey(name, 1)

    async def scenario(client: AgentClient) -> tuple[Any, Any, NodeStatus]:
        first = await client.ensure(name)
        second = await client.ensure(name, 1)
        return first, second, await client.status()

    first, second, status = with_client(agent.target, scenario)
    assert (first.key, first.outcome) == (key, "loaded")
    assert first.seconds > 0
    assert (second.key, second.outcome) == (key, "hit")
    assert second.seconds < first.seconds
    # TF Serving serves it: tenant 1 computes y = 1 * x + 0.25
    assert rest_predict(backend, name, 2.0) == [tenant_weights(1).predict(2.0)]

    assert status.node_id == agent.node_id
    assert (status.max_models, status.max_bytes, status.disk_budget_bytes) == (3, None, None)
    assert 1 <= status.used_models <= 3
    assert status.used_bytes > 0
    info = status.model(key)
    assert info is not None
    assert info.state == "resident"
    assert info.loads == 1
    assert info.hits >= 1
    assert info.memory_bytes > 0
    assert info.disk_bytes > 0
    assert time.time() - 60 < info.last_used <= time.time() + 1
    assert info.last_load_seconds is not None
    assert 0 < info.last_load_seconds <= first.seconds
    assert not info.pinned
    assert status.disk_used_bytes >= info.disk_bytes
    assert {"hits", "misses", "loads", "load_failures", "evictions", "fetches"} <= set(status.counters)
    assert status.counters["loads"] >= 1


def test_ensure_by_label(agent: RunningAgent) -> None:
    result = with_client(agent.target, lambda client: client.ensure(TENANTS[1], label="stable"))
    assert result.key == ModelKey(TENANTS[1], 1)
    assert result.outcome in ("loaded", "hit")


def test_resolve_latest_answers_many_names_in_one_call(agent: RunningAgent) -> None:
    names = [TENANTS[0], "no-such-model", "../x", TENANTS[1]]
    answers = with_client(agent.target, lambda client: client.resolve_latest(names))
    assert [a.name for a in answers] == names
    assert answers[0] == LatestVersion(TENANTS[0], 1)
    assert answers[3] == LatestVersion(TENANTS[1], 1)
    assert answers[1].version is None
    assert answers[1].error == "Servable not found for request: Latest(no-such-model)"
    assert answers[2].version is None
    assert answers[2].error  # not a model name
    # More names than one call may carry: refused as a whole, with the limit in the message.
    too_many = [TENANTS[0]] * (MAX_RESOLVE_LATEST_NAMES + 1)
    error = serving_error(lambda client: client.resolve_latest(too_many), agent)
    assert error.code is Code.INVALID_ARGUMENT
    assert f"at most {MAX_RESOLVE_LATEST_NAMES} names" in error.message


def test_preload_starts_the_load_without_waiting(agent: RunningAgent) -> None:
    key = ModelKey(TENANTS[2], 1)

    async def scenario(client: AgentClient) -> tuple[Any, Any]:
        started = await client.preload(key.name)
        await eventually(lambda: _is(client, key, "resident"), f"{key} to be resident after a preload")
        again = await client.preload(key.name)
        return started, again

    started, again = with_client(agent.target, scenario)
    assert (started.key, started.outcome) == (key, "started")
    assert (again.key, again.outcome) == (key, "hit")


async def _is(client: AgentClient, key: ModelKey, state: str) -> bool:
    return await state_of(client, key) == state


def test_touch_counts_hits_reported_by_the_daemon(agent: RunningAgent) -> None:
    key = ModelKey(TENANTS[6], 1)

    async def scenario(client: AgentClient) -> tuple[int, int, int, int]:
        await client.ensure(key.name)
        before = (await client.status()).model(key)
        accepted = await client.touch(
            [
                ModelHits(key.name, key.version, 5, time.time()),
                ModelHits("../x", 1, 1, time.time()),  # ignored: not a model name
                ModelHits(key.name, key.version, 0, time.time()),  # ignored: no hits
            ]
        )
        after = (await client.status()).model(key)
        assert before is not None
        assert after is not None
        return accepted, before.hits, after.hits, int(after.last_used >= before.last_used)

    accepted, before, after, later = with_client(agent.target, scenario)
    assert accepted == 1
    assert after == before + 5
    assert later


# ----- evict and pin ------------------------------------------------------------------------------


def test_evict_unloads_and_keeps_the_files(agent: RunningAgent, backend: ServingBackend) -> None:
    key = ModelKey(TENANTS[3], 1)

    async def scenario(client: AgentClient) -> tuple[list[ModelKey], str | None]:
        await client.ensure(key.name)
        evicted = await client.evict(key.name)
        return evicted, await state_of(client, key)

    evicted, state = with_client(agent.target, scenario)
    assert evicted == [key]
    assert state == "cached"
    assert backend.model_status(key.name)["model_version_status"][0]["state"] == "END"
    again = serving_error(lambda client: client.evict(key.name), agent)
    assert again.code is Code.NOT_FOUND
    assert key.name in again.message


def test_pin_and_unpin(agent: RunningAgent) -> None:
    key = ModelKey(TENANTS[4], 1)

    async def pin(client: AgentClient) -> tuple[ModelKey, Any]:
        pinned = await client.pin(key.name)
        return pinned, (await client.status()).model(key)

    pinned, info = with_client(agent.target, pin)
    try:
        assert pinned == key
        assert info is not None
        assert (info.state, info.pinned) == ("resident", True)
        refused = serving_error(lambda client: client.evict(key.name), agent)
        assert refused.code is Code.FAILED_PRECONDITION
        assert "pinned" in refused.message
    finally:
        unpinned = with_client(agent.target, lambda client: client.unpin(key.name, 1))
    assert unpinned == key

    async def after_unpin(client: AgentClient) -> tuple[Any, list[ModelKey]]:
        info = (await client.status()).model(key)
        return info, await client.evict(key.name, 1)

    info, evicted = with_client(agent.target, after_unpin)
    assert info is not None
    assert (info.state, info.pinned) == ("resident", False)
    assert evicted == [key]


def test_lru_eviction_keeps_max_models(agent: RunningAgent) -> None:
    names = [TENANTS[0], TENANTS[1], TENANTS[2], TENANTS[7]]
    lru_before = sample(metrics(agent), "tfscache_agent_evictions_total", reason="lru")

    async def scenario(client: AgentClient) -> NodeStatus:
        for name in names:
            await client.ensure(name)
        return await client.status()

    status = with_client(agent.target, scenario)
    assert len(status.in_state("resident")) <= 3
    assert ModelKey(names[-1], 1) in status.in_state("resident")
    wait_until(
        lambda: sample(metrics(agent), "tfscache_agent_evictions_total", reason="lru") >= lru_before + 1,
        EVENTUALLY_TIMEOUT_S,
        "an LRU eviction on the metrics page",
    )


# ----- the residency stream -----------------------------------------------------------------------


def test_watch_residency_sees_loaded_unloading_unloaded(agent: RunningAgent) -> None:
    key = ModelKey(TENANTS[5], 1)

    async def scenario(client: AgentClient) -> tuple[list[ResidencyEvent], set[ModelKey], list[str]]:
        resident = set((await client.status()).in_state("resident"))
        events: asyncio.Queue[ResidencyEvent] = asyncio.Queue()

        async def watch() -> None:
            async for event in client.watch_residency():
                events.put_nowait(event)

        watcher = asyncio.create_task(watch())
        try:
            first = [await asyncio.wait_for(events.get(), EVENT_TIMEOUT_S) for _ in resident]
            await client.ensure(key.name)
            await client.evict(key.name)
            mine: list[str] = []
            while len(mine) < 3:
                event = await asyncio.wait_for(events.get(), EVENT_TIMEOUT_S)
                if event.key == key:
                    mine.append(event.kind)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        return first, resident, mine

    first, resident, mine = with_client(agent.target, scenario)
    assert {e.kind for e in first} <= {"loaded"}
    assert {e.key for e in first} == resident
    assert mine == ["loaded", "unloading", "unloaded"]


# ----- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "code", "message"),
    [
        (
            lambda c: c.ensure("no-such-model"),
            Code.NOT_FOUND,
            "Servable not found for request: Latest(no-such-model)",
        ),
        (
            lambda c: c.ensure(TENANTS[0], 99),
            Code.NOT_FOUND,
            f"Servable not found for request: Specific({TENANTS[0]}, 99)",
        ),
        (lambda c: c.ensure("../x"), Code.INVALID_ARGUMENT, None),
        (
            lambda c: c.ensure(TENANTS[1], label="nope"),
            Code.INVALID_ARGUMENT,
            "Unrecognized servable version label: nope",
        ),
        (
            lambda c: c.preload("no-such-model"),
            Code.NOT_FOUND,
            "Servable not found for request: Latest(no-such-model)",
        ),
        (
            lambda c: c.pin("no-such-model"),
            Code.NOT_FOUND,
            "Servable not found for request: Latest(no-such-model)",
        ),
        (lambda c: c.evict("no-such-model"), Code.NOT_FOUND, None),
    ],
    ids=["unknown-model", "unknown-version", "bad-name", "unknown-label", "preload", "pin", "evict"],
)
def test_errors_are_tf_serving_statuses(
    agent: RunningAgent, call: Callable[[AgentClient], Awaitable[Any]], code: Code, message: str | None
) -> None:
    error = serving_error(call, agent)
    assert error.code is code
    if message is not None:
        assert error.message == message


def test_failed_load_reports_tf_serving_error_and_agent_keeps_serving(agent: RunningAgent) -> None:
    error = serving_error(lambda client: client.ensure("broken"), agent)
    assert error.code in (Code.DATA_LOSS, Code.INTERNAL, Code.INVALID_ARGUMENT)
    assert error.message
    status = with_client(agent.target, lambda client: client.status())
    assert status.counters["load_failures"] >= 1


def test_unreachable_agent_is_unavailable() -> None:
    target = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServingError) as caught:
        with_client(target, lambda client: client.status())
    assert isinstance(caught.value, AgentUnreachableError)
    assert caught.value.code is Code.UNAVAILABLE
    assert caught.value.message.startswith(f"agent at {target} is unreachable")


def test_unexpected_error_is_internal_and_the_api_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """A bug answers INTERNAL (logged with its traceback); the next call is served. In process, no TF."""

    class FlakyAgent:
        settings = SimpleNamespace(node_id="flaky", timeouts=SimpleNamespace(ensure=1.0))
        calls = 0

        def status(self) -> NodeStatus:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("boom")
            return NodeStatus("flaky", None, None, 0, 0, None, 0, ())

    async def scenario() -> tuple[ServingError, NodeStatus]:
        server = AgentServer(AgentService(FlakyAgent()))  # type: ignore[arg-type]
        target = await server.start("127.0.0.1:0")
        try:
            async with AgentClient(target) as client:
                with pytest.raises(ServingError) as caught:
                    await client.status()
                return caught.value, await client.status()
        finally:
            await server.stop(0)

    error, status = asyncio.run(scenario())
    assert error.code is Code.INTERNAL
    assert error.message == "Internal error in the node agent (Status): RuntimeError: boom"
    assert status.node_id == "flaky"
    assert any("api_call_crashed" in r.getMessage() and r.exc_info for r in caplog.records)


# ----- metrics ------------------------------------------------------------------------------------


def test_metrics_page(agent: RunningAgent) -> None:
    key = ModelKey(TENANTS[7], 1)
    before = metrics(agent)

    async def scenario(client: AgentClient) -> NodeStatus:
        if await state_of(client, key) == "resident":
            await client.evict(key.name)
        await client.ensure(key.name)  # loaded (files already on disk, or fetched)
        await client.ensure(key.name)  # hit
        await client.evict(key.name)
        await client.ensure(key.name)  # loaded again
        return await client.status()

    status = with_client(agent.target, scenario)
    wait_until(
        lambda: (
            sample(metrics(agent), "tfscache_agent_load_seconds_count", phase="total")
            >= sample(before, "tfscache_agent_load_seconds_count", phase="total") + 2
        ),
        EVENTUALLY_TIMEOUT_S,
        "two loads on the metrics page",
    )
    after = metrics(agent)

    def grew(name: str, by: float = 1, **labels: str) -> bool:
        return sample(after, name, **labels) >= sample(before, name, **labels) + by

    assert grew("tfscache_agent_hits_total")
    assert grew("tfscache_agent_misses_total", 2)
    assert grew("tfscache_agent_loads_total", 2)
    assert grew("tfscache_agent_ensure_seconds_count", 2, outcome="loaded")
    assert grew("tfscache_agent_ensure_seconds_count", 1, outcome="hit")
    assert grew("tfscache_agent_evictions_total", 1, reason="operator")
    assert grew("tfscache_agent_load_seconds_count", 2, phase="load")
    assert sample(after, "tfscache_agent_load_seconds_count", phase="fetch") >= 1
    assert sample(after, "tfscache_agent_fetches_total") >= 1
    assert sample(after, "tfscache_agent_ensure_seconds_bucket", outcome="hit", le="+Inf") >= 1
    # gauges read at scrape time agree with the agent's status (nothing changed in between)
    assert sample(after, "tfscache_agent_resident_models") == len(status.in_state("resident"))
    assert sample(after, "tfscache_agent_models", state="resident") == len(status.in_state("resident"))
    assert sample(after, "tfscache_agent_models", state="cached") == len(status.in_state("cached"))
    assert sample(after, "tfscache_agent_memory_used_bytes") == status.used_bytes
    assert sample(after, "tfscache_agent_disk_cache_bytes") == status.disk_used_bytes
    assert sample(after, "tfscache_agent_max_models") == 3
    assert sample(after, "tfscache_agent_hits_total") == status.counters["hits"]
    assert sample(after, "tfscache_agent_load_failures_total") == status.counters["load_failures"]


# ----- agents of their own ------------------------------------------------------------------------


def test_ensure_deadline_is_the_callers(processes: ProcessRegistry, store_root: Path, tmp_path: Path) -> None:
    """One model fits and is guarded for a minute: a second one waits for room until the caller's deadline."""
    backend = start_backend(processes, tmp_path / "backend", "deadline-backend")
    agent = start_agent(
        processes,
        backend,
        store_root,
        tmp_path / "agent",
        name="deadline-agent",
        max_models=1,
        guard_window=60.0,
    )

    async def scenario(client: AgentClient) -> float:
        await client.ensure(TENANTS[0])
        started = time.monotonic()
        with pytest.raises(ServingError) as caught:
            await client.ensure(TENANTS[1], timeout=1.0)
        assert caught.value.code is Code.DEADLINE_EXCEEDED
        # the agent's own answer (sent before the caller's deadline), not the channel's
        assert re.fullmatch(
            rf"{TENANTS[1]}:1 is not loaded yet: timed out after 0\.9\d* s", caught.value.message
        )
        return time.monotonic() - started

    waited = with_client(agent.target, scenario)
    assert 0.8 < waited < 1.0 + 0.5


def test_sigterm_ends_streams_and_stops_cleanly(
    processes: ProcessRegistry, store_root: Path, tmp_path: Path
) -> None:
    backend = start_backend(processes, tmp_path / "backend", "sigterm-backend")
    agent = start_agent(processes, backend, store_root, tmp_path / "agent", name="sigterm-agent")
    pid = agent.process.pid

    async def scenario(client: AgentClient) -> tuple[ServingError, int | None, float]:
        await client.ensure(TENANTS[0])
        stream = client.watch_residency()
        assert (await anext(stream)).kind == "loaded"  # the stream is open
        assert (await anext(stream)).kind == "synced"  # that was all the node holds
        started = time.monotonic()
        # SIGTERM, then SIGKILL only after the harness's grace period (the exit code would be -9)
        stopping = asyncio.create_task(asyncio.to_thread(agent.process.stop))
        with pytest.raises(ServingError) as caught:
            await anext(stream)
        code = await stopping
        return caught.value, code, time.monotonic() - started

    ended, code, seconds = with_client(agent.target, scenario)
    assert ended.code is Code.UNAVAILABLE
    assert "shutting down" in ended.message
    assert code == 0
    assert seconds < 5.0  # well inside the shutdown grace: the open stream did not hold it
    assert not pid_alive(pid)
    log = agent.process.log_text()
    assert re.search(rf"agent_ready node={agent.node_id} listen={re.escape(agent.target)}", log)
    assert "agent_stopped" in log


def test_bad_settings_are_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"listen": "no-port", "cache_dir": str(tmp_path / "cache")}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "COLUMNS": "400",
    }
    result = subprocess.run(
        [sys.executable, "-m", "tfscachectl", "agent", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: Invalid agent settings:")
    assert "listen" in lines[0]
    assert "store" in lines[0]


# ----- the documentation --------------------------------------------------------------------------


def test_example_settings_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(variable)
    settings = load_settings(REPO_ROOT / "docs" / "agent.example.yaml")
    assert settings.store.startswith("s3://")
    assert settings.metrics_listen is not None


def test_docs_name_every_setting_and_its_variable() -> None:
    text = (REPO_ROOT / "docs" / "agent.md").read_text()
    nested = {"s3": S3Options, "timeouts": Timeouts}
    for name in AgentSettings.model_fields:
        if name in nested:
            parts = [(f"{name}.{sub}", f"{name}__{sub}") for sub in nested[name].model_fields]
        else:
            parts = [(name, name)]
        for setting, variable in parts:
            assert f"`{setting}`" in text, setting
            assert f"`{ENV_PREFIX}{variable.upper()}`" in text, variable
