"""Victim choice for both cache tiers, the guard window rule, and the decisions an admission returns.

Both tiers (models in memory, model files on disk) admit a newcomer the same way: if it fits, admit it;
otherwise evict the least-recently-used entries that may be evicted, no more than needed; if even that
cannot make room, say so with the reason. The tiers decide which entries may be evicted (pinned, loading,
guarded, in use...); this module only orders and picks.

"No more than needed" means two things: victims are taken in LRU order only until the need is met, and
then any victim whose removal is not needed after all (a small old model taken before the big one that
settles the matter) is spared. So no victim in the answer could be left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from tfscachectl.core.refs import ModelKey
from tfscachectl.errors import Code, ServingError

#: A model ensured (or loaded) less than this many seconds ago is not evicted: the request that ensured it
#: is still on its way to the model. Settings pass their own value; this is the default they start from.
DEFAULT_GUARD_WINDOW_SECONDS = 5.0


def guard_ends(guard_from: float, guard_window: float) -> float:
    """When a guard that started at ``guard_from`` stops protecting its model."""
    return guard_from + guard_window


def is_guarded(guard_from: float, now: float, guard_window: float) -> bool:
    """Whether a model last ensured (or loaded) at ``guard_from`` is still inside its guard window."""
    return now < guard_ends(guard_from, guard_window)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An entry that may be evicted: its key, what evicting it frees, and when it was last used."""

    key: ModelKey
    size_bytes: int
    last_used: float


@dataclass(frozen=True, slots=True)
class Need:
    """How much must be freed: a number of entries and a number of bytes (never negative)."""

    models: int = 0
    bytes: int = 0

    @property
    def met(self) -> bool:
        return self.models <= 0 and self.bytes <= 0

    def after(self, freed: Iterable[Candidate]) -> Need:
        """What is still needed once ``freed`` are gone."""
        models, size = self.models, self.bytes
        for candidate in freed:
            models -= 1
            size -= candidate.size_bytes
        return Need(max(models, 0), max(size, 0))


def lru_order(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Least recently used first; ties broken by key so that the order never depends on input order."""
    return sorted(candidates, key=lambda c: (c.last_used, c.key))


def choose_victims(candidates: Iterable[Candidate], need: Need) -> tuple[ModelKey, ...] | None:
    """The fewest LRU candidates that meet ``need``, least recently used first; ``None`` if all cannot.

    Candidates are taken in LRU order until the need is met; then, from the most recently used victim
    back to the oldest, a victim whose removal is not needed is spared. Every victim returned is
    necessary: leaving any one out no longer meets the need.
    """
    if need.met:
        return ()
    taken: list[Candidate] = []
    remaining = need
    for candidate in lru_order(candidates):
        taken.append(candidate)
        remaining = remaining.after((candidate,))
        if remaining.met:
            break
    else:
        return None
    for spare in reversed(taken[:-1]):
        others = [c for c in taken if c is not spare]
        if need.after(others).met:
            taken = others
    return tuple(c.key for c in taken)


@dataclass(frozen=True, slots=True)
class Admit:
    """The newcomer may be admitted once ``evict`` have been started and ``awaiting`` have ended.

    ``evict``: entries to start evicting now, least recently used first. ``awaiting``: evictions already
    under way whose end is needed too. With both empty (``ready``) the newcomer may start at once;
    otherwise the adapter starts the evictions, waits for them to end, and plans again.
    """

    evict: tuple[ModelKey, ...] = ()
    awaiting: tuple[ModelKey, ...] = ()

    @property
    def ready(self) -> bool:
        return not self.evict and not self.awaiting


@dataclass(frozen=True, slots=True)
class NoCapacity:
    """There is no room now and nothing that may be evicted would make enough.

    ``permanent``: the newcomer alone is larger than the whole budget; waiting cannot help.
    ``retry_at``: the earliest time a guard window ends and the answer may change by itself (``None`` if
    no guard is in the way); the answer may also change when a load or an eviction ends or a pin is
    lifted. The adapter waits (up to the request's deadline) and plans again; it never retries in a loop.
    """

    reason: str
    permanent: bool = False
    retry_at: float | None = None

    def error(self) -> ServingError:
        """What a client sees when its deadline passes (or at once, if ``permanent``).

        RESOURCE_EXHAUSTED (HTTP 429) for a model that can never fit, UNAVAILABLE (HTTP 503) for
        "no capacity now", which a client may retry.
        """
        code = Code.RESOURCE_EXHAUSTED if self.permanent else Code.UNAVAILABLE
        return ServingError(code, f"No capacity: {self.reason}")


#: What an admission plan returns.
Decision: TypeAlias = Admit | NoCapacity


def format_bytes(size: int) -> str:
    """``1536`` -> ``"1.5 KiB"``: sizes as an operator reads them in a reason."""
    if abs(size) < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def describe_blockers(counts: Sequence[tuple[str, int]]) -> str:
    """``[("pinned", 2), ("loading", 0), ("guarded", 1)]`` -> ``"2 pinned, 1 guarded"``."""
    parts = [f"{count} {what}" for what, count in counts if count]
    return ", ".join(parts) if parts else "none"
