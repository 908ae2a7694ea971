"""Counts of what the ADS server did, by type URL, for the daemon's metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class XdsCounters:
    """Responses pushed, ACKs and NACKs received (by type URL), and streams opened and closed."""

    pushes: Counter[str] = field(default_factory=Counter)
    acks: Counter[str] = field(default_factory=Counter)
    nacks: Counter[str] = field(default_factory=Counter)
    streams_opened: int = 0
    streams_closed: int = 0

    @property
    def streams_open(self) -> int:
        return self.streams_opened - self.streams_closed
