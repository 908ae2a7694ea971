"""``NodeAgent`` in this process against a real serving backend process and a real model store directory.

The only stand-in is ``GatedStore``: a real ``LocalModelStore`` whose fetches of chosen models wait for the
test to open a gate, to make one fetch slow on purpose.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from tests.harness.processes import ProcessRegistry
from tests.harness.s3 import S3Bucket, s3_credentials_env, upload_tree
from tests.harness.serving import ServingBackend
from tfscachectl.agent.node import NodeAgent
from tfscachectl.agent.settings import AgentSettings, Timeouts
from tfscachectl.core import ModelKey
from tfscachectl.errors import Code, ServingError
from tfscachectl.modelgen.store import ModelStoreTree
from tfscachectl.stores import LocalModelStore, StoreSettings, open_store

pytestmark = pytest.mark.integration
T = TypeVar("T")
TENANTS = [f"tenant-{n:04d}" for n in range(1, 7)]
MONITORING = 'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'


@pytest.fixture(scope="module")
def store_root(generated_models: ModelStoreTree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    for name in [*TENANTS, "broken", "half_plus_two_2_versions"]:
        shutil.copytree(generated_models.base_path(name), root / name)
    (root / "half_plus_two_2_versions" / "labels.json").write_text(json.dumps({"stable": 123}))
    return root


@pytest.fixture(scope="module")
def backend(
    module_processes: ProcessRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServingBackend]:
    config_dir = tmp_path_factory.mktemp("agent-backend")
    monitoring = config_dir / "monitoring.config"
    monitoring.write_text(MONITORING)
    server = ServingBackend.with_models(
        module_processes,
        config_dir,
        [],
        name="agent-backend",
        extra_flags=["--max_num_load_retries=0", f"--monitoring_config_file={monitoring}"],
    ).start()
    yield server
    server.stop()


def settings(backend: ServingBackend, store_root: Path, cache: Path, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "node_id": "node-a",
        "store": overrides.pop("store_url", str(store_root)),
        "cache_dir": cache,
        "tf_serving_grpc": backend.grpc_target,
        "tf_serving_rest": f"127.0.0.1:{backend.rest_port}",
        "max_models": 3,
        "guard_window": 0.0,
        "timeouts": Timeouts(load=60, fetch=60, unload=30, ensure=60),
    }
    values.update(overrides)
    return AgentSettings(**values)


def run_agent(
    backend: ServingBackend,
    store_root: Path,
    cache: Path,
    test: Callable[[NodeAgent], Awaitable[T]],
    store: Any = None,
    **overrides: Any,
) -> T:
    async def main() -> T:
        agent = NodeAgent(
            settings(backend, store_root, cache, **overrides), store or LocalModelStore(store_root)
        )
        await agent.start()
        try:
            return await test(agent)
        finally:
            await agent.close()

    return asyncio.run(main())


def tf_states(backend: ServingBackend, name: str) -> dict[int, str]:
    with grpc.insecure_channel(backend.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        try:
            response = stub.GetModelStatus(request, timeout=10)
        except grpc.RpcError:
            return {}
    names = get_model_status_pb2.ModelVersionStatus.State
    return {s.version: names.Name(s.state) for s in response.model_version_status}


def rest_predict(backend: ServingBackend, name: str, x: float, suffix: str = "") -> Any:
    request = urllib.request.Request(
        f"{backend.rest_url}/v1/models/{name}{suffix}:predict",
        data=json.dumps({"instances": [x]}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["predictions"]


def load_attempts(backend: ServingBackend) -> int:
    with urllib.request.urlopen(f"{backend.rest_url}/monitoring/prometheus/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        int(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(":tensorflow:cc:saved_model:load_attempt_count{")
    )


class GatedStore(LocalModelStore):
    """A real local store whose fetches of ``gated`` models wait for ``gate`` (test instrumentation)."""

    def __init__(self, root: Path, gated: set[str]) -> None:
        super().__init__(root)
        self.gated = gated
        self.gate = threading.Event()
        self.fetch_started = threading.Event()

    def fetch(self, name: str, version: int, cache_root: Path) -> Path:
        if name in self.gated:
            self.fetch_started.set()
            assert self.gate.wait(60), "the test never opened the gate"
        return super().fetch(name, version, cache_root)


def test_cold_ensure_loads_then_hits(backend: ServingBackend, store_root: Path, tmp_path: Path) -> None:
    async def test(agent: NodeAgent) -> None:
        first = await agent.ensure("tenant-0001")
        assert (first.key, first.outcome) == (ModelKey("tenant-0001", 1), "loaded")
        assert tf_states(backend, "tenant-0001") == {1: "AVAILABLE"}
        assert rest_predict(backend, "tenant-0001", 2.0) == [2.25]  # w=1, b=0.25
        second = await agent.ensure("tenant-0001")
        assert second.outcome == "hit"
        assert agent.counters["fetches"] == 1
        assert agent.counters["loads"] == 1
        assert agent.counters["hits"] == 1
        [info] = [m for m in agent.status().models if m.name == "tenant-0001"]
        assert (info.state, info.hits, info.loads) == ("resident", 1, 1)
        assert info.disk_bytes > 0
        assert info.memory_bytes > info.disk_bytes

    run_agent(backend, store_root, tmp_path / "cache", test)


def test_lru_eviction_with_max_models(backend: ServingBackend, store_root: Path, tmp_path: Path) -> None:
    async def test(agent: NodeAgent) -> None:
        await agent.ensure("tenant-0001")
        await agent.ensure("tenant-0002")
        await agent.ensure("tenant-0001")  # 0002 is now the least recently used
        await agent.ensure("tenant-0003")
        resident = {m.name for m in agent.status().models if m.state == "resident"}
        assert resident == {"tenant-0001", "tenant-0003"}
        assert tf_states(backend, "tenant-0002") == {1: "END"}
        assert agent.counters["evictions"] == 1
        # the evicted model stays on disk: loading it again fetches nothing
        await agent.ensure("tenant-0002")
        assert agent.counters["fetches"] == 3

    run_agent(backend, store_root, tmp_path / "cache", test, max_models=2)


def test_concurrent_ensures_share_one_fetch_and_one_load(
    backend: ServingBackend, store_root: Path, tmp_path: Path
) -> None:
    async def test(agent: NodeAgent) -> list[str]:
        results = await asyncio.gather(*(agent.ensure("tenant-0004") for _ in range(50)))
        assert agent.counters["fetches"] == 1
        assert agent.counters["loads"] == 1
        return sorted(r.outcome for r in results)

    outcomes = run_agent(backend, store_root, tmp_path / "cache", test)
    assert outcomes.count("loaded") == 1
    assert outcomes.count("joined") == 49


def test_slow_fetch_delays_neither_hits_nor_other_loads(
    backend: ServingBackend, store_root: Path, tmp_path: Path
) -> None:
    store = GatedStore(store_root, gated={"tenant-0005"})

    async def test(agent: NodeAgent) -> None:
        await agent.ensure("tenant-0001")
        slow = asyncio.create_task(agent.ensure("tenant-0005"))
        await asyncio.to_thread(store.fetch_started.wait, 30)
        started = time.monotonic()
        hit = await agent.ensure("tenant-0001")
        assert hit.outcome == "hit"
        other = await agent.ensure("tenant-0002")
        assert other.outcome == "loaded"
        assert not slow.done(), "the slow fetch finished by itself: the test proved nothing"
        assert time.monotonic() - started < 30
        store.gate.set()
        assert (await slow).outcome == "loaded"

    run_agent(backend, store_root, tmp_path / "cache", test, store=store, max_models=4)


def test_failing_model_is_reported_and_left_out(
    backend: ServingBackend, store_root: Path, tmp_path: Path
) -> None:
    async def test(agent: NodeAgent) -> None:
        await agent.ensure("tenant-0001")
        with pytest.raises(ServingError) as caught:
            await agent.ensure("broken")
        assert caught.value.code in (Code.DATA_LOSS, Code.INTERNAL, Code.INVALID_ARGUMENT)
        assert "saved_model.pb" in caught.value.message
        assert "broken" not in agent.controller.desired()
        assert "broken" not in {m.name for m in agent.status().models if m.state != "cached"}
        # the other model is undisturbed, and a later ensure tries again (and fails again)
        assert rest_predict(backend, "tenant-0001", 2.0) == [2.25]
        assert (await agent.ensure("tenant-0001")).outcome == "hit"
        with pytest.raises(ServingError, match=r"saved_model\.pb"):
            await agent.ensure("broken")

    run_agent(backend, store_root, tmp_path / "cache", test)


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("nope", Code.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        ("../etc", Code.INVALID_ARGUMENT, None),
        ("/abs", Code.INVALID_ARGUMENT, None),
        ("a\x00b", Code.INVALID_ARGUMENT, None),
        ("x" * 300, Code.INVALID_ARGUMENT, None),
    ],
)
def test_missing_and_unsafe_names(
    backend: ServingBackend, store_root: Path, tmp_path: Path, name: str, code: Code, message: str | None
) -> None:
    async def test(agent: NodeAgent) -> None:
        with pytest.raises(ServingError) as caught:
            await agent.ensure(name)
        assert caught.value.code == code
        if message is not None:
            assert caught.value.message == message
        assert not any(p.name not in (".tfscache-staging",) for p in (tmp_path / "cache").iterdir())

    run_agent(backend, store_root, tmp_path / "cache", test)


def test_labels_and_latest_resolve(backend: ServingBackend, store_root: Path, tmp_path: Path) -> None:
    async def test(agent: NodeAgent) -> None:
        latest = await agent.ensure("half_plus_two_2_versions")
        assert latest.key.version == 124
        stable = await agent.ensure("half_plus_two_2_versions", label="stable")
        assert stable.key.version == 123
        # TF Serving knows the label once the version is available: clients can ask for it
        assert rest_predict(backend, "half_plus_two_2_versions", 2.0, "/labels/stable") == [3.0]
        with pytest.raises(ServingError, match="Unrecognized servable version label: canary"):
            await agent.ensure("half_plus_two_2_versions", label="canary")

    run_agent(backend, store_root, tmp_path / "cache", test)


def test_pinned_models_are_never_evicted(backend: ServingBackend, store_root: Path, tmp_path: Path) -> None:
    async def test(agent: NodeAgent) -> None:
        await agent.pin("tenant-0001")
        await agent.ensure("tenant-0002")
        await agent.ensure("tenant-0003")
        resident = {m.name for m in agent.status().models if m.state == "resident"}
        assert resident == {"tenant-0001", "tenant-0003"}
        with pytest.raises(ServingError) as caught:
            await agent.evict("tenant-0001")
        assert caught.value.code == Code.FAILED_PRECONDITION
        # with every slot pinned, a newcomer waits for room and then fails clearly
        await agent.pin("tenant-0003")
        with pytest.raises(ServingError) as full:
            await agent.ensure("tenant-0004", timeout=0.5)
        assert full.value.code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED)
        await agent.pin("tenant-0003", pinned=False)
        # the load that timed out for its caller went on waiting for room: this ensure joins it
        assert (await agent.ensure("tenant-0004")).outcome in ("joined", "loaded")
        assert {m.name for m in agent.status().models if m.state == "resident"} == {
            "tenant-0001",
            "tenant-0004",
        }

    run_agent(backend, store_root, tmp_path / "cache", test, max_models=2)


def test_restart_adopts_resident_models_without_loading_them(
    backend: ServingBackend, store_root: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"

    async def first(agent: NodeAgent) -> None:
        await agent.ensure("tenant-0001")
        await agent.ensure("tenant-0002")
        await agent.pin("tenant-0002")

    run_agent(backend, store_root, cache, first)
    attempts = load_attempts(backend)

    async def second(agent: NodeAgent) -> None:
        status = {m.name: m for m in agent.status().models}
        assert status["tenant-0001"].state == "resident"
        assert status["tenant-0002"].pinned
        assert (await agent.ensure("tenant-0001")).outcome == "hit"
        assert agent.counters["loads"] == 0
        assert agent.counters["fetches"] == 0

    run_agent(backend, store_root, cache, second)
    assert load_attempts(backend) == attempts
    assert tf_states(backend, "tenant-0001") == {1: "AVAILABLE"}


def test_operator_evict(backend: ServingBackend, store_root: Path, tmp_path: Path) -> None:
    async def test(agent: NodeAgent) -> None:
        await agent.ensure("tenant-0006")
        assert await agent.evict("tenant-0006") == [ModelKey("tenant-0006", 1)]
        assert tf_states(backend, "tenant-0006")[1] == "END"
        with pytest.raises(ServingError) as caught:
            await agent.evict("tenant-0006")
        assert caught.value.code == Code.NOT_FOUND
        assert (await agent.ensure("tenant-0006")).outcome == "loaded"

    run_agent(backend, store_root, tmp_path / "cache", test)


def test_models_from_s3(
    backend: ServingBackend,
    store_root: Path,
    s3_bucket: S3Bucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable, value in {
        **s3_credentials_env(),
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }.items():
        monkeypatch.setenv(variable, value)
    for name in ("tenant-0003", "half_plus_two_2_versions"):
        upload_tree(s3_bucket.client, s3_bucket.name, f"models/{name}", store_root / name)
    url = s3_bucket.url("models")
    store = open_store(url, StoreSettings(endpoint_url=s3_bucket.endpoint_url))

    async def test(agent: NodeAgent) -> None:
        loaded = await agent.ensure("tenant-0003")
        assert (loaded.key, loaded.outcome) == (ModelKey("tenant-0003", 1), "loaded")
        assert rest_predict(backend, "tenant-0003", 2.0) == [6.75]  # w=3, b=0.75
        assert (await agent.ensure("half_plus_two_2_versions", label="stable")).key.version == 123
        with pytest.raises(ServingError) as caught:
            await agent.ensure("tenant-0001")  # not uploaded
        assert caught.value.code == Code.NOT_FOUND
        assert not any((tmp_path / "cache" / ".tfscache-staging").glob("*/*"))

    run_agent(backend, store_root, tmp_path / "cache", test, store=store, store_url=url)
