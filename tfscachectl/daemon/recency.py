"""Recency of fast-path hits: Envoy counts them, the daemon reads the counts and tells the agents.

A fast-path hit never reaches Python, so the agents' LRU would think a busy model idle. Each fast-path route
has a stat prefix (``xds.fastpath.FastKey.stat_prefix``), and Envoy counts its requests in
``vhost.<listener>.route.<prefix>.upstream_rq_completed`` on its own, adding nothing to the request path.
Every ``interval`` the feed reads those counters from each Envoy's admin interface (``/stats?usedonly`` with
a filter, so Envoy returns only route counters that moved at least once), takes the increase since the
last reading, and reports it to the nodes holding each model with the agents' ``Touch`` (hits and time).

The delay is one interval plus a round trip: a model served only by the fast path looks up to ``interval``
older to its agent than it is. The LRU orders models by last use, so only models used within the same
interval can be misordered; the agent's guard window (seconds) is longer than the default interval.

The pure part (parsing, increases, sharing hits among holders) is tested without Envoy.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from tfscachectl.agent.api.values import ModelHits
from tfscachectl.core.placement import NodeId

log = logging.getLogger(__name__)

#: Envoy's admin ``/stats`` filter for the counters of fast-path routes.
ROUTE_COUNTER_FILTER = r"^vhost\.[^.]+\.route\.fp_[0-9a-f]+_[0-9a-z]+\.upstream_rq_completed$"
_ROUTE_COUNTER = re.compile(r"^vhost\.[^.]+\.route\.(fp_[0-9a-f]+_[0-9a-z]+)\.upstream_rq_completed: (\d+)$")
#: How long one reading of an Envoy's counters may take.
READ_TIMEOUT_S = 2.0

#: Route stat prefix -> (model name, concrete version, the nodes holding it).
Holders = Mapping[str, tuple[str, int, tuple[NodeId, ...]]]


def parse_route_counters(text: str) -> dict[str, int]:
    """``/stats`` text output -> stat prefix -> requests, summed over the listeners (REST and gRPC)."""
    counts: dict[str, int] = defaultdict(int)
    for line in text.splitlines():
        found = _ROUTE_COUNTER.match(line.strip())
        if found:
            counts[found.group(1)] += int(found.group(2))
    return dict(counts)


_IN_FLIGHT_COUNTER = re.compile(r"^vhost\.[^.]+\.route\.[^.]+\.upstream_rq_(total|completed): (\d+)$")


def in_flight_filter(prefixes: Iterable[str]) -> str:
    """Envoy's admin ``/stats`` filter for the started and completed request counters of these routes."""
    alternatives = "|".join(re.escape(prefix) for prefix in sorted(prefixes))
    return rf"^vhost\.[^.]+\.route\.({alternatives})\.upstream_rq_(total|completed)$"


def parse_in_flight(text: str) -> int:
    """``/stats`` text output for ``in_flight_filter`` -> requests started on those routes and not yet
    answered (Envoy counts a request in ``upstream_rq_total`` when it is routed, in ``upstream_rq_completed``
    when its answer comes, Envoy's own 5xx included)."""
    started = completed = 0
    for line in text.splitlines():
        found = _IN_FLIGHT_COUNTER.match(line.strip())
        if found:
            if found.group(1) == "total":
                started += int(found.group(2))
            else:
                completed += int(found.group(2))
    return started - completed


def increases(previous: Mapping[str, int] | None, current: Mapping[str, int]) -> dict[str, int]:
    """Requests since ``previous`` per prefix. The first reading is a baseline (no increase); a counter
    lower than before was reset (Envoy restarted), so all of it is new."""
    if previous is None:
        return {}
    found = {}
    for prefix, count in current.items():
        before = previous.get(prefix, 0)
        grown = count - before if count >= before else count
        if grown > 0:
            found[prefix] = grown
    return found


