"""``WatcherGate``: an unload waits until the daemons that route requests here have stopped routing to it.

The protocol (``WatchResidency`` and ``ConfirmUnload`` in ``agent.proto``):

1. A daemon opens a residency stream as a *watcher* with an id of its own; ``confirms=True`` says it routes
   requests here (a fast-path route in Envoy per resident version) and every unload must wait for it.
2. Before a version leaves TF Serving, ``NodeAgent`` publishes ``unloading`` on every stream and then awaits
   ``before_unload(key)``. The wait covers the confirming watchers connected at that moment, no others.
3. Each of them withdraws its route, sees its proxy acknowledge that, and calls ``confirm(watcher, key)``.
   A watcher whose stream ends (or is replaced by a newer stream with the same id) is released from the wait:
   a daemon that lost its stream routes again only what its next stream reports loaded.
4. The wait ends when no watcher is left to confirm, or after ``timeout_s``: then a warning names the watchers
   that did not confirm and the unload goes on. A hung daemon delays evictions; it never stops them.

Confirmations are counted per version and connection. One that arrives while no wait for that version is in
progress (before the wait began: the watcher acts on the ``unloading`` event, published first) is kept for
``early_s`` and counted by the next wait for that version. One that arrives after its wait gave up on the
watcher is late: it is dropped, not kept for a later unload of the same version.

Pure asyncio: no gRPC, no sleeps; the clock (for the age of early confirmations) is passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tfscachectl.core.refs import ModelKey

log = logging.getLogger(__name__)

#: How long a confirmation that came before its wait began is kept for it, in seconds.
EARLY_CONFIRMATION_SECONDS = 2.0


@dataclass(eq=False)
class WatcherConnection:
    """One residency stream of a watcher, from its start to its end (compared by identity)."""

    watcher: str
    confirms: bool
    #: versions this connection confirmed while no wait for them was in progress -> when (gate clock)
    early: dict[ModelKey, float] = field(default_factory=dict)
    #: versions whose wait gave up on this connection: a confirmation of one of them is late
    overdue: set[ModelKey] = field(default_factory=set)


@dataclass(eq=False)
class _Wait:
    """One ``before_unload``: the connections it still waits for."""

    key: ModelKey
    pending: set[WatcherConnection]
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self, connection: WatcherConnection) -> bool:
        """Stop waiting for ``connection``; true if it was waited for."""
        if connection not in self.pending:
            return False
        self.pending.discard(connection)
        if not self.pending:
            self.settled.set()
        return True


class WatcherGate:
    """The ``UnloadGate`` of ``NodeAgent`` (``tfscachectl.agent.node``) for watchers over the agent's API."""

    def __init__(
        self,
        timeout_s: float,
        early_s: float = EARLY_CONFIRMATION_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout_s < 0 or early_s < 0:
            raise ValueError("the unload gate's timeouts cannot be negative")
        self.timeout_s = timeout_s
        self.early_s = early_s
        self._now = clock
        self._connections: dict[str, WatcherConnection] = {}
        self._waits: dict[ModelKey, list[_Wait]] = {}

    # ----- watchers -----------------------------------------------------------------------------

    def connect(self, watcher: str, confirms: bool) -> WatcherConnection:
        """A stream of ``watcher`` starts; it replaces a stream of the same id still connected."""
        old = self._connections.get(watcher)
        if old is not None:
            log.info("unload_watcher_replaced watcher=%s", watcher)
            self._release(old)
        connection = WatcherConnection(watcher, confirms)
        self._connections[watcher] = connection
        log.info("unload_watcher_connected watcher=%s confirms=%s", watcher, str(confirms).lower())
        return connection

    def disconnect(self, connection: WatcherConnection) -> None:
        """The stream ``connection`` ended: no wait waits for it any longer."""
        if self._connections.get(connection.watcher) is connection:
            del self._connections[connection.watcher]
            log.info("unload_watcher_disconnected watcher=%s", connection.watcher)
        self._release(connection)

    @contextlib.contextmanager
    def watching(self, watcher: str, confirms: bool) -> Iterator[WatcherConnection]:
        """``connect`` for the life of a stream, ``disconnect`` when it ends (also on cancellation)."""
        connection = self.connect(watcher, confirms)
        try:
            yield connection
        finally:
            self.disconnect(connection)

    def watchers(self) -> dict[str, bool]:
        """The connected watchers: id -> whether unloads wait for it."""
        return {w: c.confirms for w, c in self._connections.items()}

    def _release(self, connection: WatcherConnection) -> None:
        for waits in self._waits.values():
            for wait in waits:
                wait.release(connection)
        connection.early.clear()
        connection.overdue.clear()

    # ----- confirmations ------------------------------------------------------------------------

    def confirm(self, watcher: str, key: ModelKey) -> bool:
        """``watcher`` no longer routes to ``key``; true if an unload was waiting for that."""
        connection = self._connections.get(watcher)
        if connection is None or not connection.confirms:
            log.debug("unload_confirmation_ignored watcher=%s model=%s reason=not_confirming", watcher, key)
            return False
        waits = self._waits.get(key, [])
        awaited = [wait.release(connection) for wait in waits]
        if any(awaited):
            log.debug("unload_confirmed watcher=%s model=%s", watcher, key)
            return True
        if key in connection.overdue:
            connection.overdue.discard(key)
            log.info("unload_confirmed_late watcher=%s model=%s", watcher, key)
            return False
        if not waits:  # the wait for it has not begun yet: keep it for that wait
            now = self._now()
            connection.early = {k: at for k, at in connection.early.items() if now - at <= self.early_s}
            connection.early[key] = now
            log.debug("unload_confirmed_early watcher=%s model=%s", watcher, key)
        return False

    # ----- the gate -----------------------------------------------------------------------------

    def pending(self, key: ModelKey) -> tuple[str, ...]:
        """The watchers the unload of ``key`` is waiting for (none when no unload of it is waiting)."""
        return tuple(sorted({c.watcher for wait in self._waits.get(key, []) for c in wait.pending}))

    async def before_unload(self, key: ModelKey) -> None:
        """Wait until every confirming watcher connected now has confirmed ``key`` or gone, or the timeout."""
        now = self._now()
        pending: set[WatcherConnection] = set()
        for connection in self._connections.values():
            if not connection.confirms:
                continue
            connection.overdue.discard(key)  # a confirmation from now on is for this unload
            confirmed_at = connection.early.pop(key, None)
            if confirmed_at is None or now - confirmed_at > self.early_s:
                pending.add(connection)
        if not pending:
            return
        wait = _Wait(key, pending)
        self._waits.setdefault(key, []).append(wait)
        started = now
        try:
            async with asyncio.timeout(self.timeout_s):
                await wait.settled.wait()
        except TimeoutError:
            names = sorted(c.watcher for c in wait.pending)
            log.warning(
                "unload_gate_timeout model=%s seconds=%g unconfirmed=%s: unloading anyway",
                key,
                self.timeout_s,
                ",".join(names),
            )
            for connection in wait.pending:
                connection.overdue.add(key)
        else:
            log.debug("unload_gate_open model=%s seconds=%.3f", key, self._now() - started)
        finally:
            waits = self._waits[key]
            waits.remove(wait)
            if not waits:
                del self._waits[key]
