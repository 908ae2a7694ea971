"""How much memory a model will take once loaded, estimated from the bytes of its files.

Until the agent can measure a loaded model, its memory cost is its file bytes times a factor, plus a fixed
overhead per model (a session, its graph, TF Serving's bookkeeping). Both are settings; the defaults are
deliberately on the generous side so that a memory budget is not overrun by an optimistic guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tfscachectl.errors import ConfigError

#: Loaded variables take about their file size; graphs, kernels and allocator slack add to it.
DEFAULT_MEMORY_FACTOR = 2.0
#: A session and its graph cost something even for a tiny model.
DEFAULT_OVERHEAD_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MemoryEstimator:
    """``estimate(file_bytes) = ceil(file_bytes * factor) + overhead_bytes``."""

    factor: float = DEFAULT_MEMORY_FACTOR
    overhead_bytes: int = DEFAULT_OVERHEAD_BYTES

    def __post_init__(self) -> None:
        if not math.isfinite(self.factor) or self.factor <= 0:
            raise ConfigError(f"memory factor must be a positive number, not {self.factor!r}")
        if self.overhead_bytes < 0:
            raise ConfigError(f"memory overhead must not be negative, not {self.overhead_bytes!r}")

    def estimate(self, file_bytes: int) -> int:
        """The memory, in bytes, a model whose files hold ``file_bytes`` bytes is expected to take."""
        if file_bytes < 0:
            raise ValueError(f"file bytes must not be negative, not {file_bytes}")
        return math.ceil(file_bytes * self.factor) + self.overhead_bytes
