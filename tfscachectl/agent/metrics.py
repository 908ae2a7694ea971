"""The node agent's Prometheus metrics, and the ``/metrics`` page that serves them.

Counts and sizes are read from the agent when Prometheus scrapes (``NodeAgent.counters`` and ``status()``),
so nothing is counted twice. What the agent keeps no record of is observed here:

- ``tfscache_agent_ensure_seconds{outcome}``: each ensure that waited, as the API answered it
  (``ApiObserver``); outcome ``hit``, ``loaded``, ``joined`` or ``error``;
- ``tfscache_agent_load_seconds{phase}``: read from the agent's per-version stats when the version's
  ``loaded`` event arrives; ``fetch`` (store to disk cache, only when the load fetched), ``load`` (the rest:
  making room, then TF Serving loading it until AVAILABLE) and ``total``;
- ``tfscache_agent_evictions_total{reason}``: one per ``unloaded`` event; ``operator`` for the versions an
  Evict call asked for, ``lru`` for the others.

The page (``tfscachectl.metrics_page``) is served on the agent's event loop. Each ``AgentMetrics`` has its
own registry (no global state).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tfscachectl.core.refs import ModelKey

if TYPE_CHECKING:
    from tfscachectl.agent.node import NodeAgent

log = logging.getLogger(__name__)

PREFIX = "tfscache_agent_"
#: An ensure is answered in microseconds (a hit) to minutes (a cold load behind a queue).
ENSURE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
ENSURE_OUTCOMES = ("hit", "loaded", "joined", "error")
LOAD_PHASES = ("fetch", "load", "total")
EVICTION_REASONS = ("lru", "operator")
MODEL_STATES = ("loading", "resident", "unloading", "cached")

# NodeAgent.counters read at scrape time: key -> help
_COUNTERS = {
    "hits": "Ensures answered by a resident version, plus hits reported by the daemon (Touch).",
    "misses": "Ensures of a version that was not resident.",
    "loads": "Versions loaded into TF Serving.",
    "load_failures": "Loads that failed (store, disk, capacity, TF Serving or deadline).",
    "fetches": "Versions fetched from the model store into the disk cache.",
}


class _AgentState(Collector):
    """Counters and gauges read from the agent at scrape time."""

    def __init__(self, agent: NodeAgent) -> None:
        self._agent = agent

    def collect(self) -> Iterator[Metric]:
        counters = self._agent.counters
        for key, description in _COUNTERS.items():
            yield CounterMetricFamily(PREFIX + key, description, value=counters.get(key, 0))
        status = self._agent.status()
        states: collections.Counter[str] = collections.Counter(m.state for m in status.models)
        by_state = GaugeMetricFamily(
            PREFIX + "models",
            "Versions this node knows, by state (cached: in the disk cache only).",
            labels=["state"],
        )
        for state in MODEL_STATES:
            by_state.add_metric([state], states.get(state, 0))
        yield by_state
        resident = [m for m in status.models if m.state == "resident"]
        yield _gauge("resident_models", "Versions AVAILABLE in TF Serving.", len(resident))
        yield _gauge(
            "resident_bytes",
            "Estimated memory of the resident versions.",
            sum(m.memory_bytes for m in resident),
        )
        yield _gauge(
            "memory_used_bytes",
            "Estimated memory held for versions loading, resident or unloading (what the budget counts).",
            status.used_bytes,
        )
        yield _gauge("pinned_models", "Pinned versions.", sum(1 for m in status.models if m.pinned))
        yield _gauge("disk_cache_bytes", "Bytes of model files in the disk cache.", status.disk_used_bytes)
        yield _gauge(
            "disk_cache_models", "Versions in the disk cache.", sum(1 for m in status.models if m.disk_bytes)
        )
        for name, description, limit in (
            ("max_models", "Limit on versions in memory.", status.max_models),
            ("max_bytes", "Memory budget for models.", status.max_bytes),
            ("disk_budget_bytes", "Disk cache budget.", status.disk_budget_bytes),
        ):
            if limit is not None:
                yield _gauge(name, description, limit)


def _gauge(name: str, description: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, description, value=value)


class AgentMetrics:
    """The metrics of one agent: a registry, the observations of the API, and a watcher of its events."""

    def __init__(self, agent: NodeAgent) -> None:
        self._agent = agent
        self.registry = CollectorRegistry()
        self.ensure_seconds = Histogram(
            PREFIX + "ensure_seconds",
            "Time an ensure waited in the agent, by outcome.",
            ["outcome"],
            buckets=ENSURE_BUCKETS,
            registry=self.registry,
        )
        self.load_seconds = Histogram(
            PREFIX + "load_seconds",
            "Time of the phases of a load: fetch (only when the load fetched), load (the rest), total.",
            ["phase"],
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )
        self.evictions = Counter(
            PREFIX + "evictions",
            "Versions unloaded from TF Serving, by reason (lru: to make room; operator: Evict).",
            ["reason"],
            registry=self.registry,
        )
        for outcome in ENSURE_OUTCOMES:
            self.ensure_seconds.labels(outcome)
        for phase in LOAD_PHASES:
            self.load_seconds.labels(phase)
        for reason in EVICTION_REASONS:
            self.evictions.labels(reason)
        self.registry.register(_AgentState(agent))
        self._operator_evictions: set[ModelKey] = set()
        self._loads_seen: dict[ModelKey, int] = {}
        self._fetch_seen: dict[ModelKey, float] = {}
        self._watcher: asyncio.Task[None] | None = None

    # ----- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching the agent's residency events (before the API serves, to miss none)."""
        self._watcher = asyncio.create_task(self._watch(), name="agent-metrics-events")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    def exposition(self) -> bytes:
        """The text exposition format of every metric, as read now."""
        return generate_latest(self.registry)

    # ----- from the API (ApiObserver) -----------------------------------------------------------

    def ensure_answered(self, outcome: str, seconds: float) -> None:
        self.ensure_seconds.labels(outcome).observe(seconds)

    def evicting(self, keys: Collection[ModelKey]) -> None:
        self._operator_evictions.update(keys)

    def eviction_withdrawn(self, keys: Collection[ModelKey]) -> None:
        self._operator_evictions.difference_update(keys)

    # ----- from the agent's events --------------------------------------------------------------

    async def _watch(self) -> None:
        async for event in self._agent.events():
            try:
                if event.key is None:
                    continue
                if event.kind == "loaded":
                    self._loaded(event.key)
                elif event.kind == "unloaded":
                    self._unloaded(event.key)
            except Exception:  # a metrics bug must not stop the watcher
                log.exception("metrics_event_failed kind=%s model=%s", event.kind, event.key)

    def _loaded(self, key: ModelKey) -> None:
        stats = self._agent.stats.get(key)
        if stats is None or stats.last_load_seconds is None or stats.loads <= self._loads_seen.get(key, 0):
            return  # adopted at start, or an event already seen
        self._loads_seen[key] = stats.loads
        total = stats.last_load_seconds
        fetch = stats.fetch_seconds
        fetched = fetch is not None and fetch != self._fetch_seen.get(key)
        if fetched and fetch is not None:
            self._fetch_seen[key] = fetch
            self.load_seconds.labels("fetch").observe(fetch)
            self.load_seconds.labels("load").observe(max(total - fetch, 0.0))
        else:
            self.load_seconds.labels("load").observe(total)
        self.load_seconds.labels("total").observe(total)

    def _unloaded(self, key: ModelKey) -> None:
        reason = "operator" if key in self._operator_evictions else "lru"
        self._operator_evictions.discard(key)
        self.evictions.labels(reason).inc()
