"""Single flight: one piece of work per key, shared outcome, forgotten when done, no global lock.

The bookkeeping is tested synchronously; the asynchronous part with ``asyncio.run`` and events (no sleeps,
no polling).
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tfscachectl.core.singleflight import Abandoned, Failed, SingleFlight, Succeeded, Ticket
from tfscachectl.errors import Code, ServingError

# -- synchronous bookkeeping --------------------------------------------------------------------------


def test_first_caller_leads_later_callers_join() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    first = flights.join("m")
    second = flights.join("m")
    assert first.leader
    assert not second.leader
    assert first.flight is second.flight
    assert first.flight.callers == 2
    assert "m" in flights
    assert flights.in_flight() == {"m"}


def test_different_keys_fly_independently() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    a = flights.join("a")
    b = flights.join("b")
    assert a.leader
    assert b.leader
    assert a.flight is not b.flight
    flights.complete(a.flight, 1)
    assert flights.in_flight() == {"b"}


def test_everyone_gets_the_same_value_and_the_flight_is_forgotten() -> None:
    flights: SingleFlight[str, object] = SingleFlight()
    ticket = flights.join("m")
    flights.join("m")
    value = object()
    flights.complete(ticket.flight, value)
    assert ticket.flight.result() is value
    assert ticket.flight.outcome == Succeeded(value)
    assert "m" not in flights
    assert len(flights) == 0
    assert flights.join("m").leader  # a later ensure starts afresh


def test_everyone_gets_the_same_exception_and_the_next_caller_retries() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    ticket = flights.join("m")
    error = ServingError(Code.NOT_FOUND, "no such model")
    flights.fail(ticket.flight, error)
    assert ticket.flight.outcome == Failed(error)
    for _ in range(2):
        with pytest.raises(ServingError) as info:
            ticket.flight.result()
        assert info.value is error
    assert flights.get("m") is None
    assert flights.join("m").leader


def test_a_flight_ends_once() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    ticket = flights.join("m")
    with pytest.raises(ValueError, match="has not ended"):
        ticket.flight.result()
    flights.complete(ticket.flight, 1)
    with pytest.raises(ValueError, match="already ended"):
        flights.fail(ticket.flight, RuntimeError("late"))
    assert ticket.flight.result() == 1


def test_ending_a_stale_flight_leaves_the_new_one_alone() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    old = flights.join("m").flight
    flights.abandon(old)
    new = flights.join("m").flight
    assert old.outcome == Abandoned()
    with pytest.raises(ServingError, match="abandoned") as info:
        old.result()
    assert info.value.code is Code.ABORTED
    assert flights.get("m") is new
    assert not new.done
    assert "in flight" in repr(new)


@given(st.lists(st.sampled_from("abc"), max_size=30))
def test_exactly_one_leader_per_key_in_flight(keys: list[str]) -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    leaders = [key for key in keys if flights.join(key).leader]
    assert sorted(leaders) == sorted(set(keys))
    for key in set(keys):
        flight = flights.get(key)
        assert flight is not None
        assert flight.callers == keys.count(key)


# -- asynchronous use ---------------------------------------------------------------------------------


class Work:
    """Work that counts its runs and ends only when the test lets it (no sleeps)."""

    def __init__(self, value: int = 7, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error
        self.runs = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> int:
        self.runs += 1
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.value


class WatchedFlights(SingleFlight[str, int]):
    """A SingleFlight that lets a test wait (on an event, no polling) until enough callers have joined."""

    def __init__(self) -> None:
        super().__init__()
        self.joins = 0
        self._expected = 0
        self._enough = asyncio.Event()

    def join(self, key: str) -> Ticket[str, int]:
        ticket = super().join(key)
        self.joins += 1
        if self.joins >= self._expected:
            self._enough.set()
        return ticket

    async def joined(self, count: int) -> None:
        """Until ``count`` joins in all; each caller that joined is parked on its flight by then."""
        self._expected = count
        if self.joins < count:
            self._enough.clear()
            await self._enough.wait()


def test_concurrent_runs_share_one_piece_of_work() -> None:
    async def scenario() -> None:
        flights = WatchedFlights()
        work = Work(value=42)
        tasks = [asyncio.create_task(flights.run("m", work)) for _ in range(5)]
        await flights.joined(5)
        work.release.set()
        assert await asyncio.gather(*tasks) == [42] * 5
        assert work.runs == 1
        assert len(flights) == 0

    asyncio.run(scenario())


def test_a_failure_reaches_every_caller_and_the_next_run_retries() -> None:
    async def scenario() -> None:
        flights = WatchedFlights()
        error = ServingError(Code.INTERNAL, "load failed")
        failing = Work(error=error)
        tasks = [asyncio.create_task(flights.run("m", failing)) for _ in range(3)]
        await flights.joined(3)
        failing.release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(result is error for result in results)
        assert failing.runs == 1
        retry = Work(value=1)
        retry.release.set()
        assert await flights.run("m", retry) == 1
        assert retry.runs == 1

    asyncio.run(scenario())


def test_different_models_load_in_parallel() -> None:
    async def scenario() -> None:
        flights: SingleFlight[str, int] = SingleFlight()
        slow, fast = Work(value=1), Work(value=2)
        slow_task = asyncio.create_task(flights.run("slow", slow))
        fast_task = asyncio.create_task(flights.run("fast", fast))
        await slow.started.wait()
        await fast.started.wait()  # both are running at once: nothing serializes them
        fast.release.set()
        assert await fast_task == 2
        assert not slow_task.done()
        slow.release.set()
        assert await slow_task == 1

    asyncio.run(scenario())


def test_a_cancelled_joiner_does_not_disturb_the_flight() -> None:
    async def scenario() -> None:
        flights = WatchedFlights()
        work = Work(value=5)
        leader = asyncio.create_task(flights.run("m", work))
        joiner = asyncio.create_task(flights.run("m", work))
        other = asyncio.create_task(flights.run("m", work))
        await flights.joined(3)
        joiner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await joiner
        work.release.set()
        assert await leader == 5
        assert await other == 5
        assert work.runs == 1

    asyncio.run(scenario())


def test_a_cancelled_leader_hands_the_work_to_a_joiner() -> None:
    async def scenario() -> None:
        flights = WatchedFlights()
        work = Work(value=9)
        leader = asyncio.create_task(flights.run("m", work))
        await work.started.wait()
        joiner = asyncio.create_task(flights.run("m", work))
        await flights.joined(2)
        work.started.clear()
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        await work.started.wait()  # the joiner leads a new flight and runs the work again
        assert work.runs == 2
        work.release.set()
        assert await joiner == 9
        assert not joiner.cancelled()

    asyncio.run(scenario())


def test_wait_on_a_finished_flight_returns_at_once() -> None:
    async def scenario() -> None:
        flights: SingleFlight[str, int] = SingleFlight()
        ticket = flights.join("m")
        flights.complete(ticket.flight, 3)
        assert await ticket.flight.wait() == 3
        assert await ticket.flight.ended() == Succeeded(3)

    asyncio.run(scenario())


def test_adapter_driven_flight_wakes_its_waiters() -> None:
    async def scenario() -> None:
        flights: SingleFlight[str, int] = SingleFlight()
        ticket = flights.join("m")
        joined = flights.join("m")
        parked = asyncio.Event()

        async def wait_parked() -> int:
            waiting = joined.flight.wait()
            parked.set()  # the task goes on into the wait in this same step
            return await waiting

        waiter = asyncio.create_task(wait_parked())
        await parked.wait()
        assert not waiter.done()
        flights.complete(ticket.flight, 11)
        assert await waiter == 11

    asyncio.run(scenario())
