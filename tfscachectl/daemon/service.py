"""The control daemon as one asyncio process: ADS server, ext_proc server, cluster view, metrics.

``Daemon.start()`` builds Envoy's configuration from the settings (a ``ClusterView``), serves it over ADS,
serves ext_proc, and follows every node's agent; ``Daemon.stop()`` undoes it in reverse order. Every task
has an owner and a way to stop.

The fast path (docs/routing.md): whenever what the nodes hold changes, a new snapshot gives every resident
version its route (published on the next turn of the event loop, so a burst of changes makes one snapshot).
When an agent says it is about to unload a version, the daemon publishes the snapshot without its routes,
waits for Envoy's ACK and only then confirms to the agent. A ``RecencyFeed`` reports the hits Envoy served
on fast-path routes to the agents.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from grpclib.server import Server

from tfscachectl.agent.api.values import MAX_RESOLVE_LATEST_NAMES, ModelHits
from tfscachectl.core.placement import NodeId
from tfscachectl.daemon.admin import AdminApi
from tfscachectl.daemon.cluster import Cluster
from tfscachectl.daemon.extproc import ExtProcCounters, ExtProcOptions, ExtProcService
from tfscachectl.daemon.fastpath import (
    FastPathCounters,
    NodeAddresses,
    due_names,
    fast_path_entries,
    holders_by_stat_prefix,
    routed_versions,
)
from tfscachectl.daemon.membership import MembershipCounters, Move, moves_on_join, node_settings
from tfscachectl.daemon.metrics import DaemonMetrics
from tfscachectl.daemon.pacing import Pacer
from tfscachectl.daemon.recency import Holders, RecencyCounters, RecencyFeed
from tfscachectl.daemon.router import PlacementRouter, RouterCounters
from tfscachectl.daemon.settings import MODULE_AUTO, MODULE_OFF, DaemonSettings, NodeSettings
from tfscachectl.discovery import membership_source
from tfscachectl.discovery.members import Member
from tfscachectl.envoy_module import grpc_key_module
from tfscachectl.errors import ConfigError, ServingError
from tfscachectl.metrics_page import MetricsPage
from xds import (
    Address,
    ClusterView,
    ConfigNotAppliedError,
    ConfigRejectedError,
    Limits,
    NodeView,
    Resources,
    Snapshot,
    SnapshotCache,
    Timeouts,
    XdsCounters,
    build_resources,
    read_descriptor_set,
)
from xds.fastpath import FastKey, FastPathEncoder, FastPathEntry, routable, stat_prefix
from xds.resources import build_fast_path_configurations
from xds.server import AdsServer

log = logging.getLogger(__name__)

#: Models moved at once to nodes that joined (each a load there, then an unload where it was).
MOVES_AT_ONCE = 2
#: How often a withdrawal's drain asks Envoy for the routes' requests still in flight.
DRAIN_POLL_S = 0.005
#: How often the latest-version check runs, each time for its share of the routed names (at most).
LATEST_CHECK_TICK_S = 1.0


@dataclass(frozen=True)
class Bound:
    """Where the daemon's servers listen (ports resolved when 0 was asked for)."""

    xds: str
    ext_proc: str
    metrics: str | None
    admin: str | None = None


def cluster_view(
    settings: DaemonSettings, ext_proc: str, nodes: Iterable[NodeSettings], grpc_key_module: str | None = None
) -> ClusterView:
    """Envoy's configuration input from the settings and the current members (each healthy: a node that
    fails is taken out by Envoy's outlier detection, and by discovery when its registration ends), and
    the model-key module (``grpc_key_module_path``)."""
    return ClusterView(
        nodes=tuple(NodeView(n.id, Address.parse(n.rest), Address.parse(n.grpc)) for n in nodes),
        ext_proc=Address.parse(ext_proc),
        rest_listener=Address.parse(settings.rest_listen),
        grpc_listener=Address.parse(settings.grpc_listen),
        timeouts=Timeouts(ensure_deadline_s=settings.timeouts.ensure, request_s=settings.timeouts.request),
        grpc_descriptors=read_descriptor_set(),
        limits=Limits(message_bytes=settings.max_message_bytes),
        retries=settings.connect_retries,
        grpc_key_module=grpc_key_module,
    )


