"""The snapshot cache: the snapshot Envoy should have now, and a way to wait for the next one.

It knows nothing of gRPC or streams (the servicer in ``xds.server`` watches it). Every Envoy gets the same
snapshot. A snapshot is checked for consistency before it is stored, and each of its types keeps the
version it had in the previous snapshot while its content is unchanged, so streams resend only what
changed. Use it from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging

from xds import type_urls
from xds.snapshot import Snapshot

log = logging.getLogger(__name__)


class SnapshotCache:
    """Holds the current snapshot and wakes everyone waiting when it is replaced."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._changed = asyncio.Event()

    @property
    def snapshot(self) -> Snapshot | None:
        """The current snapshot, or None before the first one."""
        return self._snapshot

    def set_snapshot(self, snapshot: Snapshot) -> Snapshot:
        """Check ``snapshot``, make it current and wake the watchers; returns it as stored.

        Raises ``InconsistentSnapshotError`` (and keeps the current snapshot) if it refers to resources
        it does not hold.
        """
        stored = snapshot.consistent().carry_versions(self._snapshot)
        changed = [
            type_urls.short_name(type_url)
            for type_url in type_urls.PUSH_ORDER
            if self._snapshot is None or self._snapshot.version_of(type_url) != stored.version_of(type_url)
        ]
        self._snapshot = stored
        log.info("xds.snapshot.set version=%s changed=%s", stored.version, ",".join(changed) or "-")
        changed_event, self._changed = self._changed, asyncio.Event()
        changed_event.set()
        return stored

    async def next_snapshot(self, seen: Snapshot | None) -> Snapshot:
        """The current snapshot as soon as it is not ``seen`` (at once if it already differs)."""
        while self._snapshot is None or self._snapshot is seen:
            await self._changed.wait()
        return self._snapshot
