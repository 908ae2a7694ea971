"""The backend's model manager against a real directory tree, with a fake loader (no TensorFlow).

The loader is the only fake here (``FakeLoadedModel``): these tests pin down TF Serving's reload, poll, label,
retry and unload semantics quickly; the same behaviour is checked through real sockets and real SavedModels in
``test_tfserving_grpc.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tfscachectl.errors import Code, ServingError
from tfscachectl.tfserving import model_config
from tfscachectl.tfserving.manager import ManagerOptions, ModelSpecQuery, ServingManager
from tfscachectl.tfserving.servable import ServableId
from tfscachectl.tfserving.states import State

POLL = 0.05


class FakeLoadedModel:
    def __init__(self, servable: ServableId, path: Path) -> None:
        self.id = servable
        self.path = path
        self.closed = False

    def close(self) -> None:
        self.closed = True


def fake_loader(failing: set[str] | None = None) -> Callable[[ServableId, Path], Any]:
    failing = failing or set()

    def load(servable: ServableId, path: Path) -> Any:
        if (path / "BROKEN").exists() or servable.name in failing:
            raise ServingError(Code.DATA_LOSS, f"Can't parse {path}/saved_model.pb as binary proto")
        return FakeLoadedModel(servable, path)

    return load


def config_text(
    models: dict[str, Path], labels: dict[str, dict[str, int]] | None = None, policy: str = ""
) -> Any:
    parts = []
    for name, path in models.items():
        label_text = "".join(
            f' version_labels {{ key: "{k}" value: {v} }}' for k, v in (labels or {}).get(name, {}).items()
        )
        parts.append(f'config {{ name: "{name}" base_path: "{path}" {policy}{label_text} }}')
    return model_config.parse_text("model_config_list { " + " ".join(parts) + " }")


def run(test: Callable[[ServingManager], Awaitable[None]], **options: Any) -> None:
    failing = options.pop("failing", None)

    async def main() -> None:
        options.setdefault("file_system_poll_wait_seconds", POLL)
        opts = ManagerOptions(load_retry_interval_seconds=0.01, **options)
        with ThreadPoolExecutor(4) as executor:
            manager = ServingManager(opts, executor, load=fake_loader(failing))
            try:
                await test(manager)
            finally:
                await manager.stop()

    asyncio.run(main())


def make_model(root: Path, name: str, *versions: int) -> Path:
    for v in versions:
        (root / name / str(v)).mkdir(parents=True, exist_ok=True)
    (root / name).mkdir(parents=True, exist_ok=True)
    return root / name


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def states(manager: ServingManager, name: str) -> dict[int, State]:
    return {s.version: s.state for s in manager.model_status(name, None)}


def test_reload_adds_replaces_and_unloads_asynchronously(tmp_path: Path) -> None:
    a, b = make_model(tmp_path, "a", 1), make_model(tmp_path, "b", 1, 2)

    async def test(manager: ServingManager) -> None:
        await manager.start(config_text({"a": a}))
        assert states(manager, "a") == {1: State.AVAILABLE}
        await manager.reload(config_text({"b": b}))
        # returns once the new model is available; the removed one is unloaded asynchronously
        assert states(manager, "b") == {2: State.AVAILABLE}
        await eventually(lambda: states(manager, "a") == {1: State.END})
        with pytest.raises(ServingError, match=r"Servable not found for request: Latest\(a\)"):
            manager.acquire(ModelSpecQuery("a"))
        # status is never forgotten
        assert manager.model_status("a", 1)[0].state == State.END
        with manager.acquire(ModelSpecQuery("b")) as handle:
            assert handle.model.id == ServableId("b", 2)

    run(test)


def test_reload_waits_for_the_file_system_poll(tmp_path: Path) -> None:
    a = make_model(tmp_path, "a", 1)

    async def test(manager: ServingManager) -> None:
        await manager.start(config_text({}))
        started = time.monotonic()
        await manager.reload(config_text({"a": a}))
        assert time.monotonic() - started <= 1.0
        assert states(manager, "a") == {1: State.AVAILABLE}

    run(test, file_system_poll_wait_seconds=0.3)


def test_new_versions_are_found_by_the_poll_and_old_ones_unloaded_after(tmp_path: Path) -> None:
    a = make_model(tmp_path, "a", 1)

    async def test(manager: ServingManager) -> None:
        await manager.start(config_text({"a": a}))
        (a / "2").mkdir()
        await eventually(lambda: states(manager, "a") == {2: State.AVAILABLE, 1: State.END})
        (a / "2").rmdir()
        (a / "1").rmdir()
        await eventually(lambda: states(manager, "a") == {2: State.END, 1: State.END})

    run(test)


def test_labels_must_name_available_versions(tmp_path: Path) -> None:
    a = make_model(tmp_path, "a", 1, 2)

    async def test(manager: ServingManager) -> None:
        await manager.start(config_text({"a": a}, policy="model_version_policy { specific { versions: 1 } }"))
        with pytest.raises(ServingError) as caught:
            await manager.reload(config_text({"a": a}, {"a": {"stable": 2}}))
        assert caught.value.code == Code.FAILED_PRECONDITION
        assert caught.value.message == (
            "Request to assign label to version 2 of model a, which is not currently available for inference"
        )
        await manager.reload(config_text({"a": a}, {"a": {"stable": 1}}))
        with manager.acquire(ModelSpecQuery("a", label="stable")) as handle:
            assert handle.model.id.version == 1
        with pytest.raises(ServingError, match="Unrecognized servable version label: canary") as bad:
            manager.acquire(ModelSpecQuery("a", label="canary"))
        assert bad.value.code == Code.INVALID_ARGUMENT

    run(test)


def test_new_label_may_name_unavailable_version_with_the_flag(tmp_path: Path) -> None:
    a = make_model(tmp_path, "a", 1)

    async def test(manager: ServingManager) -> None:
        await manager.start(config_text({"a": a}))
        await manager.reload(config_text({"a": a}, {"a": {"next": 7}}))
        with pytest.raises(ServingError, match=r"Specific\(a, 7\)"):
            manager.acquire(ModelSpecQuery("a", label="next"))

    run(test, allow_version_labels_for_unavailable_models=True)


def test_failing_model_is_retried_then_reported_and_others_load(tmp_path: Path) -> None:
    good, bad = make_model(tmp_path, "good", 1), make_model(tmp_path, "bad", 3)
    (bad / "3" / "BROKEN").touch()

    async def test(manager: ServingManager) -> None:
        await manager.start(config_text({}))
        with pytest.raises(ServingError) as caught:
            await manager.reload(config_text({"good": good, "bad": bad}))
        assert caught.value.code == Code.UNKNOWN
        assert caught.value.message == (
            "1 model(s) did not become available: {{name: bad version: 3} due to error: "
            "DATA_LOSS: Can't parse " + str(bad / "3") + "/saved_model.pb as binary proto}, }"
        )
        status = manager.model_status("bad", 3)[0]
        assert (status.state, status.error_code) == (State.END, Code.DATA_LOSS)
        assert states(manager, "good") == {1: State.AVAILABLE}
        # a failed version is not retried by later polls
        await asyncio.sleep(POLL * 4)
        assert manager.model_status("bad", 3)[0].state == State.END

    run(test, max_num_load_retries=2)


def test_start_fails_when_an_initial_model_fails(tmp_path: Path) -> None:
    bad = make_model(tmp_path, "bad", 1)
    (bad / "1" / "BROKEN").touch()

    async def test(manager: ServingManager) -> None:
        with pytest.raises(ServingError, match="did not become available"):
            await manager.start(config_text({"bad": bad}))

    run(test, max_num_load_retries=0)


def test_missing_base_path_blocks_the_reload_and_every_update(tmp_path: Path) -> None:
    a = make_model(tmp_path, "a", 1)

    async def test(manager: ServingManager) -> None:
        await manager.start(config_text({"a": a}))
        reload = asyncio.create_task(manager.reload(config_text({"a": a, "ghost": tmp_path / "ghost"})))
        await asyncio.sleep(POLL * 5)
        assert not reload.done()
        (a / "2").mkdir()  # not seen while a configured path is missing
        await asyncio.sleep(POLL * 5)
        assert states(manager, "a") == {1: State.AVAILABLE}
        make_model(tmp_path, "ghost", 1)
        await asyncio.wait_for(reload, 5)
        await eventually(lambda: states(manager, "a").get(2) == State.AVAILABLE)

    run(test)


def test_unload_waits_for_in_flight_requests(tmp_path: Path) -> None:
    a = make_model(tmp_path, "a", 1)

    async def test(manager: ServingManager) -> None:
        await manager.start(config_text({"a": a}))
        handle = manager.acquire(ModelSpecQuery("a"))
        await manager.reload(config_text({}))
        await eventually(lambda: states(manager, "a") == {1: State.UNLOADING})
        with pytest.raises(ServingError, match="Servable not found"):
            manager.acquire(ModelSpecQuery("a"))
        await asyncio.sleep(POLL * 3)
        assert states(manager, "a") == {1: State.UNLOADING}
        assert not handle.model.closed
        handle.release()
        await eventually(lambda: states(manager, "a") == {1: State.END})
        assert handle.model.closed

    run(test)


def test_status_of_unknown_model_and_version() -> None:
    async def test(manager: ServingManager) -> None:
        await manager.start(config_text({}))
        with pytest.raises(ServingError, match="Could not find any versions of model nope"):
            manager.model_status("nope", None)

    run(test)