def grpc_key_module_path(setting: str) -> str | None:
    """The model-key module Envoy loads, from the ``fast_path.grpc_key_module`` setting (``None``: none)."""
    if setting == MODULE_OFF:
        return None
    if setting == MODULE_AUTO:
        built = grpc_key_module()
        return str(built) if built is not None else None
    return setting


class Daemon:
    def __init__(self, settings: DaemonSettings) -> None:
        self.settings = settings
        self.cluster = Cluster(settings.nodes if settings.discovery.kind == "static" else ())
        self.xds_counters = XdsCounters()
        self.cache = SnapshotCache()
        self.ads = AdsServer(self.cache, self.xds_counters)
        extproc_counters, router_counters = ExtProcCounters(), RouterCounters()
        self.fast_path_counters, recency_counters = FastPathCounters(), RecencyCounters()
        self.membership_counters = MembershipCounters()
        self.metrics = DaemonMetrics(
            extproc_counters,
            router_counters,
            self.xds_counters,
            self.cluster,
            self.fast_path_counters,
            recency_counters,
            self.membership_counters,
        )
        self.router = PlacementRouter(
            self.cluster, settings, observe=self.metrics.observe_ensure, counters=router_counters
        )
        self.extproc = ExtProcService(
            self.router, ExtProcOptions(route_timeout_s=settings.timeouts.ensure), extproc_counters
        )
        self.recency = RecencyFeed(
            self._envoy_admins,
            self._stat_holders,
            self._touch,
            settings.fast_path.recency_interval,
            recency_counters,
        )
        self._servers: list[Server] = []
        self._page: MetricsPage | None = None
        self._admin: AdminApi | None = None
        self._version = 0
        self._view: ClusterView | None = None
        self._base: Resources | None = None
        self._encoder = FastPathEncoder()
        self._routed: set[FastKey] = set()
        self._publish_pending = False
        #: Publishing takes at most about half of the loop's time, however fast changes come.
        self._publish_pacer = Pacer(share=0.5)
        self._tasks: set[asyncio.Task[None]] = set()
        #: The recency feed's map of route stat prefixes, read every interval: made again after a change.
        self._stat_holders_made: Holders | None = None
        self.cluster.on_change(self._forget_stat_holders)
        self.cluster.on_change(self._publish_soon)
        self.cluster.on_unloading(self._withdraw_soon)
        self.cluster.on_membership(self._membership_changed)
        self.ads.on_admin(lambda admin: self._spawn(self.recency.baseline(admin)))
        self._ext_proc_address = ""
        self._grpc_key_module: str | None = None
        self._moving: asyncio.Semaphore | None = None

    async def start(self) -> Bound:
        ext_proc = await self._serve(Server([self.extproc]), self.settings.ext_proc_listen, "ext_proc")
        self._ext_proc_address = self.settings.daemon_address or ext_proc
        self._grpc_key_module = await asyncio.to_thread(
            grpc_key_module_path, self.settings.fast_path.grpc_key_module
        )
        self.publish(self._cluster_view())
        xds = await self._serve(Server([self.ads]), self.settings.xds_listen, "xDS")
        metrics = None
        if self.settings.metrics_listen is not None:
            self._page = MetricsPage(self.metrics)
            metrics = await self._page.start(self.settings.metrics_listen)
        admin = None
        if self.settings.admin_listen is not None:
            self._admin = AdminApi(self.cluster, self.settings, self.fast_path_counters, self.router.counters)
            admin = await self._admin.start(self.settings.admin_listen)
        self.cluster.start()
        if self.settings.discovery.kind != "static":
            self._spawn(self._follow_membership())
        if self.settings.fast_path.enabled:
            self.recency.start()
            self._spawn(self._refresh_latest())
        bound = Bound(xds=xds, ext_proc=ext_proc, metrics=metrics, admin=admin)
        log.info(
            "daemon_ready xds=%s ext_proc=%s metrics=%s admin=%s discovery=%s nodes=%d",
            bound.xds,
            bound.ext_proc,
            bound.metrics,
            bound.admin,
            self.settings.discovery.kind,
            len(self.cluster.nodes),
        )
        return bound

    def publish(self, view: ClusterView | None = None) -> Snapshot:
        """Build and serve a new snapshot: for ``view`` if given (else the last one), with the fast-path
        routes of what the nodes hold now."""
        if view is not None and view != self._view:
            self._view, self._base = view, build_resources(view, fast_path=())
        assert self._view is not None, "publish(view) first"
        assert self._base is not None
        started = time.monotonic()
        entries = self.fast_path_entries()
        routes = build_fast_path_configurations(self._view, entries, self._encoder)
        self._version += 1
        version = f"{self._version}-{int(time.time())}"
        resources = dataclasses.replace(self._base, routes=routes)
        snapshot = self.cache.set_snapshot(
            Snapshot.create(version, resources.by_type(), previous=self.cache.snapshot)
        )
        self.fast_path_counters.routes = len(entries)
        added = {e.key for e in entries} - self._routed
        self._routed = {e.key for e in entries}
        if added and self.ads.streams():
            self._spawn(self._time_routes(time.monotonic()))
        finished = time.monotonic()
        self._publish_pacer.ran(started, finished)
        self.fast_path_counters.publications += 1
        self.fast_path_counters.publish_seconds += finished - started
        return snapshot

    def fast_path_entries(self) -> list[FastPathEntry]:
        """The fast-path routes for what the connected nodes hold now (none when the fast path is off)."""
        if not self.settings.fast_path.enabled:
            return []
        held = {n: h for n, h in self.cluster.held().items() if self.cluster.connected(n)}
        return fast_path_entries(held, self.cluster.latest, self._addresses())

    def _addresses(self) -> dict[NodeId, NodeAddresses]:
        assert self._view is not None
        by_id = {node.id: node for node in self._view.nodes}
        return {NodeId(i): (n.rest, n.grpc) for i, n in by_id.items() if n.healthy}

    def _publish_soon(self) -> None:
        """Publish on the next turn of the loop, or, right after a long publication, once as long again
        has passed (``Pacer``): changes that come meanwhile make one snapshot. Changes arrive one by one
        (an agent's events, the ensures' answers) and a publication with thousands of routes takes
        milliseconds, so without that wait a burst (a thousand preloads) would cost one each."""
        if self._publish_pending or self._view is None:
            return
        self._publish_pending = True

        def publish() -> None:
            self._publish_pending = False
            self.publish()

        loop = asyncio.get_running_loop()
        wait = self._publish_pacer.delay(time.monotonic())
        if wait > 0:
            loop.call_later(wait, publish)
        else:
            loop.call_soon(publish)

    def _withdraw_soon(self, node_id: NodeId, name: str, version: int) -> None:
        self._spawn(self._withdraw(node_id, name, version))

    async def _withdraw(self, node_id: NodeId, name: str, version: int) -> None:
        """Publish without the version's routes on ``node_id``; once Envoy has them, let the agent unload."""
        self._publish_pending = False
        self.publish()
        try:
            await self.ads.wait_applied(self.settings.fast_path.withdraw_timeout)
        except (ConfigNotAppliedError, ConfigRejectedError) as exc:
            self.fast_path_counters.withdrawal_failures += 1
            log.warning("fast_path_withdraw_failed node=%s model=%s:%d error=%s", node_id, name, version, exc)
            return
        await self._drain(name, version)
        try:
            await self.cluster.confirm_unload(node_id, name, version)
        except ServingError as exc:
            self.fast_path_counters.withdrawal_failures += 1
            log.warning("fast_path_confirm_failed node=%s model=%s:%d error=%r", node_id, name, version, exc)
            return
        self.fast_path_counters.withdrawals += 1

    async def _drain(self, name: str, version: int) -> None:
        """Wait until the requests Envoy routed to the version's withdrawn routes before it applied the
        withdrawal have their answers (they may still be on their way to the node, or queued there), or
        ``fast_path.drain_timeout`` has passed: only then may the agent unload it."""
        if not self.settings.fast_path.enabled or not routable(name):
            return
        prefixes = {
            stat_prefix(name, routed) for routed in routed_versions(name, version, self.cluster.latest)
        }
        deadline = time.monotonic() + self.settings.fast_path.drain_timeout
        while True:
            pending = await self.recency.in_flight(prefixes)
            if pending is None or pending <= 0:
                return
            if time.monotonic() >= deadline:
                self.fast_path_counters.drain_timeouts += 1
                log.info("fast_path_drain_timeout model=%s:%d in_flight=%d", name, version, pending)
                return
            await asyncio.sleep(DRAIN_POLL_S)

    async def _time_routes(self, published: float) -> None:
        """How long Envoy took to acknowledge routes just added (histogram ``fast_path_route_seconds``)."""
        try:
            await self.ads.wait_applied(self.settings.fast_path.withdraw_timeout)
        except (ConfigNotAppliedError, ConfigRejectedError):
            return
        self.metrics.route_seconds.observe(time.monotonic() - published)

    async def _refresh_latest(self) -> None:
        """Every ``latest_refresh`` seconds, ask a holder of each model routed without version what the
        latest version is now (``ResolveLatest``: nothing loads, no use is counted). A new version starts
        loading on that holder, and the unversioned route goes until it is resident: meanwhile unversioned
        requests take the slow path, which waits for that load.

        The names are checked in turn, a share of them every ``LATEST_CHECK_TICK_S``, one call per holder
        for that share: the same small load all the time, not a burst, and not a call per model (with 1,000
        models that was 33 calls a second, a few percent of a core in both the daemon and the agent)."""
        period = self.settings.fast_path.latest_refresh
        tick = min(LATEST_CHECK_TICK_S, period)
        position = 0
        while True:
            await asyncio.sleep(tick)
            names = sorted(name for name in self.cluster.latest if routable(name))
            due, position = due_names(names, position, math.ceil(len(names) * tick / period))
            batches: dict[NodeId, list[str]] = {}
            for name in due:
                holders = self.cluster.holders_of(name, self.cluster.latest[name])
                connected = sorted(n for n in holders if self.cluster.connected(n))
                if connected:
                    batches.setdefault(connected[0], []).append(name)
            outcomes = await asyncio.gather(
                *(
                    self._check_latest(node_id, batch[i : i + MAX_RESOLVE_LATEST_NAMES])
                    for node_id, batch in batches.items()
                    for i in range(0, len(batch), MAX_RESOLVE_LATEST_NAMES)
                ),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, Exception):  # a bug, or a client closed meanwhile: check again later
                    log.warning("latest_refresh_failed error=%r", outcome)

    async def _check_latest(self, node_id: NodeId, names: Sequence[str]) -> None:
        agent = self.cluster.agents.get(node_id)
        if agent is None:
            return
        try:
            answers = await agent.resolve_latest(names)
        except ServingError as exc:
            log.info("latest_refresh_failed node=%s models=%d error=%r", node_id, len(names), exc.message)
            return
        for answer in answers:
            if answer.version is None:
                log.info("latest_refresh_failed model=%s error=%r", answer.name, answer.error)
                continue
            if answer.version != self.cluster.latest.get(answer.name):
                log.info("latest_version_changed model=%s version=%d", answer.name, answer.version)
                try:
                    await agent.preload(answer.name, answer.version)
                except ServingError as exc:
                    log.info("latest_refresh_failed model=%s error=%r", answer.name, exc.message)
                    continue
            self.cluster.note_latest(answer.name, answer.version)

    # ----- membership -----------------------------------------------------------------------------

    async def _follow_membership(self) -> None:
        """Apply every membership discovery reports (it keeps the last one while its backend is away)."""
        static = [Member(n.id, n.rest, n.grpc, n.agent, n.weight) for n in self.settings.nodes]
        source = membership_source(self.settings.discovery, static)
        async for members in source.watch():
            nodes = [node for member in members.values() if (node := node_settings(member)) is not None]
            self.membership_counters.members_refused += len(members) - len(nodes)
            self.cluster.set_members(nodes)

    def _cluster_view(self) -> ClusterView:
        nodes = self.cluster.nodes.values()
        return cluster_view(self.settings, self._ext_proc_address, nodes, self._grpc_key_module)

    def _membership_changed(self, joined: frozenset[NodeId], left: frozenset[NodeId]) -> None:
        """New nodes (or none any more) for Envoy at once; resident models whose place is now a new node
        move there."""
        self.membership_counters.joins += len(joined)
        self.membership_counters.leaves += len(left)
        self.publish(self._cluster_view())
        if joined:
            self._spawn(self._rebalance(joined))

    async def _rebalance(self, joined: frozenset[NodeId]) -> None:
        held = {n: h for n, h in self.cluster.held().items() if self.cluster.connected(n)}
        moves = moves_on_join(held, self.cluster.live(), self.settings.replicas, joined)
        if not moves:
            return
        log.info("rebalance_start joined=%s moves=%d", ",".join(sorted(joined)), len(moves))
        self._moving = self._moving or asyncio.Semaphore(MOVES_AT_ONCE)
        await asyncio.gather(*(self._move(move, self._moving) for move in moves))
        log.info("rebalance_done joined=%s moves=%d", ",".join(sorted(joined)), len(moves))

    async def _move(self, move: Move, moving: asyncio.Semaphore) -> None:
        async with moving:
            target = self.cluster.agents.get(move.to)
            source = self.cluster.agents.get(move.source)
            if target is None or source is None:
                return  # the pool changed again meanwhile
            try:
                await target.ensure(move.name, move.version, timeout=self.settings.timeouts.ensure)
                await source.evict(move.name, move.version)
            except ServingError as exc:
                self.membership_counters.move_failures += 1
                log.warning("move_failed move=%s error=%r", move, exc.message)
                return
            self.membership_counters.moves += 1
            log.info("model_moved model=%s:%d from=%s to=%s", move.name, move.version, move.source, move.to)

    def _envoy_admins(self) -> list[str]:
        return [*self.ads.admin_addresses(), *self.settings.fast_path.envoy_admins]

    def _stat_holders(self) -> Holders:
        if self._stat_holders_made is None:
            self._stat_holders_made = holders_by_stat_prefix(self.cluster.held(), self.cluster.latest)
        return self._stat_holders_made

    def _forget_stat_holders(self) -> None:
        self._stat_holders_made = None

    async def _touch(self, node_id: NodeId, hits: Sequence[ModelHits]) -> None:
        await self.cluster.agents[node_id].touch(hits)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, server: Server, listen: str, what: str) -> str:
        host, _, port = listen.rpartition(":")
        try:
            await server.start(host.strip("[]"), int(port))
        except OSError as exc:
            raise ConfigError(f"The daemon's {what} server cannot listen on {listen}: {exc}") from exc
        self._servers.append(server)
        listening = server._server
        assert isinstance(listening, asyncio.Server)  # grpclib's started server
        bound_port = listening.sockets[0].getsockname()[1]
        return f"{host}:{bound_port}"

    async def stop(self) -> None:
        if self._admin is not None:  # first: its calls use the agents' clients
            await self._admin.close()
        await self.recency.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.router.close()
        await self.cluster.close()
        for server in reversed(self._servers):
            server.close()
            await server.wait_closed()
        if self._page is not None:
            await self._page.close()
        await asyncio.sleep(0)


async def run_daemon(settings: DaemonSettings, stop: asyncio.Event | None = None) -> int:
    """``tfscachectl serve``: run until ``stop`` is set (or SIGTERM/SIGINT); returns the exit status."""
    import contextlib
    import signal

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    daemon = Daemon(settings)
    try:
        await daemon.start()
        await stop.wait()
        log.info("daemon_stopping")
    finally:
        await daemon.stop()
    log.info("daemon_stopped")
    return 0