def hits_by_node(grown: Mapping[str, int], holders: Holders, when: float) -> dict[NodeId, list[ModelHits]]:
    """Share each model's new requests among its holders (evenly, the remainder to the first ones)."""
    per_node: dict[NodeId, dict[tuple[str, int], int]] = defaultdict(lambda: defaultdict(int))
    for prefix, count in grown.items():
        held = holders.get(prefix)
        if held is None:
            continue  # a route withdrawn since: its model is leaving
        name, version, nodes = held
        share, rest = divmod(count, len(nodes))
        for index, node in enumerate(nodes):
            hits = share + (1 if index < rest else 0)
            if hits:
                per_node[node][(name, version)] += hits
    return {
        node: [ModelHits(name, version, hits, when) for (name, version), hits in sorted(models.items())]
        for node, models in per_node.items()
    }


@dataclass
class RecencyCounters:
    readings: int = 0
    reading_failures: int = 0
    fast_path_requests: int = 0
    touch_failures: int = 0


Touch = Callable[[NodeId, Sequence[ModelHits]], Awaitable[None]]


class RecencyFeed:
    """Reads every known Envoy's route counters each ``interval_s`` and reports the hits to the agents."""

    def __init__(
        self,
        admins: Callable[[], Iterable[str]],
        holders: Callable[[], Holders],
        touch: Touch,
        interval_s: float,
        counters: RecencyCounters | None = None,
    ) -> None:
        self._admins = admins
        self._holders = holders
        self._touch = touch
        self.interval_s = interval_s
        self.counters = counters if counters is not None else RecencyCounters()
        self._last: dict[str, dict[str, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT_S))
        self._task = asyncio.create_task(self._run(), name="recency-feed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.read_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad round must not end the feed
                log.exception("recency_round_failed")

    async def baseline(self, admin: str) -> None:
        """Read a newly connected Envoy's counters at once, before it routes anything for this daemon, so
        that the hits it serves from then on all count (the first reading of an Envoy is a baseline)."""
        if admin in self._last or self._session is None:
            return
        current = await self._read(admin)
        if current is not None and admin not in self._last:
            self._last[admin] = current

    async def read_once(self) -> dict[NodeId, list[ModelHits]]:
        """One round: read every Envoy, report the hits; returns what was reported."""
        admins = sorted(set(self._admins()))
        for gone in set(self._last) - set(admins):
            del self._last[gone]
        grown: dict[str, int] = defaultdict(int)
        for admin in admins:
            current = await self._read(admin)
            if current is None:
                continue
            for prefix, count in increases(self._last.get(admin), current).items():
                grown[prefix] += count
            self._last[admin] = current
        self.counters.fast_path_requests += sum(grown.values())
        reports = hits_by_node(grown, self._holders(), time.time())
        for node, hits in reports.items():
            try:
                await self._touch(node, hits)
            except Exception as exc:  # an agent away: its models' recency waits for the next round
                self.counters.touch_failures += 1
                log.info("recency_touch_failed node=%s error=%r", node, exc)
        return reports

    async def in_flight(self, prefixes: Iterable[str]) -> int | None:
        """Requests on the routes with these stat prefixes that every known Envoy routed and has not had
        answered yet (None when no Envoy answered)."""
        total: int | None = None
        for admin in sorted(set(self._admins())):
            text = await self._counters(admin, in_flight_filter(prefixes), "in_flight_read_failed")
            if text is not None:
                total = (total or 0) + parse_in_flight(text)
        return total

    async def _read(self, admin: str) -> dict[str, int] | None:
        text = await self._counters(admin, ROUTE_COUNTER_FILTER, "recency_read_failed")
        if text is None:
            self.counters.reading_failures += 1
            return None
        self.counters.readings += 1
        return parse_route_counters(text)

    async def _counters(self, admin: str, pattern: str, failure: str) -> str | None:
        """The Envoy admin's ``/stats`` text for the counters matching ``pattern`` that moved at least once;
        None (logged as ``failure``) when it cannot be read."""
        assert self._session is not None, "start() first"
        try:
            async with self._session.get(
                f"http://{admin}/stats", params={"usedonly": "", "type": "Counters", "filter": pattern}
            ) as reply:
                reply.raise_for_status()
                return await reply.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("%s admin=%s error=%r", failure, admin, exc)
            return None
