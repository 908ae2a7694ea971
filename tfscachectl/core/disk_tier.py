"""The disk tier of one node: model files kept in the local cache, a second LRU by bytes.

A model unloaded from memory keeps its files on disk, so loading it again needs no fetch from the store.
When a fetch needs room, the least-recently-used cached models are deleted, no more than needed. Each
entry is a model version in one of three states::

    (absent) --start_fetch--> FETCHING --fetched--> CACHED --start_delete--> DELETING --deleted--> (absent)
                                 |                                              |
                                 +--fetch_failed--> (absent)                    +--delete_failed--> CACHED

Every state counts against ``budget_bytes``; an entry found on disk at start-up is ``adopt``-ed as CACHED.

Never deleted: a model being fetched, and a model *in use*, which the caller names at each decision: every
model with a memory entry (loading, resident or unloading: TF Serving drops a version whose directory
disappears) and every model with an ensure in flight (fetched but not yet loading). Deleting is only ever
chosen for CACHED entries not in use.

Recency: the adapter touches an entry when a model is loaded from it, and when the model leaves memory
(with the time of its last use there), so that a model much used in memory is not the first to go from disk.

Pure and clock-free like the memory tier: misuse by the adapter raises ``ValueError``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection
from dataclasses import dataclass, replace

from tfscachectl.core.eviction import (
    Admit,
    Candidate,
    Decision,
    Need,
    NoCapacity,
    choose_victims,
    describe_blockers,
    format_bytes,
)
from tfscachectl.core.refs import ModelKey
from tfscachectl.errors import ConfigError


class DiskState(enum.Enum):
    """Where a model version's files are in their life in the local cache."""

    FETCHING = "fetching"
    CACHED = "cached"
    DELETING = "deleting"


@dataclass(frozen=True, slots=True)
class DiskEntry:
    """One model version in the local cache: its bytes on disk, its state, and when it was last used."""

    key: ModelKey
    size_bytes: int
    state: DiskState
    last_used: float

    def candidate(self) -> Candidate:
        return Candidate(self.key, self.size_bytes, self.last_used)


def _check_time(now: float) -> None:
    if not math.isfinite(now):
        raise ValueError(f"time must be a finite number, not {now!r}")


def _check_size(size_bytes: int) -> None:
    if size_bytes < 0:
        raise ValueError(f"size must not be negative, not {size_bytes}")


