"""Following a discovery backend's membership in a test: every membership its ``watch()`` yields, kept in
order, and a wait for one that satisfies a condition (used by the etcd and Consul tests alike); and a wait
for a registration to report itself registered."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Protocol

from tfscachectl.discovery.base import Membership, MembershipSource


class Follower:
    """Runs ``watch()`` of a membership source in a task and records every membership it yields."""

    def __init__(self, source: MembershipSource) -> None:
        self.history: list[Membership] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._follow(source))

    async def _follow(self, source: MembershipSource) -> None:
        async for membership in source.watch():
            self.history.append(membership)
            self._changed.set()

    @property
    def latest(self) -> Membership | None:
        return self.history[-1] if self.history else None

    async def until(self, predicate: Callable[[Membership], bool], timeout: float, what: str) -> Membership:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.latest is None or not predicate(self.latest):
            if self._task.done():
                self._task.result()
                raise AssertionError(f"the watch ended while waiting for {what}")
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; history: {self.history}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        assert self.latest is not None
        return self.latest

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.wait([self._task])
        assert self._task.cancelled(), "the watch must end by cancellation only"


def no_duplicates(history: list[Membership]) -> None:
    for before, after in itertools.pairwise(history):
        assert before != after, f"the same membership was yielded twice in a row: {after}"


class Registered(Protocol):
    @property
    def registered(self) -> bool: ...


async def until_registered(registration: Registered, timeout: float, what: str) -> None:
    """Wait for ``registration.registered``. A watcher can see the key before the registering task has
    read etcd's (or Consul's) answer to its write, so seeing the member is no proof the flag is set yet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not registration.registered:
        assert loop.time() < deadline, f"timed out waiting for {what} to be registered"
        await asyncio.sleep(0.02)
