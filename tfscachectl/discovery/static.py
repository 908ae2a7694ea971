"""Static membership: the nodes listed in the daemon's configuration, never changing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from tfscachectl.discovery.base import Membership
from tfscachectl.discovery.members import Member
from tfscachectl.errors import ConfigError


class StaticMembership:
    """Yields its members once, then waits until cancelled."""

    def __init__(self, members: Iterable[Member]) -> None:
        self._members: Membership = {}
        for member in members:
            if member.node_id in self._members:
                raise ConfigError(f"node id {member.node_id!r} is listed twice")
            self._members[member.node_id] = member

    async def watch(self) -> AsyncIterator[Membership]:
        yield dict(self._members)
        await asyncio.Event().wait()  # nothing ever changes: wait for cancellation
