"""The control daemon's Prometheus metrics: requests, ensure latency, xDS, the fast path and its recency.

Counts are read at scrape time from the objects that keep them (the ext_proc server's, the router's and the
ADS server's counters); only the ensure latency histogram is observed as requests are routed. Envoy's own
stats stay on its admin port.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tfscachectl.daemon.cluster import Cluster
from tfscachectl.daemon.extproc import ExtProcCounters
from tfscachectl.daemon.fastpath import FastPathCounters
from tfscachectl.daemon.membership import MembershipCounters
from tfscachectl.daemon.recency import RecencyCounters
from tfscachectl.daemon.router import RouterCounters
from xds import XdsCounters

PREFIX = "tfscache_daemon_"
ENSURE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
ROUTE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class _State(Collector):
    def __init__(
        self,
        extproc: ExtProcCounters,
        router: RouterCounters,
        xds: XdsCounters,
        cluster: Cluster,
        fast_path: FastPathCounters,
        recency: RecencyCounters,
        membership: MembershipCounters,
    ) -> None:
        self._extproc, self._router, self._xds, self._cluster = extproc, router, xds, cluster
        self._fast_path, self._recency, self._membership = fast_path, recency, membership

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            PREFIX + "requests", "Requests Envoy asked about, by protocol.", labels=["protocol"]
        )
        for protocol, count in sorted(self._extproc.requests.items()):
            requests.add_metric([str(protocol)], count)
        yield requests
        errors = CounterMetricFamily(
            PREFIX + "request_errors",
            "Requests answered with an error, by code.",
            labels=["protocol", "code"],
        )
        for (protocol, code), count in sorted(self._extproc.errors.items()):
            errors.add_metric([str(protocol), code.name], count)
        yield errors
        routed = CounterMetricFamily(
            PREFIX + "routed", "Requests routed, by node address.", labels=["protocol", "node"]
        )
        for (protocol, node), count in sorted(self._extproc.routed.items()):
            routed.add_metric([str(protocol), node], count)
        yield routed
        for name, value, text in (
            ("loads", self._router.loads, "Requests that loaded their model (misses)."),
            ("route_failures", self._router.failures, "Requests no node could serve."),
            ("agent_fallbacks", self._router.fallbacks, "Times an unreachable agent was skipped."),
        ):
            yield CounterMetricFamily(PREFIX + name, text, value=value)
        yield GaugeMetricFamily(PREFIX + "nodes", "Nodes in the pool.", value=len(self._cluster.nodes))
        for name, value, text in (
            ("node_joins", self._membership.joins, "Nodes that joined the pool."),
            ("node_leaves", self._membership.leaves, "Nodes that left the pool."),
            ("model_moves", self._membership.moves, "Models moved to a node that joined."),
            ("model_move_failures", self._membership.move_failures, "Moves that failed (the model stayed)."),
            ("members_refused", self._membership.members_refused, "Registrations with unusable addresses."),
        ):
            yield CounterMetricFamily(PREFIX + name, text, value=value)
        for name, counter, text in (
            ("xds_pushes", self._xds.pushes, "Discovery responses sent to Envoy, by type."),
            ("xds_acks", self._xds.acks, "ACKs received from Envoy, by type."),
            ("xds_nacks", self._xds.nacks, "NACKs received from Envoy, by type."),
        ):
            family = CounterMetricFamily(PREFIX + name, text, labels=["type"])
            for type_url, count in sorted(counter.items()):
                family.add_metric([type_url.rsplit(".", 1)[-1]], count)
            yield family
        yield GaugeMetricFamily(PREFIX + "xds_streams", "Open ADS streams.", value=self._xds.streams_open)
        connected = GaugeMetricFamily(
            PREFIX + "agent_connected", "Whether a node's agent stream is up.", labels=["node"]
        )
        for node_id in sorted(self._cluster.nodes):
            connected.add_metric([node_id], 1 if self._cluster.connected(node_id) else 0)
        yield connected
        yield GaugeMetricFamily(
            PREFIX + "fast_path_routes",
            "Fast-path routes in the last configuration.",
            value=self._fast_path.routes,
        )
        fast_path: tuple[tuple[str, float, str], ...] = (
            (
                "fast_path_requests",
                self._recency.fast_path_requests,
                "Hits Envoy served on fast routes.",
            ),
            (
                "snapshot_publications",
                self._fast_path.publications,
                "Snapshots published (changes that come together make one).",
            ),
            (
                "snapshot_publish_seconds",
                self._fast_path.publish_seconds,
                "Time the event loop spent building and publishing snapshots.",
            ),
            ("fast_path_withdrawals", self._fast_path.withdrawals, "Unloads confirmed after Envoy's ACK."),
            (
                "fast_path_drain_timeouts",
                self._fast_path.drain_timeouts,
                "Unloads confirmed while requests routed before the withdrawal were still unanswered.",
            ),
            (
                "fast_path_withdrawal_failures",
                self._fast_path.withdrawal_failures,
                "Unloads not confirmed: Envoy did not acknowledge the withdrawn routes.",
            ),
            ("recency_readings", self._recency.readings, "Readings of Envoy's fast-path counters."),
            (
                "recency_reading_failures",
                self._recency.reading_failures,
                "Failed counter readings.",
            ),
            ("recency_touch_failures", self._recency.touch_failures, "Hit reports an agent did not take."),
        )
        for name, total, text in fast_path:
            yield CounterMetricFamily(PREFIX + name, text, value=total)


class DaemonMetrics:
    def __init__(
        self,
        extproc: ExtProcCounters,
        router: RouterCounters,
        xds: XdsCounters,
        cluster: Cluster,
        fast_path: FastPathCounters,
        recency: RecencyCounters,
        membership: MembershipCounters,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_State(extproc, router, xds, cluster, fast_path, recency, membership))
        self.route_seconds = Histogram(
            PREFIX + "fast_path_route_seconds",
            "Time from a model version becoming resident to Envoy acknowledging its fast-path route.",
            buckets=ROUTE_BUCKETS,
            registry=self.registry,
        )
        self.ensure_seconds = Histogram(
            PREFIX + "ensure_seconds",
            "Time from a request's arrival at the daemon to its node being ready, by outcome.",
            ["outcome"],
            buckets=ENSURE_BUCKETS,
            registry=self.registry,
        )

    def observe_ensure(self, outcome: str, seconds: float) -> None:
        """One routed request: how long until its node was ready, and whether it was a hit or a load."""
        self.ensure_seconds.labels(outcome).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
