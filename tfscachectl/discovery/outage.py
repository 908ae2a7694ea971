"""Logging a backend's outages: one warning when it becomes unreachable, one info line when it is back."""

from __future__ import annotations

import asyncio
import logging
import time


class OutageLog:
    """Tracks whether ``what`` (e.g. ``etcd membership``) is failing, so each outage is logged twice only."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self._what = what
        self._since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, error: BaseException) -> int:
        """Record a failed attempt; returns how many failed in a row (for the backoff)."""
        self.failures += 1
        if self._since is None:
            self._since = time.monotonic()
            self._log.warning(
                "discovery_unreachable what=%r error=%r (retrying; keeping the last known state)",
                self._what,
                describe(error),
            )
        return self.failures

    def succeeded(self) -> None:
        """Record a successful call; logs the end of an outage if there was one."""
        if self._since is not None:
            self._log.info(
                "discovery_reachable what=%r after_seconds=%.1f attempts=%d",
                self._what,
                time.monotonic() - self._since,
                self.failures,
            )
        self._since = None
        self.failures = 0


def describe(error: BaseException) -> str:
    """``Type: message`` of an exception, or just its type when the message is empty."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def cancelled() -> bool:
    """Whether the running task is being cancelled: a gRPC or HTTP call interrupted by the cancellation may
    raise its own error (CANCELLED) instead of ``CancelledError``, which a retry loop must not take for an
    outage (it would swallow the cancellation and never end)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
