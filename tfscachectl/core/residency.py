"""The in-memory tier of one node: which model versions its TF Serving holds, and what to evict for a new one.

Each entry is a model version in one of three states::

    absent --start_loading--> LOADING --loaded--> RESIDENT --start_unloading--> UNLOADING --unloaded--> absent
    LOADING --load_failed--> absent                  UNLOADING --unload_failed--> RESIDENT

Every state counts against the capacity (``max_models`` and ``max_bytes``): a model takes its room from
the moment its load starts until its unload has ended. So a newcomer that needs an eviction can start
loading only once that eviction has ended; ``plan_admission`` says which evictions to start and which
to wait for, and the adapter plans again when they end (or when anything else changes).

The adapter's ensure of a model with no entry, in short: ``plan_admission``; on ``NoCapacity`` fail at
once if ``permanent``, else wait for a change (or ``retry_at``) up to the request's deadline and plan
again, then fail with ``NoCapacity.error()``; on ``Admit``, ``start_unloading`` each of ``evict`` (route
withdrawn first, then unloaded), and if ``ready`` ``start_loading``, else wait for those ends and plan again.

An entry may be evicted only when it is RESIDENT, not pinned, and outside its guard window (ensured or
loaded less than ``guard_window`` seconds ago). Pins are operator intent and outlive entries: a model may
be pinned before it is loaded, and stays pinned after it is unloaded.

This is a pure state machine: no clock (every time is a ``now`` argument), no I/O, no locks. Misuse by the
adapter (a transition from the wrong state, a load that would exceed the capacity) raises ``ValueError``;
those are bugs, not conditions to report to clients.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

from tfscachectl.core.eviction import (
    DEFAULT_GUARD_WINDOW_SECONDS,
    Admit,
    Candidate,
    Decision,
    Need,
    NoCapacity,
    choose_victims,
    describe_blockers,
    format_bytes,
    guard_ends,
    is_guarded,
)
from tfscachectl.core.refs import ModelKey
from tfscachectl.errors import ConfigError


class ResidencyState(enum.Enum):
    """Where a model version is in its life on one TF Serving instance."""

    LOADING = "loading"
    RESIDENT = "resident"
    UNLOADING = "unloading"


@dataclass(frozen=True, slots=True)
class Usage:
    """What the entries take: a number of models and a number of (estimated) bytes."""

    models: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Capacity:
    """The budget of one node: at most ``max_models`` models and ``max_bytes`` bytes (``None``: no limit)."""

    max_models: int | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_models is not None and self.max_models < 1:
            raise ConfigError(f"max_models must be at least 1, not {self.max_models}")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise ConfigError(f"max_bytes must be at least 1, not {self.max_bytes}")

    def holds(self, usage: Usage) -> bool:
        """Whether ``usage`` is within this capacity."""
        return self.shortfall(usage).met

    def shortfall(self, usage: Usage) -> Need:
        """How much must be freed for ``usage`` to fit."""
        models = 0 if self.max_models is None else usage.models - self.max_models
        size = 0 if self.max_bytes is None else usage.bytes - self.max_bytes
        return Need(max(models, 0), max(size, 0))

    def describe(self, usage: Usage) -> str:
        """``"4 of 4 models, 3.0 GiB of 4.0 GiB"``."""
        parts = []
        if self.max_models is not None:
            parts.append(f"{usage.models} of {self.max_models} models")
        if self.max_bytes is not None:
            parts.append(f"{format_bytes(usage.bytes)} of {format_bytes(self.max_bytes)}")
        return ", ".join(parts) if parts else "no limit"


@dataclass(frozen=True, slots=True)
class Entry:
    """One model version on the node, as the residency sees it.

    ``last_used``: the latest hit (ensure, request, or the end of its load), for LRU.
    ``guard_from``: the latest ensure or the end of its load; the guard window runs from here.
    ``hits``: ensures and requests counted so far (``start_loading`` counts none).
    """

    key: ModelKey
    size_bytes: int
    state: ResidencyState
    last_used: float
    guard_from: float
    pinned: bool = False
    hits: int = 0

    def guarded(self, now: float, guard_window: float) -> bool:
        """Whether this entry is still inside its guard window at ``now``."""
        return is_guarded(self.guard_from, now, guard_window)

    def candidate(self) -> Candidate:
        return Candidate(self.key, self.size_bytes, self.last_used)


def _check_time(now: float) -> None:
    if not math.isfinite(now):
        raise ValueError(f"time must be a finite number, not {now!r}")


def _check_size(size_bytes: int) -> None:
    if size_bytes < 0:
        raise ValueError(f"size must not be negative, not {size_bytes}")


class Residency:
    """The models of one node, their states, pins and recency; plans admissions and evictions."""

    def __init__(self, capacity: Capacity, guard_window: float = DEFAULT_GUARD_WINDOW_SECONDS) -> None:
        if not math.isfinite(guard_window) or guard_window < 0:
            raise ConfigError(f"guard window must be a non-negative number of seconds, not {guard_window!r}")
        self._capacity = capacity
        self._guard_window = guard_window
        self._entries: dict[ModelKey, Entry] = {}
        self._pins: set[ModelKey] = set()

    # -- reading ---------------------------------------------------------------------------------------

    @property
    def capacity(self) -> Capacity:
        return self._capacity

    @property
    def guard_window(self) -> float:
        return self._guard_window

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def get(self, key: ModelKey) -> Entry | None:
        return self._entries.get(key)

    def entries(self) -> tuple[Entry, ...]:
        """Every entry, ordered by key."""
        return tuple(self._entries[key] for key in sorted(self._entries))

    def pins(self) -> frozenset[ModelKey]:
        """Every pinned key, loaded or not."""
        return frozenset(self._pins)

    def usage(self) -> Usage:
        """What all entries take, whatever their state."""
        return Usage(len(self._entries), sum(e.size_bytes for e in self._entries.values()))

    def evictable(self, entry: Entry, now: float) -> bool:
        """Whether ``entry`` may be chosen as a victim at ``now``."""
        return (
            entry.state is ResidencyState.RESIDENT
            and not entry.pinned
            and not entry.guarded(now, self._guard_window)
        )

    # -- planning --------------------------------------------------------------------------------------

    def plan_admission(self, key: ModelKey, size_bytes: int, now: float) -> Decision:
        """Whether model ``key`` of ``size_bytes`` may start loading, and what must be evicted first.

        ``key`` must not have an entry: a model being unloaded is admitted again once its unload ended.
        Nothing changes here; the adapter carries the decision out with the transitions below.
        """
        _check_time(now)
        _check_size(size_bytes)
        if key in self._entries:
            raise ValueError(f"model {key} is already {self._entries[key].state.value}")
        subject = f"model {key} ({format_bytes(size_bytes)})"
        max_bytes = self._capacity.max_bytes
        if max_bytes is not None and size_bytes > max_bytes:
            return NoCapacity(
                f"{subject} is larger than the memory budget of this node ({format_bytes(max_bytes)})",
                permanent=True,
            )
        return self._plan(Usage(1, size_bytes), subject, now)

    def plan_trim(self, now: float) -> Decision:
        """What to evict to bring the node back within its capacity (after ``resize``)."""
        _check_time(now)
        return self._plan(Usage(), "the models on this node", now)

    def _plan(self, extra: Usage, subject: str, now: float) -> Decision:
        usage = self.usage()
        need = self._capacity.shortfall(Usage(usage.models + extra.models, usage.bytes + extra.bytes))
        if need.met:
            return Admit()
        unloading = [e.candidate() for e in self.entries() if e.state is ResidencyState.UNLOADING]
        enough_unloading = choose_victims(unloading, need)
        if enough_unloading is not None:
            return Admit(awaiting=enough_unloading)
        candidates = [e.candidate() for e in self.entries() if self.evictable(e, now)]
        victims = choose_victims(candidates, need.after(unloading))
        if victims is None:
            return self._no_capacity(subject, now)
        return Admit(evict=victims, awaiting=tuple(c.key for c in unloading))

    def _no_capacity(self, subject: str, now: float) -> NoCapacity:
        entries = self.entries()
        pinned = [e for e in entries if e.pinned and e.state is not ResidencyState.UNLOADING]
        loading = [e for e in entries if not e.pinned and e.state is ResidencyState.LOADING]
        unloading = [e for e in entries if e.state is ResidencyState.UNLOADING]
        guarded = [
            e
            for e in entries
            if e.state is ResidencyState.RESIDENT and not e.pinned and e.guarded(now, self._guard_window)
        ]
        blockers = describe_blockers(
            [
                ("pinned", len(pinned)),
                ("loading", len(loading)),
                ("being unloaded", len(unloading)),
                (f"ensured or loaded in the last {self._guard_window:g} s", len(guarded)),
            ]
        )
        reason = (
            f"{subject} does not fit in this node's memory ({self._capacity.describe(self.usage())} in use), "
            f"and evicting every model that may be evicted would not make room (held: {blockers})"
        )
        retry_at = min((guard_ends(e.guard_from, self._guard_window) for e in guarded), default=None)
        return NoCapacity(reason, retry_at=retry_at)

    # -- transitions -----------------------------------------------------------------------------------

    def start_loading(self, key: ModelKey, size_bytes: int, now: float) -> Entry:
        """A load of ``key`` starts: it takes its room now. Only when ``plan_admission`` said ``ready``."""
        _check_time(now)
        _check_size(size_bytes)
        if key in self._entries:
            raise ValueError(f"model {key} is already {self._entries[key].state.value}")
        usage = self.usage()
        if not self._capacity.holds(Usage(usage.models + 1, usage.bytes + size_bytes)):
            raise ValueError(f"loading model {key} now would exceed the capacity; plan its admission first")
        entry = Entry(
            key, size_bytes, ResidencyState.LOADING, last_used=now, guard_from=now, pinned=key in self._pins
        )
        self._entries[key] = entry
        return entry

    def loaded(self, key: ModelKey, now: float) -> Entry:
        """The load of ``key`` ended well: it is resident, freshly used and guarded from ``now``."""
        _check_time(now)
        entry = self._expect(key, ResidencyState.LOADING)
        return self._put(
            replace(
                entry,
                state=ResidencyState.RESIDENT,
                last_used=max(entry.last_used, now),
                guard_from=max(entry.guard_from, now),
            )
        )

    def load_failed(self, key: ModelKey) -> None:
        """The load of ``key`` failed: its room is free again."""
        self._expect(key, ResidencyState.LOADING)
        del self._entries[key]

    def start_unloading(self, key: ModelKey) -> Entry:
        """An eviction of resident ``key`` starts; it keeps its room until ``unloaded``. Never if pinned."""
        entry = self._expect(key, ResidencyState.RESIDENT)
        if entry.pinned:
            raise ValueError(f"model {key} is pinned; unpin it before unloading it")
        return self._put(replace(entry, state=ResidencyState.UNLOADING))

    def unload_failed(self, key: ModelKey) -> Entry:
        """The unload of ``key`` did not happen: it is resident again."""
        entry = self._expect(key, ResidencyState.UNLOADING)
        return self._put(replace(entry, state=ResidencyState.RESIDENT))

    def unloaded(self, key: ModelKey) -> None:
        """The unload of ``key`` ended: its room is free."""
        self._expect(key, ResidencyState.UNLOADING)
        del self._entries[key]

    # -- recency, pins, sizes --------------------------------------------------------------------------

    def touch(self, key: ModelKey, now: float, hits: int = 1) -> bool:
        """``hits`` requests used ``key`` at ``now`` (also recency reported from outside, possibly late).

        Returns False when ``key`` has no entry (a report about a model already gone is not an error).
        """
        _check_time(now)
        if hits < 0:
            raise ValueError(f"hits must not be negative, not {hits}")
        entry = self._entries.get(key)
        if entry is None:
            return False
        self._put(replace(entry, last_used=max(entry.last_used, now), hits=entry.hits + hits))
        return True

    def ensured(self, key: ModelKey, now: float) -> bool:
        """An ensure of ``key`` at ``now``: a hit that also restarts its guard window. False if absent."""
        _check_time(now)
        entry = self._entries.get(key)
        if entry is None:
            return False
        self._put(
            replace(
                entry,
                last_used=max(entry.last_used, now),
                guard_from=max(entry.guard_from, now),
                hits=entry.hits + 1,
            )
        )
        return True

    def pin(self, key: ModelKey) -> None:
        """Never evict ``key`` (loaded now or later) until it is unpinned."""
        self._pins.add(key)
        self._set_pinned(key, pinned=True)

    def unpin(self, key: ModelKey) -> None:
        """Let ``key`` be evicted again; unpinning a key that is not pinned does nothing."""
        self._pins.discard(key)
        self._set_pinned(key, pinned=False)

    def resize(self, key: ModelKey, size_bytes: int) -> Entry:
        """Replace the estimated size of ``key`` with a measured one.

        A larger measure may put the node over its budget; ``plan_trim`` then says what to evict.
        """
        _check_size(size_bytes)
        entry = self._entries.get(key)
        if entry is None:
            raise ValueError(f"model {key} has no entry to resize")
        return self._put(replace(entry, size_bytes=size_bytes))

    # -- internals -------------------------------------------------------------------------------------

    def _set_pinned(self, key: ModelKey, *, pinned: bool) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            self._put(replace(entry, pinned=pinned))

    def _expect(self, key: ModelKey, state: ResidencyState) -> Entry:
        entry = self._entries.get(key)
        if entry is None:
            raise ValueError(f"model {key} has no entry (expected it {state.value})")
        if entry.state is not state:
            raise ValueError(f"model {key} is {entry.state.value}, not {state.value}")
        return entry

    def _put(self, entry: Entry) -> Entry:
        self._entries[entry.key] = entry
        return entry
