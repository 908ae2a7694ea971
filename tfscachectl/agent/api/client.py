"""``AgentClient``: the agent's gRPC API for the daemon and the CLI, with plain values in and out.

Every failure is a ``ServingError`` with the agent's code and message as it sent them (TF Serving's, for
model errors). Failures of the transport are told apart by the trailing metadata the agent puts on its own
errors (``tfscache-error-source``): without it, UNAVAILABLE means the agent could not be reached
(``AgentUnreachableError``, a ``ServingError``: "agent at X is unreachable: ...") and DEADLINE_EXCEEDED that
it did not answer in time.

Each call has an explicit deadline (``ClientTimeouts``). This module imports neither ``NodeAgent`` nor
TensorFlow.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc

from tfscachectl.agent.api import agent_pb2, agent_pb2_grpc, wire
from tfscachectl.agent.api.values import (
    EnsureResult,
    LatestVersion,
    ModelHits,
    NodeStatus,
    ResidencyEvent,
    StoreListing,
)
from tfscachectl.core.refs import ModelKey
from tfscachectl.errors import Code, ServingError


class AgentUnreachableError(ServingError):
    """UNAVAILABLE because the agent could not be reached (refused, reset, gone), not because it said so."""


@dataclass(frozen=True, slots=True)
class ClientTimeouts:
    """Deadlines of calls to the agent, in seconds."""

    call: float = 10.0  # Status, Touch, unpinning
    evict: float = 180.0  # waits for TF Serving to unload (the agent allows its timeouts.unload, 120 s)
    ensure: float = (
        330.0  # ensure and pin when the caller gives no timeout (the agent caps at timeouts.ensure)
    )
    listing: float = 120.0  # ListStore: reads the whole store (for S3, one listing per model and version)


class AgentClient:
    """One channel to one agent, opened at the first call (a ``grpc.aio`` channel belongs to the event loop
    it was opened on: use a client on one loop only). Close it, or use it with ``async with``."""

    def __init__(self, target: str, timeouts: ClientTimeouts | None = None) -> None:
        self.target = target
        self.timeouts = timeouts or ClientTimeouts()
        self._channel: Any = None
        self._stub: Any = None

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()

    @property
    def _rpc(self) -> Any:
        """The stub, on a channel opened now if there is none."""
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.target)
            self._stub = agent_pb2_grpc.NodeAgentStub(self._channel)
        return self._stub

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ----- calls --------------------------------------------------------------------------------

    async def ensure(
        self,
        name: str,
        version: int | None = None,
        *,
        label: str | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> EnsureResult:
        """Make sure ``name`` (a version, a label, or the latest) is AVAILABLE on the agent's TF Serving.

        ``wait=False`` preloads: the agent checks the model exists, starts its load and answers at once
        (outcome ``started``, or ``hit``). ``timeout`` is the deadline of the wait, in seconds.
        """
        if version is not None and label is not None:
            raise ServingError(Code.INVALID_ARGUMENT, "Give a model version or a version label, not both")
        request = agent_pb2.EnsureRequest(name=name, wait=wait)
        if version is not None:
            request.version = version
        elif label is not None:
            request.label = label
        deadline = self.timeouts.ensure if timeout is None else timeout
        response = await self._call(self._rpc.Ensure, request, deadline)
        return wire.decode_ensure(response)

    async def preload(
        self, name: str, version: int | None = None, *, label: str | None = None
    ) -> EnsureResult:
        """Start loading a model without waiting for it (``ensure(..., wait=False)``)."""
        return await self.ensure(name, version, label=label, wait=False, timeout=self.timeouts.call)

    async def evict(self, name: str, version: int | None = None) -> list[ModelKey]:
        """Unload every resident version of ``name`` (or one); returns the versions unloaded."""
        request = agent_pb2.EvictRequest(name=name)
        if version is not None:
            request.version = version
        response = await self._call(self._rpc.Evict, request, self.timeouts.evict)
        return [wire.decode_key(k) for k in response.evicted]

    async def pin(
        self, name: str, version: int | None = None, *, pinned: bool = True, timeout: float | None = None
    ) -> ModelKey:
        """Pin a version (it is loaded, and never evicted) or, with ``pinned=False``, unpin it."""
        request = agent_pb2.PinRequest(name=name, pinned=pinned)
        if version is not None:
            request.version = version
        default = self.timeouts.ensure if pinned else self.timeouts.call
        response = await self._call(self._rpc.Pin, request, default if timeout is None else timeout)
        return wire.decode_key(response.key)

    async def unpin(self, name: str, version: int | None = None) -> ModelKey:
        return await self.pin(name, version, pinned=False)

    async def status(self) -> NodeStatus:
        response = await self._call(self._rpc.Status, agent_pb2.StatusRequest(), self.timeouts.call)
        return wire.decode_status(response)

    async def resolve(self, name: str, version: int | None = None, *, label: str | None = None) -> ModelKey:
        """The version a request for ``name`` (a version, a label, or the latest) would get; nothing loads."""
        request = agent_pb2.ResolveRequest(name=name)
        if version is not None:
            request.version = version
        elif label is not None:
            request.label = label
        response = await self._call(self._rpc.Resolve, request, self.timeouts.call)
        return wire.decode_key(response.key)

    async def resolve_latest(self, names: Sequence[str]) -> list[LatestVersion]:
        """The latest version of each of ``names`` (``resolve`` without version or label), in one call of at
        most ``MAX_RESOLVE_LATEST_NAMES`` names; a name that has none says why in its
        ``error``."""
        request = agent_pb2.ResolveLatestRequest(names=list(names))
        response = await self._call(self._rpc.ResolveLatest, request, self.timeouts.call)
        return [
            LatestVersion(v.name, None, v.error) if v.error else LatestVersion(v.name, v.version)
            for v in response.versions
        ]

    async def list_store(self, limit: int | None = None) -> StoreListing:
        """What the model store holds: models (up to ``limit``; None: the agent's default), their versions
        with sizes, and their labels."""
        request = agent_pb2.ListStoreRequest(limit=limit or 0)
        response = await self._call(self._rpc.ListStore, request, self.timeouts.listing)
        return wire.decode_listing(response)

    async def touch(self, hits: Iterable[ModelHits]) -> int:
        """Report hits served without the agent; returns how many entries it accepted."""
        request = agent_pb2.TouchRequest(
            hits=[
                agent_pb2.ModelHits(name=h.name, version=h.version, hits=h.hits, unix_time=h.unix_time)
                for h in hits
            ]
        )
        response = await self._call(self._rpc.Touch, request, self.timeouts.call)
        accepted: int = response.accepted
        return accepted

    async def watch_residency(
        self, watcher: str | None = None, confirm_unloads: bool = False
    ) -> AsyncIterator[ResidencyEvent]:
        """First one ``loaded`` per resident version, then every change; raises when the stream breaks
        (UNAVAILABLE when the agent shuts down or cannot be reached).

        ``watcher``: an id of the caller's, unique per process (a new stream with the same id replaces the
        old one). With ``confirm_unloads``, the agent holds every unload until this watcher calls
        ``confirm_unload`` for it (or its stream ends, or the agent's ``timeouts.unload_gate`` passes).
        """
        if confirm_unloads and not watcher:
            raise ServingError(Code.INVALID_ARGUMENT, "A watcher that confirms unloads needs an id")
        request = agent_pb2.WatchResidencyRequest(watcher=watcher or "", confirm_unloads=confirm_unloads)
        call = self._rpc.WatchResidency(request)
        try:
            async for message in call:
                yield wire.decode_event(message)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc, None) from exc
        finally:
            call.cancel()

    async def confirm_unload(self, watcher: str, key: ModelKey) -> bool:
        """``watcher`` stopped routing to ``key`` (announced ``unloading``); true if its unload was waiting
        for that (false is not an error: the unload went on without it, or had not begun waiting yet)."""
        request = agent_pb2.ConfirmUnloadRequest(watcher=watcher, key=wire.encode_key(key))
        response = await self._call(self._rpc.ConfirmUnload, request, self.timeouts.call)
        awaited: bool = response.awaited
        return awaited

    # ----- plumbing -----------------------------------------------------------------------------

    async def _call(self, method: Any, request: Any, timeout: float) -> Any:
        try:
            return await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc, timeout) from exc

    def _error(self, exc: Any, timeout: float | None) -> ServingError:
        try:
            code = Code(exc.code().value[0])
        except ValueError:
            code = Code.UNKNOWN
        details = exc.details() or ""
        if _from_agent(exc):
            return ServingError(code, details)
        if code is Code.UNAVAILABLE:
            return AgentUnreachableError(code, f"agent at {self.target} is unreachable: {details}")
        if code is Code.DEADLINE_EXCEEDED and timeout is not None:
            return ServingError(code, f"agent at {self.target} did not answer within {timeout:g} s")
        return ServingError(code, f"agent at {self.target}: {details}")


def _from_agent(exc: Any) -> bool:
    with contextlib.suppress(Exception):  # no trailing metadata on some transport errors
        return any(
            key == wire.ERROR_SOURCE_KEY and value == wire.ERROR_SOURCE_AGENT
            for key, value in exc.trailing_metadata() or ()
        )
    return False
