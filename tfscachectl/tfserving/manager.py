"""Which versions are loaded, and the reload semantics of TF Serving's ServerCore.

Everything here runs on one asyncio event loop; TensorFlow work (loading, closing a session) runs in an
executor. The behaviour follows ``docs/tfserving.md`` (TF Serving's source):

- the file-system source polls every model's base path every ``file_system_poll_wait_seconds``; a poll that
  finds any base path missing is abandoned whole, so no model gets updates while one path is missing;
- a version policy picks the aspired versions; new ones are loaded (failed loads retried
  ``max_num_load_retries`` times, ``load_retry_interval`` apart, then END with the error, and not retried
  while the model stays configured); versions no longer aspired are unloaded once an aspired version is
  available, or at once when none is aspired;
- an unload first hides the version from new requests, then waits for every request holding it;
- ``reload`` replaces the whole model list, validates first, checks labels before adding anything, and
  returns when every newly added model has a version AVAILABLE or END.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfscachectl.errors import Code, ServingError, TfsCacheError
from tfscachectl.tfserving import model_config
from tfscachectl.tfserving.model_config import ModelEntry
from tfscachectl.tfserving.servable import LoadedModel, ServableId
from tfscachectl.tfserving.states import State, StateMonitor, VersionStatus
from tfscachectl.tfserving.versions import aspired_versions, versions_on_disk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpecQuery:
    """What a request asks for: the latest version, a specific one, or the one a label names."""

    name: str
    version: int | None = None
    label: str | None = None

    def describe(self, version: int | None = None) -> str:
        chosen = self.version if version is None else version
        if chosen is None:
            return f"Latest({self.name})"
        return f"Specific({self.name}, {chosen})"


@dataclass(frozen=True)
class ManagerOptions:
    file_system_poll_wait_seconds: float = 1.0
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0
    allow_version_labels_for_unavailable_models: bool = False
    enable_model_warmup: bool = True


LoadFunction = Callable[[ServableId, Path], LoadedModel]


class ServableHandle:
    """A loaded version held by one request; the version is not unloaded until every handle is released."""

    def __init__(self, manager: ServingManager, model: LoadedModel) -> None:
        self._manager = manager
        self.model = model
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._manager._release(self.model.id)

    def __enter__(self) -> ServableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _AvailabilityWaiter:
    """Collects the first AVAILABLE or END of each awaited model, from the moment it is created."""

    def __init__(self, names: Iterable[str]) -> None:
        self.pending = set(names)
        self.reached: dict[str, VersionStatus] = {}
        self.done = asyncio.Event()
        if not self.pending:
            self.done.set()

    def observe(self, name: str, status: VersionStatus) -> None:
        if name in self.pending and status.state in (State.AVAILABLE, State.END):
            self.pending.discard(name)
            self.reached[name] = status
            if not self.pending:
                self.done.set()


class _MissingBasePath(TfsCacheError):
    pass


def _scan(entries: list[ModelEntry]) -> dict[str, dict[int, Path]]:
    """List every base path; the first missing one abandons the whole poll, as in TF Serving."""
    result: dict[str, dict[int, Path]] = {}
    for entry in entries:
        base = Path(entry.base_path)
        if not base.is_dir():
            raise _MissingBasePath(f"Could not find base path {base} for servable {entry.name}")
        try:
            children = [c.name for c in os.scandir(base) if c.is_dir()]
        except OSError as exc:
            raise _MissingBasePath(f"Could not list base path {base} for servable {entry.name}") from exc
        found = versions_on_disk(children)
        if not found:
            log.warning(
                "no_versions_found model=%s base_path=%s (did you forget to name your leaf directory "
                "as a number, e.g. /%s/1/?)",
                entry.name,
                base,
                entry.name,
            )
        result[entry.name] = {v: base / d for v, d in found.items()}
    return result


class ServingManager:
    def __init__(
        self,
        options: ManagerOptions,
        executor: Executor,
        load: LoadFunction | None = None,
        on_load: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.options = options
        self._on_load = on_load
        self.monitor = StateMonitor()
        self._executor = executor
        self._load_fn: LoadFunction = load or self._load_saved_model
        self._config: dict[str, ModelEntry] = {}
        self._source: dict[str, ModelEntry] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._aspired: dict[str, frozenset[int]] = {}
        self._paths: dict[ServableId, Path] = {}
        self._serving: dict[str, dict[int, LoadedModel]] = {}
        self._managed: set[ServableId] = set()  # START/LOADING/AVAILABLE/UNLOADING
        self._failed: set[ServableId] = set()
        self._refs: dict[ServableId, int] = {}
        self._drained: dict[ServableId, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: set[_AvailabilityWaiter] = set()
        self._config_lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._poll_now = asyncio.Event()

    # ----- requests -----------------------------------------------------------------------------

    def acquire(self, query: ModelSpecQuery) -> ServableHandle:
        """The version a request asks for, held until the handle is released."""
        if not query.name:
            raise ServingError(Code.INVALID_ARGUMENT, "ModelSpec has no name specified.")
        versions = self._serving.get(query.name, {})
        version = query.version
        if query.label is not None:
            version = self._labels.get(query.name, {}).get(query.label)
            if version is None:
                raise ServingError(
                    Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {query.label}"
                )
        if version is None:
            version = max(versions) if versions else None
        model = versions.get(version) if version is not None else None
        if model is None:
            raise ServingError(Code.NOT_FOUND, f"Servable not found for request: {query.describe(version)}")
        self._refs[model.id] = self._refs.get(model.id, 0) + 1
        return ServableHandle(self, model)

    def _release(self, servable: ServableId) -> None:
        left = self._refs.get(servable, 0) - 1
        if left > 0:
            self._refs[servable] = left
            return
        self._refs.pop(servable, None)
        drained = self._drained.get(servable)
        if drained is not None:
            drained.set()

    def model_status(self, name: str, version: int | None) -> list[VersionStatus]:
        return self.monitor.model_status(name, version)

    def available(self) -> dict[str, list[int]]:
        return {name: sorted(v) for name, v in self._serving.items() if v}

    # ----- lifecycle ----------------------------------------------------------------------------

    async def start(self, config: Any) -> None:
        """Load the initial config and wait for every model, as TF Serving does before opening its ports."""
        if self.options.file_system_poll_wait_seconds >= 0:
            self._poller = asyncio.create_task(self._poll_loop(), name="file-system-poll")
        await self.reload(config, wait_for=None)

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        loop = asyncio.get_running_loop()
        for versions in self._serving.values():
            for model in versions.values():
                await loop.run_in_executor(self._executor, model.close)
        self._serving.clear()

    # ----- reload -------------------------------------------------------------------------------

    async def reload(self, config: Any, wait_for: Iterable[str] | None = ()) -> None:
        """``HandleReloadConfigRequest``: replace the model list; see the module docstring.

        ``wait_for=None`` waits for every model (start-up); otherwise for the newly added ones.
        """
        async with self._config_lock:
            new = model_config.entries(config)
            model_config.validate(new, self._config)
            self._config = {e.name: e for e in new}
            self._labels = self._checked_labels(new)
            model_config.check_platforms(new)
            added = [e.name for e in new if e.name not in self._source]
            removed = [name for name in self._source if name not in self._config]
            awaited = [e.name for e in new] if wait_for is None else added
            waiter = self._waiter(name for name in awaited if not self._serving.get(name))
            self._source = dict(self._config)
            for name in removed:
                self._failed = {s for s in self._failed if s.name != name}
                self._set_aspired(name, frozenset(), {})
            try:
                await waiter.done.wait()
            finally:
                self._waiters.discard(waiter)
            failed = {n: s for n, s in waiter.reached.items() if s.error_code != Code.OK}
            if failed:
                details = "".join(
                    f"{ServableId(n, s.version)} due to error: {s.error_code.name}: {s.error_message}}}, "
                    for n, s in sorted(failed.items())
                )
                raise ServingError(
                    Code.UNKNOWN, f"{len(failed)} model(s) did not become available: {{{details}}}"
                )

    def start_reload(self, config: Any) -> asyncio.Task[None]:
        """``reload`` as a task the manager owns: it runs to its end even if whoever asked stops waiting."""
        task: asyncio.Task[None] = asyncio.create_task(self.reload(config))
        self._tasks.add(task)
        task.add_done_callback(self._reload_done)
        return task

    def _reload_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its caller may have stopped waiting

    def _waiter(self, names: Iterable[str]) -> _AvailabilityWaiter:
        waiter = _AvailabilityWaiter(names)
        self._waiters.add(waiter)
        return waiter

    def _checked_labels(self, new: list[ModelEntry]) -> dict[str, dict[str, int]]:
        """The new label map; every label must name an AVAILABLE version (TF Serving's rule)."""
        result: dict[str, dict[str, int]] = {}
        for entry in new:
            current = self._labels.get(entry.name, {})
            labels: dict[str, int] = {}
            for label, version in entry.labels:
                moved = label in current and current[label] != version
                must_be_available = not self.options.allow_version_labels_for_unavailable_models or moved
                if must_be_available and version not in self._serving.get(entry.name, {}):
                    raise ServingError(
                        Code.FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model {entry.name}, "
                        "which is not currently available for inference",
                    )
                labels[label] = version
            if labels:
                result[entry.name] = labels
        return result

    # ----- the file-system source ---------------------------------------------------------------

    async def _poll_loop(self) -> None:
        interval = self.options.file_system_poll_wait_seconds
        while True:
            await self.poll_once()
            if interval <= 0:
                return
            self._poll_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_now.wait(), timeout=interval)

    async def poll_once(self) -> None:
        entries = list(self._source.values())
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(self._executor, _scan, entries)
        except _MissingBasePath as exc:
            log.error("file_system_poll_failed error=%r", str(exc))
            return
        for entry in entries:
            if self._source.get(entry.name) is not entry:
                continue  # the config changed while we were listing
            on_disk = found.get(entry.name, {})
            self._set_aspired(entry.name, aspired_versions(entry.policy, on_disk), on_disk)

    def _set_aspired(self, name: str, aspired: frozenset[int], paths: dict[int, Path]) -> None:
        self._aspired[name] = aspired
        for version in sorted(aspired, reverse=True):
            servable = ServableId(name, version)
            self._paths[servable] = paths[version]
            if servable not in self._managed and servable not in self._failed:
                self._managed.add(servable)
                self._publish(name, VersionStatus(version, State.START))
                self._spawn(self._load(servable))
        self._unload_unaspired(name)

    def _unload_unaspired(self, name: str) -> None:
        aspired = self._aspired.get(name, frozenset())
        serving = self._serving.get(name, {})
        if aspired and not any(v in serving for v in aspired):
            return  # keep what serves until an aspired version is ready
        for version in [v for v in serving if v not in aspired]:
            self._spawn(self._unload(serving.pop(version)))

    # ----- load and unload ----------------------------------------------------------------------

    async def _load(self, servable: ServableId) -> None:
        loop = asyncio.get_running_loop()
        self._publish(servable.name, VersionStatus(servable.version, State.LOADING))
        attempts = 1 + max(self.options.max_num_load_retries, 0)
        error: ServingError | None = None
        model: LoadedModel | None = None
        for attempt in range(attempts):
            if servable.version not in self._aspired.get(servable.name, frozenset()):
                break  # un-aspired while retrying: give up quietly
            path = self._paths[servable]
            try:
                model = await loop.run_in_executor(self._executor, self._load_fn, servable, path)
                self._record_load(path, ok=True)
                break
            except ServingError as exc:
                self._record_load(path, ok=False)
                error = exc
                log.warning(
                    "load_failed servable=%s attempt=%d of=%d error=%r",
                    servable,
                    attempt + 1,
                    attempts,
                    exc.message,
                )
                if attempt + 1 < attempts:
                    await asyncio.sleep(self.options.load_retry_interval_seconds)
        if model is None:
            self._managed.discard(servable)
            if error is not None:
                self._failed.add(servable)
                self._publish(
                    servable.name, VersionStatus(servable.version, State.END, error.code, error.message)
                )
            else:
                self._publish(servable.name, VersionStatus(servable.version, State.END))
            return
        self._serving.setdefault(servable.name, {})[servable.version] = model
        log.info("servable_available servable=%s", servable)
        self._publish(servable.name, VersionStatus(servable.version, State.AVAILABLE))
        self._unload_unaspired(servable.name)

    async def _unload(self, model: LoadedModel) -> None:
        servable = model.id
        self._publish(servable.name, VersionStatus(servable.version, State.UNLOADING))
        if self._refs.get(servable, 0) > 0:
            drained = self._drained.setdefault(servable, asyncio.Event())
            await drained.wait()
            self._drained.pop(servable, None)
        await asyncio.get_running_loop().run_in_executor(self._executor, model.close)
        self._managed.discard(servable)
        log.info("servable_unloaded servable=%s", servable)
        self._publish(servable.name, VersionStatus(servable.version, State.END))
        if not self._serving.get(servable.name):
            self._serving.pop(servable.name, None)

    def _load_saved_model(self, servable: ServableId, path: Path) -> LoadedModel:
        model = LoadedModel(servable, path)
        if self.options.enable_model_warmup:
            from tfscachectl.tfserving.warmup import replay_warmup_requests

            try:
                replay_warmup_requests(model)
            except ServingError:
                model.close()
                raise
        return model

    # ----- bookkeeping --------------------------------------------------------------------------

    def _record_load(self, path: Path, ok: bool) -> None:
        if self._on_load is not None:
            self._on_load(str(path), ok)

    def _publish(self, name: str, status: VersionStatus) -> None:
        self.monitor.publish(name, status)
        for waiter in list(self._waiters):
            waiter.observe(name, status)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("servable_task_failed", exc_info=task.exception())
