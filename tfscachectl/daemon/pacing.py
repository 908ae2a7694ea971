"""Pacing of repeated work on the event loop: pure, time is given."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Pacer:
    """Keeps a repeated piece of work (building and publishing a snapshot) to at most ``share`` of the time.

    After a run of ``d`` seconds the next one may start ``d * (1 - share) / share`` seconds after it ended:
    at once when the work is quick or rare, later in a burst. Whatever asks for a run meanwhile is served by
    that one run.
    """

    share: float = 0.5
    _next_at: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError(f"share must be in (0, 1], not {self.share}")

    def delay(self, now: float) -> float:
        """Seconds to wait from ``now`` before the next run (0: run now)."""
        return max(0.0, self._next_at - now)

    def ran(self, started: float, finished: float) -> None:
        """A run took from ``started`` to ``finished``."""
        self._next_at = finished + (finished - started) * (1 - self.share) / self.share
