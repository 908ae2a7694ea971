"""Single flight: concurrent ensures of one model share one fetch and one load.

The first caller for a key starts a *flight* and is its leader; callers that come while it is in the air
join it. When the flight ends, every caller gets the same outcome: the same value, or the same exception
object. A finished flight is forgotten at once, so the next caller after a failure starts a new flight and
tries again. Flights of different keys are independent: there is no lock around the work.

The bookkeeping is synchronous (``join``, ``complete``, ``fail``, ``abandon``, ``Flight.result``) and can be
driven and tested without an event loop. Waiting is the only asynchronous part: ``Flight.wait`` parks the
caller on a future of its own, so cancelling one waiter never disturbs the flight or the other waiters.

``run(key, work)`` is the usual way to use it: the leader awaits ``work()`` and settles the flight with its
outcome. If the leader is cancelled (or interrupted) the flight is *abandoned*, not failed: its joiners do
not inherit someone else's cancellation, they join again and one of them leads a new flight. Work that must
outlive its caller belongs in a task the adapter owns; that adapter then uses ``join``/``complete``/``fail``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from tfscachectl.errors import Code, ServingError

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Succeeded(Generic[T]):
    value: T


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException


@dataclass(frozen=True, slots=True)
class Abandoned:
    """The leader went away (cancelled) before the work ended; joiners should join again."""


Outcome: TypeAlias = Succeeded[T] | Failed | Abandoned


class Flight(Generic[K, T]):
    """One piece of work for ``key``, shared by everyone who asked for it while it ran."""

    def __init__(self, key: K) -> None:
        self.key = key
        self.callers = 1
        self._outcome: Outcome[T] | None = None
        self._waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        state = "in flight" if self._outcome is None else type(self._outcome).__name__.lower()
        return f"<Flight {self.key!r} {state}, {self.callers} caller(s)>"

    @property
    def done(self) -> bool:
        return self._outcome is not None

    @property
    def outcome(self) -> Outcome[T] | None:
        """The outcome once the flight ended, else ``None``."""
        return self._outcome

    def result(self) -> T:
        """The value, or raise the flight's exception (the same object for every caller).

        An abandoned flight raises ``ServingError(ABORTED)``; ``run`` never lets that reach its callers.
        """
        outcome = self._outcome
        if outcome is None:
            raise ValueError(f"flight for {self.key!r} has not ended")
        if isinstance(outcome, Succeeded):
            return outcome.value
        if isinstance(outcome, Failed):
            raise outcome.error
        raise ServingError(Code.ABORTED, f"the work for {self.key} was abandoned by the caller that led it")

    async def ended(self) -> Outcome[T]:
        """Wait for the end of the flight and return its outcome. Cancelling a waiter affects only it."""
        if self._outcome is None:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        assert self._outcome is not None
        return self._outcome

    async def wait(self) -> T:
        """Wait until the flight ends; return its value or raise its exception."""
        await self.ended()
        return self.result()

    def _settle(self, outcome: Outcome[T]) -> None:
        if self._outcome is not None:
            raise ValueError(f"flight for {self.key!r} has already ended")
        self._outcome = outcome
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


@dataclass(frozen=True, slots=True)
class Ticket(Generic[K, T]):
    """What ``join`` hands a caller: the flight, and whether this caller leads it (must do the work)."""

    flight: Flight[K, T]
    leader: bool


class SingleFlight(Generic[K, T]):
    """The flights in the air, one per key at most."""

    def __init__(self) -> None:
        self._flights: dict[K, Flight[K, T]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._flights

    def __len__(self) -> int:
        return len(self._flights)

    def get(self, key: K) -> Flight[K, T] | None:
        """The flight in the air for ``key``, if any."""
        return self._flights.get(key)

    def in_flight(self) -> frozenset[K]:
        """Every key with a flight in the air."""
        return frozenset(self._flights)

    def join(self, key: K) -> Ticket[K, T]:
        """Join the flight for ``key``, or start one (and lead it) if none is in the air."""
        flight = self._flights.get(key)
        if flight is not None:
            flight.callers += 1
            return Ticket(flight, leader=False)
        flight = Flight(key)
        self._flights[key] = flight
        return Ticket(flight, leader=True)

    def complete(self, flight: Flight[K, T], value: T) -> None:
        """End ``flight`` with ``value`` for every caller, and forget it."""
        self._end(flight, Succeeded(value))

    def fail(self, flight: Flight[K, T], error: BaseException) -> None:
        """End ``flight`` with ``error`` (raised to every caller); forget it so the next caller retries."""
        self._end(flight, Failed(error))

    def abandon(self, flight: Flight[K, T]) -> None:
        """End ``flight`` without an outcome (its leader went away), and forget it."""
        self._end(flight, Abandoned())

    def _end(self, flight: Flight[K, T], outcome: Outcome[T]) -> None:
        if flight.done:
            raise ValueError(f"flight for {flight.key!r} has already ended")
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
        flight._settle(outcome)

    async def run(self, key: K, work: Callable[[], Awaitable[T]]) -> T:
        """``work()`` once for all concurrent callers of ``key``; everyone gets its value or its exception."""
        while True:
            ticket = self.join(key)
            flight = ticket.flight
            if ticket.leader:
                return await self._lead(flight, work)
            outcome = await flight.ended()
            if not isinstance(outcome, Abandoned):
                return flight.result()

    async def _lead(self, flight: Flight[K, T], work: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await work()
        except Exception as exc:
            self.fail(flight, exc)
            raise
        except BaseException:
            # Cancellation (or an interrupt) of the leader is not the joiners' outcome.
            self.abandon(flight)
            raise
        self.complete(flight, value)
        return value
