"""Capped exponential backoff with jitter, computed apart from any sleeping (tested with no clock)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number ``attempt`` (1, 2, ...): ``first * factor ** (attempt - 1)``, capped.

    ``jitter`` spreads retries of many nodes apart: the delay is scaled by ``1 - jitter * spread`` where the
    caller passes ``spread`` in [0, 1) (``random.random()``).
    """

    first: float = 0.2
    factor: float = 2.0
    cap: float = 5.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.first <= 0 or self.factor < 1 or self.cap < self.first or not 0 <= self.jitter < 1:
            raise ValueError(f"bad backoff {self!r}")

    def delay(self, attempt: int, spread: float = 0.0) -> float:
        exponent = max(attempt - 1, 0)
        # Stop multiplying once past the cap, so a long outage never overflows.
        base = self.cap if exponent > 64 else min(self.cap, self.first * self.factor**exponent)
        return base * (1 - self.jitter * spread)


#: What the backends use unless told otherwise: 0.2 s, 0.4 s, ... at most 5 s between attempts.
DEFAULT_BACKOFF = Backoff()
