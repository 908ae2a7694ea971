"""The control daemon as one asyncio process: ADS server, ext_proc server, cluster view, metrics.

``Daemon.start()`` builds Envoy's configuration from the settings (a ``ClusterView``), serves it over ADS,
serves ext_proc, and follows every node's agent; ``Daemon.stop()`` undoes it in reverse order. Every task
has an owner and a way to stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from grpclib.server import Server

from tfscachectl.daemon.cluster import Cluster
from tfscachectl.daemon.extproc import ExtProcCounters, ExtProcOptions, ExtProcService
from tfscachectl.daemon.metrics import DaemonMetrics
from tfscachectl.daemon.router import PlacementRouter, RouterCounters
from tfscachectl.daemon.settings import DaemonSettings
from tfscachectl.errors import ConfigError
from tfscachectl.metrics_page import MetricsPage
from xds import (
    Address,
    ClusterView,
    Limits,
    NodeView,
    Snapshot,
    SnapshotCache,
    Timeouts,
    XdsCounters,
    build_resources,
    read_descriptor_set,
)
from xds.server import AdsServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bound:
    """Where the daemon's servers listen (ports resolved when 0 was asked for)."""

    xds: str
    ext_proc: str
    metrics: str | None


def cluster_view(settings: DaemonSettings, ext_proc: str) -> ClusterView:
    """Envoy's configuration input from the settings (every static node healthy)."""
    return ClusterView(
        nodes=tuple(NodeView(n.id, Address.parse(n.rest), Address.parse(n.grpc)) for n in settings.nodes),
        ext_proc=Address.parse(ext_proc),
        rest_listener=Address.parse(settings.rest_listen),
        grpc_listener=Address.parse(settings.grpc_listen),
        timeouts=Timeouts(ensure_deadline_s=settings.timeouts.ensure, request_s=settings.timeouts.request),
        grpc_descriptors=read_descriptor_set(),
        limits=Limits(message_bytes=settings.max_message_bytes),
        retries=settings.connect_retries,
    )


class Daemon:
    def __init__(self, settings: DaemonSettings) -> None:
        self.settings = settings
        self.cluster = Cluster(settings.nodes)
        self.xds_counters = XdsCounters()
        self.cache = SnapshotCache()
        self.ads = AdsServer(self.cache, self.xds_counters)
        extproc_counters, router_counters = ExtProcCounters(), RouterCounters()
        self.metrics = DaemonMetrics(extproc_counters, router_counters, self.xds_counters, self.cluster)
        self.router = PlacementRouter(
            self.cluster, settings, observe=self.metrics.observe_ensure, counters=router_counters
        )
        self.extproc = ExtProcService(
            self.router, ExtProcOptions(route_timeout_s=settings.timeouts.ensure), extproc_counters
        )
        self._servers: list[Server] = []
        self._page: MetricsPage | None = None
        self._version = 0

    async def start(self) -> Bound:
        ext_proc = await self._serve(Server([self.extproc]), self.settings.ext_proc_listen, "ext_proc")
        address = self.settings.daemon_address or ext_proc
        self.publish(cluster_view(self.settings, address))
        xds = await self._serve(Server([self.ads]), self.settings.xds_listen, "xDS")
        metrics = None
        if self.settings.metrics_listen is not None:
            self._page = MetricsPage(self.metrics)
            metrics = await self._page.start(self.settings.metrics_listen)
        self.cluster.start()
        bound = Bound(xds=xds, ext_proc=ext_proc, metrics=metrics)
        log.info(
            "daemon_ready xds=%s ext_proc=%s metrics=%s nodes=%d",
            bound.xds,
            bound.ext_proc,
            bound.metrics,
            len(self.settings.nodes),
        )
        return bound

    def publish(self, view: ClusterView) -> Snapshot:
        """Build and serve a new snapshot for ``view``."""
        self._version += 1
        version = f"{self._version}-{int(time.time())}"
        snapshot = Snapshot.create(version, build_resources(view).by_type())
        return self.cache.set_snapshot(snapshot)

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
