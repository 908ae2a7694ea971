"""The supervisor: starts the stack's children tier by tier, waits until each tier is ready, watches them,
and stops them all in reverse order.

- Readiness is polled (fast at first, then backing off), never slept for; a child that exits while its tier
  (or a later one) is starting ends the start with ``ChildExitedError``, and a tier not ready in its time
  with ``NotReadyError``; both carry the tail of the child's log.
- Once everything is ready, the first child to exit brings the stack down (``ChildExitedError``).
- SIGINT or SIGTERM (``StopRequest``) ends a start or the watch quietly; a second one hurries the stop
  (SIGKILL without waiting for the grace period).
- ``stop_all`` stops the tiers last first (the children of a tier together): SIGTERM to each child's
  process group, SIGKILL after the grace period, and waits until every group is empty.
- The state file (``run/stack.json``) names every child while the stack runs, and is removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tfscachectl.errors import ProcessError
from tfscachectl.local.child import Child, ChildSpec
from tfscachectl.local.plan import Tier
from tfscachectl.local.state import StackState, remove_state, write_state

POLL_FIRST_INTERVAL_S = 0.05
POLL_MAX_INTERVAL_S = 0.5
#: Signals that stop the stack.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ChildExitedError(ProcessError):
    """A child of the stack exited (or was killed) while the stack was starting or running."""

    def __init__(self, child: Child) -> None:
        super().__init__(f"{child.describe_exit()}; the stack was stopped")
        self.child_name = child.name
        self.log_path = child.spec.log_path
        self.log_tail = child.log_tail()


class NotReadyError(ProcessError):
    """A child did not become ready in its time."""

    def __init__(self, child: Child, seconds: float) -> None:
        super().__init__(
            f"{child.spec.what} ({child.name}, pid {child.pid}) was not ready after {seconds:g} s; "
            "the stack was stopped"
        )
        self.child_name = child.name
        self.log_path = child.spec.log_path
        self.log_tail = child.log_tail()


class StopRequest:
    """SIGINT/SIGTERM while the stack starts or runs: the first asks for a stop, a second one hurries it."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()
        self.signal: signal.Signals | None = None
        self._installed: list[signal.Signals] = []

    def __call__(self, signum: signal.Signals) -> None:
        if self.requested.is_set():
            self.hurry.set()
            return
        self.signal = signum
        self.requested.set()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self, signum)
            self._installed.append(signum)

    def remove(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in self._installed:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
        self._installed.clear()

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a stop request; true if there is one."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.requested.wait(), timeout)
        return self.requested.is_set()


class Supervisor:
    """The children of one run of the stack."""

    def __init__(
        self,
        *,
        state_file: Path,
        state_dir: Path,
        ports: Sequence[int],
        stop: StopRequest,
        stop_grace: float,
        on_tier_ready: Callable[[Tier, float], None] | None = None,
    ) -> None:
        self._state_file = state_file
        self._state_dir = state_dir
        self.ports = tuple(ports)  # every port of the run, for the state file
        self._stop = stop
        self._grace = stop_grace
        self._on_tier_ready = on_tier_ready
        self._tiers: list[list[Child]] = []
        self._ready = False

    @property
    def children(self) -> list[Child]:
        return [child for tier in self._tiers for child in tier]

    async def run_once(self, spec: ChildSpec, timeout: float, cwd: Path | None = None) -> bool:
        """Run a child to its end (the example model generator). True when it exited with status 0;
        false when a stop was requested first (it is stopped). Raises ``ChildExitedError`` when it failed,
        ``NotReadyError`` when it ran longer than ``timeout``."""
        child = await Child.start(spec, cwd)
        self._tiers.append([child])
        self._write_state()
        try:
            exited = asyncio.ensure_future(child.wait())
            stopped = asyncio.ensure_future(self._stop.requested.wait())
            try:
                await asyncio.wait({exited, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await _cancelled(exited, stopped)
            if child.returncode is None:
                if self._stop.requested.is_set():
                    return False
                raise NotReadyError(child, timeout)
            if child.returncode != 0:
                raise ChildExitedError(child)
            return True
        finally:
            await child.stop(self._grace, self._stop.hurry)
            self._tiers.remove([child])
            self._write_state()

    async def start(self, tiers: Sequence[Tier], cwd: Path | None = None) -> bool:
        """Start every tier in order, each once the previous one is ready. False if a stop was requested."""
        loop = asyncio.get_running_loop()
        for tier in tiers:
            if self._stop.requested.is_set():
                return False
            started_at = loop.time()
            children: list[Child] = []
            self._tiers.append(children)
            for spec in tier.children:
                children.append(await Child.start(spec, cwd))
            self._write_state()
            if not await self._until_ready(children, tier.ready_timeout):
                return False
            if self._on_tier_ready is not None:
                self._on_tier_ready(tier, loop.time() - started_at)
        self._ready = True
        self._write_state()
        return True

    async def watch(self) -> None:
        """Until a stop is requested; raises ``ChildExitedError`` as soon as a child exits."""
        self._raise_if_one_exited()
        exits = [asyncio.ensure_future(child.wait()) for child in self.children]
        stopped = asyncio.ensure_future(self._stop.requested.wait())
        try:
            await asyncio.wait({*exits, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancelled(*exits, stopped)
        self._raise_if_one_exited()

    async def stop_all(self) -> None:
        """Stop every child, the last tier first; each one is attempted even if another fails."""
        errors: list[BaseException] = []
        while self._tiers:
            tier = self._tiers.pop()
            results = await asyncio.gather(
                *(child.stop(self._grace, self._stop.hurry) for child in tier), return_exceptions=True
            )
            errors += [result for result in results if isinstance(result, BaseException)]
            self._write_state()
        remove_state(self._state_file)
        if errors:
            raise ProcessError(f"could not stop every child: {errors[0]}") from errors[0]

    async def _until_ready(self, children: Sequence[Child], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = [child for child in children if child.spec.probe is not None]
        interval = POLL_FIRST_INTERVAL_S
        while True:
            self._raise_if_one_exited()
            if self._stop.requested.is_set():
                return False
            results = await asyncio.gather(*(_probe(child) for child in pending))
            pending = [child for child, ready in zip(pending, results, strict=True) if not ready]
            self._raise_if_one_exited()
            if not pending:
                return True
            if loop.time() >= deadline:
                raise NotReadyError(pending[0], timeout)
            if await self._stop.wait(min(interval, max(0.0, deadline - loop.time()))):
                return False
            interval = min(interval * 2, POLL_MAX_INTERVAL_S)

    def _raise_if_one_exited(self) -> None:
        for child in self.children:
            if child.returncode is not None:
                raise ChildExitedError(child)

    def _write_state(self) -> None:
        state = StackState(
            supervisor_pid=os.getpid(),
            state_dir=str(self._state_dir),
            ready=self._ready,
            ports=self.ports,
            children=tuple(child.record() for child in self.children),
        )
        write_state(self._state_file, state)


async def _probe(child: Child) -> bool:
    assert child.spec.probe is not None
    return await child.spec.probe.ready()


async def _cancelled(*futures: asyncio.Future[Any]) -> None:
    """Cancel ``futures`` and wait until they are done (their own cancellation is not ours)."""
    for future in futures:
        future.cancel()
    await asyncio.gather(*futures, return_exceptions=True)