class DiskTier:
    """The cached model files of one node, by bytes (``budget_bytes``; ``None``: no limit)."""

    def __init__(self, budget_bytes: int | None) -> None:
        if budget_bytes is not None and budget_bytes < 1:
            raise ConfigError(f"disk_bytes must be at least 1, not {budget_bytes}")
        self._budget = budget_bytes
        self._entries: dict[ModelKey, DiskEntry] = {}

    # -- reading ---------------------------------------------------------------------------------------

    @property
    def budget_bytes(self) -> int | None:
        return self._budget

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: ModelKey) -> DiskEntry | None:
        return self._entries.get(key)

    def entries(self) -> tuple[DiskEntry, ...]:
        """Every entry, ordered by key."""
        return tuple(self._entries[key] for key in sorted(self._entries))

    def used_bytes(self) -> int:
        """The bytes all entries take, whatever their state."""
        return sum(e.size_bytes for e in self._entries.values())

    def deletable(self, entry: DiskEntry, in_use: Collection[ModelKey]) -> bool:
        """Whether ``entry`` may be chosen for deletion while ``in_use`` are in use."""
        return entry.state is DiskState.CACHED and entry.key not in in_use

    # -- planning --------------------------------------------------------------------------------------

    def plan_fetch(
        self, key: ModelKey, size_bytes: int, now: float, in_use: Collection[ModelKey] = ()
    ) -> Decision:
        """Whether ``key`` (``size_bytes`` on disk) may be fetched now, and which cached models to delete.

        ``key`` must not have an entry. Nothing changes here.
        """
        _check_time(now)
        _check_size(size_bytes)
        if key in self._entries:
            raise ValueError(f"model {key} is already {self._entries[key].state.value} on disk")
        subject = f"model {key} ({format_bytes(size_bytes)})"
        if self._budget is not None and size_bytes > self._budget:
            return NoCapacity(
                f"{subject} is larger than the disk cache of this node ({format_bytes(self._budget)})",
                permanent=True,
            )
        return self._plan(size_bytes, subject, in_use)

    def plan_trim(self, now: float, in_use: Collection[ModelKey] = ()) -> Decision:
        """What to delete to bring the cache back within its budget (after ``adopt`` or a larger fetch)."""
        _check_time(now)
        return self._plan(0, "the cached models", in_use)

    def _plan(self, extra_bytes: int, subject: str, in_use: Collection[ModelKey]) -> Decision:
        if self._budget is None:
            return Admit()
        need = Need(bytes=max(self.used_bytes() + extra_bytes - self._budget, 0))
        if need.met:
            return Admit()
        deleting = [e.candidate() for e in self.entries() if e.state is DiskState.DELETING]
        enough_deleting = choose_victims(deleting, need)
        if enough_deleting is not None:
            return Admit(awaiting=enough_deleting)
        candidates = [e.candidate() for e in self.entries() if self.deletable(e, in_use)]
        victims = choose_victims(candidates, need.after(deleting))
        if victims is None:
            return self._no_room(subject, in_use)
        return Admit(evict=victims, awaiting=tuple(c.key for c in deleting))

    def _no_room(self, subject: str, in_use: Collection[ModelKey]) -> NoCapacity:
        entries = self.entries()
        budget = self._budget if self._budget is not None else 0
        blockers = describe_blockers(
            [
                ("in use", sum(1 for e in entries if e.state is DiskState.CACHED and e.key in in_use)),
                ("being fetched", sum(1 for e in entries if e.state is DiskState.FETCHING)),
                ("being deleted", sum(1 for e in entries if e.state is DiskState.DELETING)),
            ]
        )
        reason = (
            f"{subject} does not fit in this node's disk cache ({format_bytes(self.used_bytes())} of "
            f"{format_bytes(budget)} in use), and deleting every cached model that may be deleted would "
            f"not make room (held: {blockers})"
        )
        return NoCapacity(reason)

    # -- transitions -----------------------------------------------------------------------------------

    def start_fetch(self, key: ModelKey, size_bytes: int, now: float) -> DiskEntry:
        """A fetch of ``key`` starts: it takes ``size_bytes`` now. Only when ``plan_fetch`` said ``ready``."""
        _check_time(now)
        _check_size(size_bytes)
        if key in self._entries:
            raise ValueError(f"model {key} is already {self._entries[key].state.value} on disk")
        if self._budget is not None and self.used_bytes() + size_bytes > self._budget:
            raise ValueError(f"fetching model {key} now would exceed the disk budget; plan the fetch first")
        return self._put(DiskEntry(key, size_bytes, DiskState.FETCHING, now))

    def fetched(self, key: ModelKey, now: float, size_bytes: int | None = None) -> DiskEntry:
        """The fetch of ``key`` ended well; ``size_bytes``, if given, is what actually landed on disk."""
        _check_time(now)
        entry = self._expect(key, DiskState.FETCHING)
        if size_bytes is not None:
            _check_size(size_bytes)
        size = entry.size_bytes if size_bytes is None else size_bytes
        return self._put(
            replace(entry, state=DiskState.CACHED, size_bytes=size, last_used=max(entry.last_used, now))
        )

    def fetch_failed(self, key: ModelKey) -> None:
        """The fetch of ``key`` failed (its partial files are the adapter's to remove): its room is free."""
        self._expect(key, DiskState.FETCHING)
        del self._entries[key]

    def adopt(self, key: ModelKey, size_bytes: int, now: float) -> DiskEntry:
        """A model found complete on disk (at start-up) joins the cache as CACHED, used at ``now``.

        Adopting may put the cache over its budget; ``plan_trim`` then says what to delete.
        """
        _check_time(now)
        _check_size(size_bytes)
        if key in self._entries:
            raise ValueError(f"model {key} is already {self._entries[key].state.value} on disk")
        return self._put(DiskEntry(key, size_bytes, DiskState.CACHED, now))

    def start_delete(self, key: ModelKey, in_use: Collection[ModelKey] = ()) -> DiskEntry:
        """A deletion of cached ``key`` starts; it keeps its room until ``deleted``. Never one in use."""
        entry = self._expect(key, DiskState.CACHED)
        if key in in_use:
            raise ValueError(f"model {key} is in use; it cannot be deleted from disk")
        return self._put(replace(entry, state=DiskState.DELETING))

    def delete_failed(self, key: ModelKey) -> DiskEntry:
        """The deletion of ``key`` did not happen: it is cached again."""
        entry = self._expect(key, DiskState.DELETING)
        return self._put(replace(entry, state=DiskState.CACHED))

    def deleted(self, key: ModelKey) -> None:
        """The deletion of ``key`` ended: its room is free."""
        self._expect(key, DiskState.DELETING)
        del self._entries[key]

    def touch(self, key: ModelKey, now: float) -> bool:
        """``key`` was used (loaded from disk) at ``now``. False when it has no entry."""
        _check_time(now)
        entry = self._entries.get(key)
        if entry is None:
            return False
        self._put(replace(entry, last_used=max(entry.last_used, now)))
        return True

    # -- internals -------------------------------------------------------------------------------------

    def _expect(self, key: ModelKey, state: DiskState) -> DiskEntry:
        entry = self._entries.get(key)
        if entry is None:
            raise ValueError(f"model {key} has no entry on disk (expected it {state.value})")
        if entry.state is not state:
            raise ValueError(f"model {key} is {entry.state.value} on disk, not {state.value}")
        return entry

    def _put(self, entry: DiskEntry) -> DiskEntry:
        self._entries[entry.key] = entry
        return entry
