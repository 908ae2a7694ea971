"""The agent's gRPC API (``agent.proto``) over one ``NodeAgent``, served with ``grpc.aio``.

Errors reach callers as TF Serving would give them: a ``ServingError`` becomes the gRPC status with its code
and message. Any other exception is a bug: it is logged with its traceback and answered INTERNAL, and the
agent keeps serving. Every error the agent answers carries the trailing metadata
``tfscache-error-source: agent``, so a client can tell "the agent said UNAVAILABLE" (no capacity, store down)
from "the agent could not be reached".

Deadlines: an ``Ensure`` waits at most the caller's remaining gRPC deadline, less ``DEADLINE_MARGIN_SECONDS``
(so the caller gets the agent's own DEADLINE_EXCEEDED message, not its channel's), and never more than the
agent's ``timeouts.ensure``. A load outlives a caller that gives up: the agent owns it.

``ListStore`` reads the store in worker threads (a few models at a time) and answers at most ``limit``
models (``DEFAULT_LISTING_LIMIT`` when the caller gives none), telling whether there were more.

``WatchResidency`` streams never end on their own; at shutdown they end with UNAVAILABLE ("shutting down")
before the server stops, so a watching daemon does not hold the shutdown for its grace period. A stream that
names its ``watcher`` is registered with the unload gate (``tfscachectl.agent.gate.WatcherGate``) for as
long as it lasts; with ``confirm_unloads``, every unload waits for that watcher's ``ConfirmUnload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

import grpc

from tfscachectl.agent.api import agent_pb2, agent_pb2_grpc, wire
from tfscachectl.agent.api.values import (
    MAX_RESOLVE_LATEST_NAMES,
    Outcome,
    StoredModel,
    StoredModelVersion,
    StoreListing,
)
from tfscachectl.agent.gate import WatcherGate
from tfscachectl.core import ModelKey, ResidencyState
from tfscachectl.errors import Code, ConfigError, ModelNotInStoreError, ServingError, StoreError
from tfscachectl.stores.base import ModelStore

if TYPE_CHECKING:
    from tfscachectl.agent.node import NodeAgent

log = logging.getLogger(__name__)

#: An ensure gives up this long before the caller's deadline, so its own DEADLINE_EXCEEDED gets back.
DEADLINE_MARGIN_SECONDS = 0.05

#: ``ListStore`` answers at most this many models when the caller gives no limit.
DEFAULT_LISTING_LIMIT = 10_000
#: ``ListStore`` reads this many models from the store at once (each in a worker thread).
LISTING_CONCURRENCY = 8

_GRPC_CODES: dict[int, Any] = {status.value[0]: status for status in grpc.StatusCode}
_ERROR_METADATA = ((wire.ERROR_SOURCE_KEY, wire.ERROR_SOURCE_AGENT),)

_S = TypeVar("_S", bound="AgentService")
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_T = TypeVar("_T")


class ApiObserver(Protocol):
    """What the API tells the metrics (``tfscachectl.agent.metrics.AgentMetrics``)."""

    def ensure_answered(self, outcome: str, seconds: float) -> None:
        """An ensure that waited was answered: ``hit``, ``loaded``, ``joined`` or ``error``."""

    def evicting(self, keys: Collection[ModelKey]) -> None:
        """An operator asked for these resident versions to be unloaded."""

    def eviction_withdrawn(self, keys: Collection[ModelKey]) -> None:
        """These versions were not unloaded after all (refused, or their unload failed)."""


class _NoObserver:
    def ensure_answered(self, outcome: str, seconds: float) -> None:
        return None

    def evicting(self, keys: Collection[ModelKey]) -> None:
        return None

    def eviction_withdrawn(self, keys: Collection[ModelKey]) -> None:
        return None


async def _abort(context: Any, rpc: str, exc: Exception) -> NoReturn:
    """End the call with ``exc`` as a gRPC status (``context.abort`` raises)."""
    if isinstance(exc, ServingError):
        code, message = exc.code, exc.message
        log.debug("api_error rpc=%s code=%s error=%r", rpc, code.name, message)
    else:
        log.error("api_call_crashed rpc=%s error=%r", rpc, str(exc), exc_info=exc)
        code, message = (
            Code.INTERNAL,
            f"Internal error in the node agent ({rpc}): {type(exc).__name__}: {exc}",
        )
    await context.abort(_GRPC_CODES[code.value], message, trailing_metadata=_ERROR_METADATA)
    raise AssertionError("grpc's context.abort returned")


def _unary(
    method: Callable[[_S, _Request, Any], Awaitable[_Response]],
) -> Callable[[_S, _Request, Any], Coroutine[Any, Any, _Response]]:
    """Answer a unary RPC; errors become gRPC statuses (see the module docstring)."""

    @functools.wraps(method)
    async def handler(self: _S, request: _Request, context: Any) -> _Response:
        try:
            return await method(self, request, context)
        except Exception as exc:  # CancelledError is not an Exception: it passes
            await _abort(context, method.__name__, exc)

    return handler


def _optional_version(request: agent_pb2.EvictRequest | agent_pb2.PinRequest) -> int | None:
    return request.version if request.HasField("version") else None


class AgentService:
    """The ``tfscache.agent.v1.NodeAgent`` servicer (method names are the RPCs')."""

    def __init__(
        self, agent: NodeAgent, observer: ApiObserver | None = None, gate: WatcherGate | None = None
    ) -> None:
        """``gate``: the agent's unload gate, fed by the streams' watchers and ``ConfirmUnload``. None: the
        agent's unloads wait for no watcher, and ``ConfirmUnload`` answers ``awaited: false``."""
        self._agent = agent
        self._observer: ApiObserver = observer or _NoObserver()
        self._gate = gate
        self._closing = asyncio.Event()
        self._preloads: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """End the residency streams and cancel the waits of preloads (the loads go on in the agent)."""
        self._closing.set()
        for task in list(self._preloads):
            task.cancel()
        await asyncio.gather(*self._preloads, return_exceptions=True)

    # ----- ensure -------------------------------------------------------------------------------

    @_unary
    async def Ensure(self, request: agent_pb2.EnsureRequest, context: Any) -> agent_pb2.EnsureResponse:
        selector = request.WhichOneof("selector")
        version = request.version if selector == "version" else None
        label = request.label if selector == "label" else None
        if request.wait:
            key, outcome, seconds = await self._ensure(
                request.name, version, label, self._ensure_timeout(context)
            )
        else:
            key, outcome, seconds = await self._preload(request.name, version, label)
        return wire.encode_ensure(key, outcome, seconds)

    def _ensure_timeout(self, context: Any) -> float:
        limit = self._agent.settings.timeouts.ensure
        remaining: float | None = context.time_remaining()
        if remaining is None:
            return limit
        return max(0.0, min(limit, remaining - DEADLINE_MARGIN_SECONDS))

    async def _ensure(
        self, name: str, version: int | None, label: str | None, timeout: float
    ) -> tuple[ModelKey, Outcome, float]:
        started = time.monotonic()
        try:
            result = await self._agent.ensure(name, version, label, timeout)
        except ServingError:
            self._observer.ensure_answered("error", time.monotonic() - started)
            raise
        self._observer.ensure_answered(result.outcome, result.seconds)
        return result.key, result.outcome, result.seconds

    async def _preload(
        self, name: str, version: int | None, label: str | None
    ) -> tuple[ModelKey, Outcome, float]:
        """Check the model exists and start its load; a resident version is a hit, answered at once."""
        started = time.monotonic()
        key = await self._agent.resolve(name, version, label)
        if self._state(key) is ResidencyState.RESIDENT:
            result = await self._agent.ensure(key.name, key.version)  # a hit: no I/O, no wait
            return result.key, result.outcome, result.seconds
        task = asyncio.create_task(self._load_in_background(key, name, version, label), name=f"preload {key}")
        self._preloads.add(task)
        task.add_done_callback(self._preloads.discard)
        return key, "started", time.monotonic() - started

    async def _load_in_background(
        self, key: ModelKey, name: str, version: int | None, label: str | None
    ) -> None:
        try:
            result = await self._agent.ensure(name, version, label)
        except ServingError as exc:
            log.warning("preload_failed model=%s code=%s error=%r", key, exc.code.name, exc.message)
        except Exception:
            log.exception("preload_crashed model=%s", key)
        else:
            log.info("preload_done model=%s outcome=%s seconds=%.3f", key, result.outcome, result.seconds)

    # ----- evict and pin ------------------------------------------------------------------------

    @_unary
    async def Evict(self, request: agent_pb2.EvictRequest, context: Any) -> agent_pb2.EvictResponse:
        version = _optional_version(request)
        # The versions NodeAgent.evict will unload (it picks them before its first await): the metrics
        # count their unloads as evictions by an operator, all others as LRU evictions.
        expected = [
            e.key
            for e in self._agent.residency
            if e.key.name == request.name
            and (version is None or e.key.version == version)
            and e.state is ResidencyState.RESIDENT
        ]
        self._observer.evicting(expected)
        try:
            evicted = await self._agent.evict(request.name, version)
        except BaseException:
            self._observer.eviction_withdrawn(
                [k for k in expected if self._state(k) is ResidencyState.RESIDENT]
            )
            raise
        return agent_pb2.EvictResponse(evicted=[wire.encode_key(k) for k in evicted])

    @_unary
    async def Pin(self, request: agent_pb2.PinRequest, context: Any) -> agent_pb2.PinResponse:
        key = await self._agent.pin(request.name, _optional_version(request), request.pinned)
        return agent_pb2.PinResponse(key=wire.encode_key(key), pinned=request.pinned)

    def _state(self, key: ModelKey) -> ResidencyState | None:
        entry = self._agent.residency.get(key)
        return None if entry is None else entry.state

    # ----- status, recency and residency changes ------------------------------------------------

    @_unary
    async def Status(self, request: agent_pb2.StatusRequest, context: Any) -> agent_pb2.StatusResponse:
        return wire.encode_status(self._agent.status())

    @_unary
    async def Touch(self, request: agent_pb2.TouchRequest, context: Any) -> agent_pb2.TouchResponse:
        now = time.time()
        accepted = ignored = 0
        for entry in request.hits:
            if entry.hits < 1:
                ignored += 1
                continue
            try:
                # a clock ahead of ours must not make a model look used in the future
                self._agent.touch(entry.name, entry.version, entry.hits, min(entry.unix_time, now))
            except (ConfigError, ValueError):  # a bad name or version, a time that is not finite
                ignored += 1
            else:
                accepted += 1
        return agent_pb2.TouchResponse(accepted=accepted, ignored=ignored)

    async def WatchResidency(
        self, request: agent_pb2.WatchResidencyRequest, context: Any
    ) -> AsyncIterator[agent_pb2.ResidencyEvent]:
        # The watcher is registered before the stream subscribes to the agent's events (at its first read),
        # never after: no unload can miss a watcher that routes. An unload that starts in between (one turn
        # of the event loop) waits for this watcher, which is never told of it (the version is not resident,
        # so not among its first events): that unload waits out timeouts.unload_gate. Late, never unsafe.
        with self._watching(request):
            try:
                async for event in self._until_closing(self._agent.events(synced=True)):
                    yield wire.encode_event(event)
            except Exception as exc:
                await _abort(context, "WatchResidency", exc)
            await _abort(
                context,
                "WatchResidency",
                ServingError(Code.UNAVAILABLE, f"Node agent {self._agent.settings.node_id} is shutting down"),
            )

    def _watching(self, request: agent_pb2.WatchResidencyRequest) -> contextlib.AbstractContextManager[Any]:
        if self._gate is None or not request.watcher:
            return contextlib.nullcontext()
        return self._gate.watching(request.watcher, request.confirm_unloads)

    @_unary
    async def ConfirmUnload(
        self, request: agent_pb2.ConfirmUnloadRequest, context: Any
    ) -> agent_pb2.ConfirmUnloadResponse:
        if not request.watcher:
            raise ServingError(
                Code.INVALID_ARGUMENT, "ConfirmUnload needs the watcher id of a residency stream"
            )
        if not request.HasField("key"):
            raise ServingError(Code.INVALID_ARGUMENT, "ConfirmUnload needs the key of the version unloading")
        try:
            key = wire.decode_key(request.key)
        except (ConfigError, ValueError) as exc:
            raise ServingError(Code.INVALID_ARGUMENT, str(exc)) from exc
        awaited = self._gate is not None and self._gate.confirm(request.watcher, key)
        return agent_pb2.ConfirmUnloadResponse(awaited=awaited)

    # ----- the store ----------------------------------------------------------------------------

    @_unary
    async def Resolve(self, request: agent_pb2.ResolveRequest, context: Any) -> agent_pb2.ResolveResponse:
        selector = request.WhichOneof("selector")
        version = request.version if selector == "version" else None
        label = request.label if selector == "label" else None
        key = await self._agent.resolve(request.name, version, label)
        return agent_pb2.ResolveResponse(
            key=wire.encode_key(key), resident=self._state(key) is ResidencyState.RESIDENT
        )

    @_unary
    async def ResolveLatest(
        self, request: agent_pb2.ResolveLatestRequest, context: Any
    ) -> agent_pb2.ResolveLatestResponse:
        if len(request.names) > MAX_RESOLVE_LATEST_NAMES:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"ResolveLatest takes at most {MAX_RESOLVE_LATEST_NAMES} names, not {len(request.names)}",
            )
        answers = await asyncio.gather(*(self._latest(name) for name in request.names))
        return agent_pb2.ResolveLatestResponse(versions=answers)

    async def _latest(self, name: str) -> agent_pb2.LatestVersion:
        try:
            key = await self._agent.resolve(name, None, None)
        except ServingError as exc:
            return agent_pb2.LatestVersion(name=name, error=exc.message)
        return agent_pb2.LatestVersion(name=name, version=key.version)

    @_unary
    async def ListStore(
        self, request: agent_pb2.ListStoreRequest, context: Any
    ) -> agent_pb2.ListStoreResponse:
        if request.limit < 0:
            raise ServingError(Code.INVALID_ARGUMENT, f"ListStore limit cannot be negative: {request.limit}")
        listing = await list_store(self._agent.store, request.limit or DEFAULT_LISTING_LIMIT)
        return wire.encode_listing(listing)

    async def _until_closing(self, items: AsyncIterator[_T]) -> AsyncIterator[_T]:
        """``items`` until ``close()``; then the pending read is cancelled and ``items`` closed."""
        closing = asyncio.ensure_future(self._closing.wait())
        pending: asyncio.Future[_T] | None = None
        try:
            while True:
                pending = asyncio.ensure_future(anext(items))
                await asyncio.wait((pending, closing), return_when=asyncio.FIRST_COMPLETED)
                if not pending.done():
                    return
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield item
        finally:
            closing.cancel()
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()


