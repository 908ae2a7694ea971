"""``NodeAgent``: the model set of one TF Serving instance, loaded just in time.

It carries out the pure core's decisions (``tfscachectl.core``) with the store, the disk cache and the TF
Serving controller:

- **ensure**: a hit (the version is resident) answers at once, with no I/O. A miss joins the model's single
  flight; the first one starts a load task that the agent owns (a caller that gives up does not abort a load
  half-way): describe the version in the store, plan memory (evict the least recently used, or wait for
  room until the deadline), put the files on disk (disk tier: delete cached versions if needed, fetch), add
  the version to TF Serving's config and wait until it is AVAILABLE. Loads of different models run in
  parallel; nothing holds a lock across a fetch or a load.
- **unload** (eviction, operator evict): the version is marked UNLOADING, the unload gate is awaited (the
  daemon withdraws its routes to this node first), then it leaves TF Serving's config.
- **recovery**: at start, complete versions in the disk cache are adopted, and versions TF Serving already
  serves are adopted as resident and kept in its config, so an agent restart loads nothing again.

"latest" and labels are resolved from the store, whose listings are trusted for ``version_cache_seconds``;
a hit on a resident model never waits for the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from tfscachectl.agent.api.values import EnsureResult, ModelInfo, NodeStatus, ResidencyEvent
from tfscachectl.agent.controller import ControllerTimeouts, TFServingController
from tfscachectl.agent.settings import AgentSettings
from tfscachectl.core import (
    Admit,
    Capacity,
    DiskState,
    DiskTier,
    MemoryEstimator,
    ModelKey,
    NoCapacity,
    Residency,
    ResidencyState,
    SingleFlight,
)
from tfscachectl.core.refs import validate_name
from tfscachectl.core.singleflight import Flight
from tfscachectl.errors import (
    Code,
    ConfigError,
    ModelNotInStoreError,
    ServingError,
    StoreError,
    TfsCacheError,
)
from tfscachectl.stores import ModelStore, StoredVersion, delete_version, prepare_cache
from tfscachectl.stores.labels import UnknownLabelError

log = logging.getLogger(__name__)

STATE_FILE = ".tfscache-agent.json"  # in the cache root; the reserved prefix keeps it out of the scan


@dataclass
class ModelStats:
    hits: int = 0
    loads: int = 0
    last_load_seconds: float | None = None
    fetch_seconds: float | None = None


class UnloadGate(Protocol):
    """Awaited before a version leaves TF Serving: the daemon withdraws its routes to it (fast-path issue)."""

    async def before_unload(self, key: ModelKey) -> None: ...


class _OpenGate:
    async def before_unload(self, key: ModelKey) -> None:
        return None


class Clock(Protocol):
    def __call__(self) -> float: ...


class NodeAgent:
    def __init__(
        self,
        settings: AgentSettings,
        store: ModelStore,
        controller: TFServingController | None = None,
        gate: UnloadGate | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.cache_root = Path(settings.cache_dir)
        self.controller = controller or TFServingController(
            settings.tf_serving_grpc,
            self.cache_root,
            PurePosixPath(settings.served_root),
            ControllerTimeouts(ready=settings.timeouts.ready, reload_rpc=settings.timeouts.reload_rpc),
        )
        self.gate: UnloadGate = gate or _OpenGate()
        self._now = clock
        self.residency = Residency(
            Capacity(max_models=settings.max_models, max_bytes=settings.max_bytes),
            guard_window=settings.guard_window,
        )
        self.disk = DiskTier(settings.disk_bytes)
        self.estimator = MemoryEstimator(settings.memory_factor, settings.memory_overhead_bytes)
        self.flights: SingleFlight[ModelKey, ModelKey] = SingleFlight()
        self.stats: dict[ModelKey, ModelStats] = {}
        self.counters: dict[str, int] = {
            "hits": 0,
            "misses": 0,
            "loads": 0,
            "load_failures": 0,
            "evictions": 0,
            "fetches": 0,
        }
        self._versions: dict[str, tuple[float, tuple[int, ...]]] = {}
        self._labels: dict[str, tuple[float, dict[str, int]]] = {}
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscribers: set[asyncio.Queue[ResidencyEvent]] = set()
        self._started = False

    # ----- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Prepare the disk cache, connect to TF Serving and adopt what is already there."""
        now = self._now()
        cached = await asyncio.to_thread(prepare_cache, self.cache_root)
        for version in cached:
            self.disk.adopt(version.key, version.size_bytes, now)
        await self.controller.start()
        await self._recover([v.key for v in cached], now)
        self._started = True

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.controller.close()
        self.store.close()

    async def _recover(self, cached: list[ModelKey], now: float) -> None:
        pins = self._read_pins()
        for key in pins:
            self.residency.pin(key)
        sizes = {e.key: e.size_bytes for e in self.disk.entries()}
        adopted: list[ModelKey] = []
        labels: dict[str, dict[str, int]] = {}
        for name in sorted({k.name for k in cached}):
            try:
                states = await self.controller.version_states(name)
            except ServingError as exc:
                log.warning("recovery_status_failed model=%s error=%r", name, exc.message)
                continue
            for version, state in sorted(states.items()):
                key = ModelKey(name, version)
                if state.state_name != "AVAILABLE" or key not in sizes:
                    continue
                size = self.estimator.estimate(sizes[key])
                if not isinstance(self.residency.plan_admission(key, size, now), Admit):
                    continue
                self.residency.start_loading(key, size, now)
                self.residency.loaded(key, now)
                adopted.append(key)
        if adopted:
            log.info("recovered_resident models=%s", ",".join(str(k) for k in adopted))
        self.controller.adopt(adopted, labels)
        await self.controller.flush(self.settings.timeouts.reload_rpc)
        for key in adopted:
            await self._publish(ResidencyEvent("loaded", key))

    # ----- ensure -------------------------------------------------------------------------------

    async def ensure(
        self, name: str, version: int | None = None, label: str | None = None, timeout: float | None = None
    ) -> EnsureResult:
        """Make sure the version a request asks for is AVAILABLE in TF Serving here."""
        started = time.monotonic()
        timeout = self.settings.timeouts.ensure if timeout is None else timeout
        key = await self.resolve(name, version, label)
        entry = self.residency.get(key)
        if entry is not None and entry.state is ResidencyState.RESIDENT:
            self.residency.ensured(key, self._now())
            self._stats(key).hits += 1
            self.counters["hits"] += 1
            if label is not None and self.controller.labels(name).get(label) != key.version:
                await self._sync_labels(name)  # the version was loaded by number or as latest
            return EnsureResult(key, "hit", time.monotonic() - started)
        self.counters["misses"] += 1
        ticket = self.flights.join(key)
        if ticket.leader:
            self._spawn(self._load(ticket.flight))
        try:
            async with asyncio.timeout(max(timeout - (time.monotonic() - started), 0.0)):
                await ticket.flight.wait()
        except TimeoutError as exc:
            raise ServingError(
                Code.DEADLINE_EXCEEDED, f"{key} is not loaded yet: timed out after {timeout:g} s"
            ) from exc
        if label is not None:
            await self._sync_labels(key.name)
        return EnsureResult(key, "loaded" if ticket.leader else "joined", time.monotonic() - started)

    async def resolve(self, name: str, version: int | None, label: str | None) -> ModelKey:
        """The concrete version a request names: as given, by label, or the latest in the store."""
        try:
            validate_name(name)
        except ConfigError as exc:
            raise ServingError(Code.INVALID_ARGUMENT, str(exc)) from exc
        if version is not None:
            if version < 0:
                raise ServingError(Code.INVALID_ARGUMENT, f"Invalid version {version} of model {name}")
            return ModelKey(name, version)
        if label is not None:
            labels = await self._store_labels(name)
            if label not in labels:
                raise ServingError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
            return ModelKey(name, labels[label])
        cached = self._versions.get(name)
        if cached is not None and time.monotonic() - cached[0] >= self.settings.version_cache_seconds:
            # stale-while-revalidate: answer from the last listing now; refresh it behind the request
            self._spawn(self._refresh_versions(name))
            return ModelKey(name, max(cached[1]))
        versions = await self._store_versions(name)
        return ModelKey(name, max(versions))

    async def _store_versions(self, name: str) -> tuple[int, ...]:
        cached = self._versions.get(name)
        if cached is not None and time.monotonic() - cached[0] < self.settings.version_cache_seconds:
            return cached[1]
        await self._refresh_versions(name)
        return self._versions[name][1]

    async def _refresh_versions(self, name: str) -> None:
        try:
            versions = await asyncio.to_thread(self.store.list_versions, name)
        except ModelNotInStoreError as exc:
            self._versions.pop(name, None)
            raise _not_found(name, None) from exc
        except StoreError as exc:
            raise ServingError(Code.UNAVAILABLE, f"Model store error: {exc}") from exc
        if not versions:
            raise _not_found(name, None)
        self._versions[name] = (time.monotonic(), tuple(versions))

    async def _store_labels(self, name: str) -> dict[str, int]:
        cached = self._labels.get(name)
        if cached is not None and time.monotonic() - cached[0] < self.settings.version_cache_seconds:
            return cached[1]
        try:
            labels = await asyncio.to_thread(self.store.read_labels, name)
        except ModelNotInStoreError as exc:
            raise _not_found(name, None) from exc
        except StoreError as exc:
            raise ServingError(Code.UNAVAILABLE, f"Model store error: {exc}") from exc
        self._labels[name] = (time.monotonic(), labels)
        return labels

    async def _sync_labels(self, name: str) -> None:
        """Give TF Serving the store's labels that name versions resident here (and AVAILABLE)."""
        labels = await self._store_labels(name)
        resident = {
            e.key.version for e in self.residency if e.key.name == name and e.state is ResidencyState.RESIDENT
        }
        wanted = {label: v for label, v in labels.items() if v in resident}
        if wanted != self.controller.labels(name):
            self.controller.set_labels(name, wanted)
            await self.controller.flush(self.settings.timeouts.reload_rpc)

    # ----- the load -----------------------------------------------------------------------------

    async def _load(self, flight: Flight[ModelKey, ModelKey]) -> None:
        key = flight.key
        started = time.monotonic()
        loading = False
        try:
            stored = await self._describe(key)
            size = self.estimator.estimate(stored.total_bytes)
            await self._admit(key, size, started + self.settings.timeouts.ensure)
            loading = True
            await self._put_on_disk(key, stored.total_bytes)
            before = (await self.controller.version_states(key.name)).get(key.version)
            generation = self.controller.add(key)
            await self.controller.wait_available(key, generation, before, self.settings.timeouts.load)
            self.residency.loaded(key, self._now())
            loading = False
            stats = self._stats(key)
            stats.loads += 1
            stats.last_load_seconds = time.monotonic() - started
            self.counters["loads"] += 1
            log.info("model_loaded model=%s seconds=%.3f", key, stats.last_load_seconds)
            self.flights.complete(flight, key)
            await self._publish(ResidencyEvent("loaded", key))
        except asyncio.CancelledError:
            self.flights.abandon(flight)
            raise
        except Exception as exc:
            error = _as_serving_error(exc)
            self.counters["load_failures"] += 1
            log.warning("model_load_failed model=%s code=%s error=%r", key, error.code.name, error.message)
            if loading:
                self.residency.load_failed(key)
                if key.version in self.controller.desired().get(key.name, ()):
                    self.controller.remove(key)
            self.flights.fail(flight, error)
        finally:
            await self._notify()

    async def _describe(self, key: ModelKey) -> StoredVersion:
        try:
            return await asyncio.to_thread(self.store.describe, key.name, key.version)
        except ModelNotInStoreError as exc:
            raise _not_found(key.name, key.version) from exc
        except StoreError as exc:
            raise ServingError(Code.UNAVAILABLE, f"Model store error: {exc}") from exc

    async def _admit(self, key: ModelKey, size: int, deadline: float) -> None:
        """Make room for ``key`` in memory and start its load, or fail with "no capacity" at the deadline."""
        while True:
            leaving = self.residency.get(key)
            if leaving is not None and leaving.state is ResidencyState.UNLOADING:
                # requested again while it leaves (its routes are being withdrawn): load it once it is gone
                if time.monotonic() >= deadline:
                    raise ServingError(Code.UNAVAILABLE, f"{key} is still being unloaded; retry the request")
                await self._wait_change(deadline)
                continue
            now = self._now()
            decision = self.residency.plan_admission(key, size, now)
            if isinstance(decision, NoCapacity):
                if decision.permanent or time.monotonic() >= deadline:
                    raise decision.error()
                wake = (
                    deadline
                    if decision.retry_at is None
                    else min(deadline, time.monotonic() + decision.retry_at - now)
                )
                await self._wait_change(wake)
                continue
            for victim in decision.evict:
                self._start_unload(victim, reason="lru")
            if decision.ready:
                self.residency.start_loading(key, size, now)
                return
            await self._wait_change(deadline)

    async def _put_on_disk(self, key: ModelKey, size: int) -> None:
        entry = self.disk.get(key)
        now = self._now()
        if entry is not None and entry.state is DiskState.CACHED:
            self.disk.touch(key, now)
            return
        while True:
            decision = self.disk.plan_fetch(key, size, now, self._in_use())
            if isinstance(decision, NoCapacity):
                raise decision.error()
            for victim in decision.evict:
                await self._delete_from_disk(victim)
            if isinstance(decision, Admit) and not decision.awaiting:
                break
            await self._wait_change(time.monotonic() + self.settings.timeouts.fetch)
            now = self._now()
        self.disk.start_fetch(key, size, now)
        started = time.monotonic()
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.store.fetch, key.name, key.version, self.cache_root),
                self.settings.timeouts.fetch,
            )
        except BaseException as exc:
            self.disk.fetch_failed(key)
            if isinstance(exc, TimeoutError):
                raise ServingError(
                    Code.DEADLINE_EXCEEDED,
                    f"Fetching {key} from {self.store.url} took longer than "
                    f"{self.settings.timeouts.fetch:g} s",
                ) from exc
            raise
        self.disk.fetched(key, self._now())
        self.counters["fetches"] += 1
        self._stats(key).fetch_seconds = time.monotonic() - started

    async def _delete_from_disk(self, key: ModelKey) -> None:
        self.disk.start_delete(key, self._in_use())
        try:
            await asyncio.to_thread(delete_version, self.cache_root, key.name, key.version)
        except BaseException:
            self.disk.delete_failed(key)
            raise
        self.disk.deleted(key)
        log.info("model_deleted_from_disk model=%s", key)

    def _in_use(self) -> set[ModelKey]:
        """Versions whose files must stay: in memory (any state), or with a flight in progress."""
        return {e.key for e in self.residency} | set(self.flights.in_flight())

    # ----- unload -------------------------------------------------------------------------------

    def _start_unload(self, key: ModelKey, reason: str) -> None:
        self.residency.start_unloading(key)
        self._spawn(self._unload(key, reason))

    async def _unload(self, key: ModelKey, reason: str) -> None:
        try:
            await self._publish(ResidencyEvent("unloading", key))
            await self.gate.before_unload(key)
            self.controller.remove(key)
            await self.controller.wait_unloaded(key, self.settings.timeouts.unload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = _as_serving_error(exc)
            log.error("model_unload_failed model=%s error=%r", key, error.message)
            # it may still be in TF Serving: it counts as resident until a later unload succeeds
            self.residency.unload_failed(key)
            if key.version not in self.controller.desired().get(key.name, ()):
                self.controller.add(key)
            await self._notify()
            return
        self.residency.unloaded(key)
        self.disk.touch(key, self._now())
        self.counters["evictions"] += 1
        log.info("model_unloaded model=%s reason=%s", key, reason)
        await self._publish(ResidencyEvent("unloaded", key))
        await self._notify()

    async def evict(self, name: str, version: int | None = None) -> list[ModelKey]:
        """Unload ``name`` (one version, or every resident one) now; pinned models are refused."""
        keys = [
            e.key
            for e in self.residency
            if e.key.name == name
            and (version is None or e.key.version == version)
            and e.state is ResidencyState.RESIDENT
        ]
        if not keys:
            what = name if version is None else f"{name}:{version}"
            raise ServingError(
                Code.NOT_FOUND, f"Model {what} is not resident on node {self.settings.node_id}"
            )
        pinned = [k for k in keys if k in self.residency.pins()]
        if pinned:
            raise ServingError(
                Code.FAILED_PRECONDITION,
                f"Model {', '.join(str(k) for k in pinned)} is pinned on node {self.settings.node_id}: "
                "unpin it first",
            )
        waits = []
        for key in keys:
            self._start_unload(key, reason="operator")
            waits.append(self._wait_gone(key))
        await asyncio.gather(*waits)
        return keys

    async def _wait_gone(self, key: ModelKey) -> None:
        deadline = time.monotonic() + self.settings.timeouts.unload
        while key in self.residency:
            entry = self.residency.get(key)
            if entry is not None and entry.state is ResidencyState.RESIDENT:
                raise ServingError(Code.INTERNAL, f"Unloading {key} failed; it is still resident")
            if time.monotonic() >= deadline:
                raise ServingError(Code.DEADLINE_EXCEEDED, f"{key} was not unloaded in time")
            await self._wait_change(deadline)

    # ----- pins ---------------------------------------------------------------------------------

    async def pin(self, name: str, version: int | None = None, pinned: bool = True) -> ModelKey:
        """Pin (never evict) or unpin a version; pinning a model that is not resident also loads it."""
        key = await self.resolve(name, version, None)
        if pinned:
            self.residency.pin(key)
        else:
            self.residency.unpin(key)
        self._write_pins()
        await self._notify()
        if pinned:
            await self.ensure(key.name, key.version)
        return key

    def _read_pins(self) -> set[ModelKey]:
        path = self.cache_root / STATE_FILE
        try:
            data = json.loads(path.read_text())
            return {ModelKey(str(p["name"]), int(p["version"])) for p in data.get("pins", [])}
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("agent_state_unreadable path=%s error=%r", path, str(exc))
            return set()

    def _write_pins(self) -> None:
        path = self.cache_root / STATE_FILE
        data = {"pins": [{"name": k.name, "version": k.version} for k in sorted(self.residency.pins())]}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)

    # ----- status and events --------------------------------------------------------------------

    def touch(self, name: str, version: int, hits: int, when: float) -> None:
        """Hits seen elsewhere (Envoy's access log, fed by the daemon) count for recency."""
        key = ModelKey(name, version)
        if self.residency.touch(key, when, hits):
            self._stats(key).hits += hits
            self.counters["hits"] += hits

    def status(self) -> NodeStatus:
        usage = self.residency.usage()
        disk = {e.key: e for e in self.disk.entries()}
        models: list[ModelInfo] = []
        seen: set[ModelKey] = set()
        for entry in self.residency.entries():
            seen.add(entry.key)
            stats = self._stats(entry.key)
            on_disk = disk.get(entry.key)
            models.append(
                ModelInfo(
                    entry.key.name,
                    entry.key.version,
                    entry.state.value,
                    entry.size_bytes,
                    on_disk.size_bytes if on_disk else 0,
                    entry.last_used,
                    stats.hits,
                    stats.loads,
                    stats.last_load_seconds,
                    entry.key in self.residency.pins(),
                )
            )
        for key, on_disk in disk.items():
            if key not in seen:
                stats = self._stats(key)
                models.append(
                    ModelInfo(
                        key.name,
                        key.version,
                        "cached",
                        0,
                        on_disk.size_bytes,
                        on_disk.last_used,
                        stats.hits,
                        stats.loads,
                        stats.last_load_seconds,
                        key in self.residency.pins(),
                    )
                )
        return NodeStatus(
            node_id=self.settings.node_id,
            max_models=self.settings.max_models,
            max_bytes=self.settings.max_bytes,
            used_models=usage.models,
            used_bytes=usage.bytes,
            disk_budget_bytes=self.settings.disk_bytes,
            disk_used_bytes=self.disk.used_bytes(),
            models=tuple(sorted(models, key=lambda m: (m.name, m.version))),
            counters=dict(self.counters),
        )

    async def events(self, synced: bool = False) -> AsyncIterator[ResidencyEvent]:
        """Residency changes: first one ``loaded`` per resident version (then ``synced`` if asked: the
        snapshot is complete, also when empty), then every change as it happens."""
        queue: asyncio.Queue[ResidencyEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            for entry in self.residency.entries():
                if entry.state is ResidencyState.RESIDENT:
                    yield ResidencyEvent("loaded", entry.key)
            if synced:
                yield ResidencyEvent("synced", None)
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    async def _publish(self, event: ResidencyEvent) -> None:
        for queue in list(self._subscribers):
            queue.put_nowait(event)

    # ----- plumbing -----------------------------------------------------------------------------

    def _stats(self, key: ModelKey) -> ModelStats:
        return self.stats.setdefault(key, ModelStats())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait_change(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if isinstance(exc, TfsCacheError):
                log.warning("background_task_failed error=%r", str(exc))
            else:
                log.error("background_task_crashed", exc_info=exc)


def _not_found(name: str, version: int | None) -> ServingError:
    request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
    return ServingError(Code.NOT_FOUND, f"Servable not found for request: {request}")


def _as_serving_error(exc: BaseException) -> ServingError:
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, UnknownLabelError):
        return ServingError(Code.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, ModelNotInStoreError):
        return ServingError(Code.NOT_FOUND, str(exc))
    if isinstance(exc, StoreError):
        return ServingError(Code.UNAVAILABLE, f"Model store error: {exc}")
    if isinstance(exc, TimeoutError):
        return ServingError(Code.DEADLINE_EXCEEDED, str(exc) or "timed out")
    return ServingError(Code.INTERNAL, f"{type(exc).__name__}: {exc}")
