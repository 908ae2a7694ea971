"""The unload gate (``WatcherGate``): which watchers an unload waits for, and when it stops waiting.

Pure asyncio, no sockets: each scenario runs with ``asyncio.run`` and steps by events, never by sleeps (the
only waits that run out are the gate's own timeouts, a few tens of milliseconds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from tfscachectl.agent.gate import WatcherGate
from tfscachectl.core.refs import ModelKey

T = TypeVar("T")

A = ModelKey("tenant-a", 1)
B = ModelKey("tenant-b", 1)
LONG_S = 30.0  # a gate timeout no test reaches: a wait that ends did so because it was released
SHORT_S = 0.05  # a gate timeout a test does reach
SCENARIO_S = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), SCENARIO_S)

    return asyncio.run(bounded())


async def started(gate: WatcherGate, key: ModelKey) -> asyncio.Task[None]:
    """``before_unload(key)`` as a task that has begun waiting."""
    task = asyncio.create_task(gate.before_unload(key))
    await asyncio.sleep(0)  # one step: the task runs up to its wait (or to its end)
    return task


def test_no_watcher_opens_at_once() -> None:
    async def scenario() -> bool:
        gate = WatcherGate(LONG_S)
        task = await started(gate, A)
        return task.done()

    assert run(scenario)


def test_waits_for_every_confirming_watcher() -> None:
    async def scenario() -> list[bool]:
        gate = WatcherGate(LONG_S)
        steps: list[bool] = []
        with gate.watching("daemon-1", confirms=True), gate.watching("daemon-2", confirms=True):
            task = await started(gate, A)
            steps.append(task.done())
            assert gate.pending(A) == ("daemon-1", "daemon-2")
            steps.append(gate.confirm("daemon-1", A))
            await asyncio.sleep(0)
            steps.append(task.done())
            assert gate.pending(A) == ("daemon-2",)
            steps.append(gate.confirm("daemon-2", A))
            await task
            steps.append(gate.pending(A) == ())
        return steps

    assert run(scenario) == [False, True, False, True, True]


def test_a_confirmation_of_another_version_does_not_count() -> None:
    async def scenario() -> tuple[bool, bool]:
        gate = WatcherGate(LONG_S)
        with gate.watching("daemon-1", confirms=True):
            task = await started(gate, A)
            gate.confirm("daemon-1", B)
            await asyncio.sleep(0)
            still_waiting = not task.done()
            gate.confirm("daemon-1", A)
            await task
            return still_waiting, task.done()

    assert run(scenario) == (True, True)


def test_non_confirming_watchers_are_not_waited_for() -> None:
    async def scenario() -> tuple[bool, bool]:
        gate = WatcherGate(LONG_S)
        with gate.watching("cli", confirms=False):
            task = await started(gate, A)
            return task.done(), gate.confirm("cli", A)

    assert run(scenario) == (True, False)


def test_a_watcher_that_disconnects_releases_the_wait() -> None:
    async def scenario() -> tuple[bool, bool, dict[str, bool]]:
        gate = WatcherGate(LONG_S)
        with gate.watching("daemon-1", confirms=True):
            with gate.watching("daemon-2", confirms=True):
                task = await started(gate, A)
                gate.confirm("daemon-1", A)
            # daemon-2's stream ended without confirming
            await task
            return task.done(), gate.confirm("daemon-2", A), gate.watchers()

    done, late, watchers = run(scenario)
    assert done
    assert not late  # gone: its confirmation counts for nothing
    assert watchers == {"daemon-1": True}


def test_only_watchers_connected_when_the_wait_began_are_waited_for() -> None:
    async def scenario() -> tuple[bool, bool]:
        gate = WatcherGate(LONG_S)
        with gate.watching("daemon-1", confirms=True):
            task = await started(gate, A)
            with gate.watching("daemon-2", confirms=True):
                gate.confirm("daemon-1", A)
                await task
                return task.done(), gate.confirm("daemon-2", A)

    assert run(scenario) == (True, False)


def test_a_new_stream_with_the_same_id_replaces_the_old_one() -> None:
    async def scenario() -> tuple[bool, bool]:
        gate = WatcherGate(LONG_S)
        with gate.watching("daemon-1", confirms=True):
            task = await started(gate, A)
            # the daemon reconnects before the agent noticed that its old stream broke: the old stream is
            # gone (released), and the new one was not connected when the wait began
            with gate.watching("daemon-1", confirms=True):
                await task
                return task.done(), gate.confirm("daemon-1", A)

    assert run(scenario) == (True, False)


def test_replaced_stream_ending_keeps_the_new_one() -> None:
    gate = WatcherGate(LONG_S)
    old = gate.connect("daemon-1", confirms=True)
    new = gate.connect("daemon-1", confirms=True)
    gate.disconnect(old)
    assert gate.watchers() == {"daemon-1": True}
    gate.disconnect(new)
    assert gate.watchers() == {}


def test_timeout_returns_and_names_the_silent_watchers(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        gate = WatcherGate(SHORT_S)
        with (
            gate.watching("daemon-1", confirms=True),
            gate.watching("daemon-2", confirms=True),
            gate.watching("daemon-3", confirms=True),
        ):
            task = await started(gate, A)
            gate.confirm("daemon-2", A)
            await task  # never raises
            assert gate.pending(A) == ()

    with caplog.at_level(logging.WARNING, logger="tfscachectl.agent.gate"):
        run(scenario)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unload_gate_timeout" in warnings[0]
    assert f"model={A}" in warnings[0]
    assert "unconfirmed=daemon-1,daemon-3" in warnings[0]


def test_zero_timeout_does_not_wait() -> None:
    async def scenario() -> None:
        gate = WatcherGate(0.0)
        with gate.watching("daemon-1", confirms=True):
            await gate.before_unload(A)

    run(scenario)


def test_a_late_confirmation_is_not_kept_for_the_next_unload() -> None:
    async def scenario() -> tuple[bool, bool]:
        gate = WatcherGate(SHORT_S)
        with gate.watching("daemon-1", confirms=True):
            await gate.before_unload(A)  # times out
            late = gate.confirm("daemon-1", A)
            # the version is loaded again and evicted again: this unload waits for a new confirmation
            task = await started(gate, A)
            waits = not task.done()
            gate.confirm("daemon-1", A)
            await task
            return late, waits

    assert run(scenario) == (False, True)


def test_an_early_confirmation_counts() -> None:
    """The watcher learns of the unload from the ``unloading`` event, published before the wait begins."""

    async def scenario() -> tuple[bool, bool]:
        gate = WatcherGate(LONG_S)
        with gate.watching("daemon-1", confirms=True), gate.watching("daemon-2", confirms=True):
            early = gate.confirm("daemon-1", A)  # before before_unload(A) began
            task = await started(gate, A)
            assert gate.pending(A) == ("daemon-2",)
            gate.confirm("daemon-2", A)
            await task
            return early, task.done()

    assert run(scenario) == (False, True)


def test_an_early_confirmation_counts_once() -> None:
    async def scenario() -> bool:
        gate = WatcherGate(LONG_S)
        with gate.watching("daemon-1", confirms=True):
            gate.confirm("daemon-1", A)
            await gate.before_unload(A)  # opens at once: already confirmed
            task = await started(gate, A)  # the next unload of the same version waits again
            waits = not task.done()
            gate.confirm("daemon-1", A)
            await task
            return waits

    assert run(scenario)


def test_an_early_confirmation_expires() -> None:
    async def scenario() -> tuple[bool, bool]:
        clock = FakeClock()
        gate = WatcherGate(LONG_S, early_s=2.0, clock=clock)
        with gate.watching("daemon-1", confirms=True):
            gate.confirm("daemon-1", A)
            clock.now += 2.5
            task = await started(gate, A)
            waits = not task.done()
            gate.confirm("daemon-1", A)
            await task
            return waits, task.done()

    assert run(scenario) == (True, True)


def test_an_early_confirmation_ends_with_its_stream() -> None:
    async def scenario() -> bool:
        gate = WatcherGate(LONG_S)
        with gate.watching("daemon-1", confirms=True):
            gate.confirm("daemon-1", A)
        with gate.watching("daemon-1", confirms=True):
            task = await started(gate, A)
            waits = not task.done()
            task.cancel()
        return waits

    assert run(scenario)


def test_unknown_watchers_confirm_nothing() -> None:
    gate = WatcherGate(LONG_S)
    assert not gate.confirm("nobody", A)


def test_a_cancelled_unload_forgets_its_wait() -> None:
    async def scenario() -> tuple[tuple[str, ...], bool]:
        gate = WatcherGate(LONG_S)
        with gate.watching("daemon-1", confirms=True):
            task = await started(gate, A)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return gate.pending(A), gate.confirm("daemon-1", A)

    pending, awaited = run(scenario)
    assert pending == ()
    assert not awaited


def test_negative_timeouts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        WatcherGate(-1.0)