async def list_store(store: ModelStore, limit: int) -> StoreListing:
    """The first ``limit`` models of ``store`` by name, with their versions, sizes and labels.

    Store calls run in worker threads, ``LISTING_CONCURRENCY`` models at a time. A model or version removed
    while the listing runs is left out; a store that fails is UNAVAILABLE ``Model store error: ...``.
    """
    try:
        names = await asyncio.to_thread(store.list_models)
    except StoreError as exc:
        raise ServingError(Code.UNAVAILABLE, f"Model store error: {exc}") from exc
    chosen = names[:limit]
    slots = asyncio.Semaphore(LISTING_CONCURRENCY)

    async def one(name: str) -> StoredModel | None:
        async with slots:
            return await asyncio.to_thread(_stored_model, store, name)

    try:
        models = await asyncio.gather(*(one(name) for name in chosen))
    except StoreError as exc:
        raise ServingError(Code.UNAVAILABLE, f"Model store error: {exc}") from exc
    return StoreListing(store.url, tuple(m for m in models if m is not None), len(names) > limit)


def _stored_model(store: ModelStore, name: str) -> StoredModel | None:
    """One model's versions with their sizes, and its labels; None if it is gone (runs in a thread)."""
    try:
        versions = store.list_versions(name)
    except ModelNotInStoreError:
        return None
    sized: list[StoredModelVersion] = []
    for version in versions:
        try:
            sized.append(StoredModelVersion(version, store.describe(name, version).total_bytes))
        except ModelNotInStoreError:
            continue
    try:
        labels = store.read_labels(name)
    except ModelNotInStoreError:
        return None
    except StoreError as exc:  # an unreadable labels.json: the listing goes on without its labels
        log.warning("store_labels_unreadable model=%s error=%r", name, str(exc))
        labels = {}
    return StoredModel(name, tuple(sized), labels)


class AgentServer:
    """A ``grpc.aio`` server with the agent's API and nothing else."""

    def __init__(self, service: AgentService) -> None:
        self.service = service
        # no SO_REUSEPORT: a second agent on the same port must fail, not share the port
        self._server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        agent_pb2_grpc.add_NodeAgentServicer_to_server(service, self._server)

    async def start(self, listen: str) -> str:
        """Listen on ``host:port`` (port 0: any free port); returns the address actually bound."""
        try:
            port = self._server.add_insecure_port(listen)
        except RuntimeError as exc:
            raise ConfigError(f"The node agent cannot listen on {listen}: {exc}") from exc
        await self._server.start()
        return f"{listen.rpartition(':')[0]}:{port}"

    async def stop(self, grace: float) -> None:
        """End the streams, give calls in flight ``grace`` seconds, then cancel them."""
        await self.service.close()
        await self._server.stop(grace)
