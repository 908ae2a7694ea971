"""The agent process (``tfscachectl agent``): store, ``NodeAgent``, gRPC API and metrics page, until a signal.

Start-up: open the store, start the agent (which waits up to ``timeouts.ready`` for TF Serving; its unloads
wait for the API's confirming watchers, see ``tfscachectl.agent.gate``), start the metrics watcher, the API
on ``listen``, register the node with discovery (etcd or Consul; nothing for static) and the ``/metrics``
page on ``metrics_listen``, then log ``agent_ready``. On the way out the registration goes first.
SIGTERM or SIGINT (also while starting) stops it: residency streams end, calls in flight get
``SHUTDOWN_GRACE_SECONDS``, the agent closes; the exit status is 0. Failures to start are raised
(``ConfigError``, ``StoreError``, ``ServingError`` when TF Serving does not answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable

from tfscachectl.agent.api.server import AgentServer, AgentService
from tfscachectl.agent.gate import WatcherGate
from tfscachectl.agent.metrics import AgentMetrics
from tfscachectl.agent.node import NodeAgent
from tfscachectl.agent.settings import AgentSettings
from tfscachectl.discovery import registration as discovery_registration
from tfscachectl.metrics_page import MetricsPage
from tfscachectl.stores import open_store

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 5.0


async def run_agent(settings: AgentSettings, stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT); returns the process exit status."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    store = open_store(settings.store, settings.s3.store_settings())
    gate = WatcherGate(settings.timeouts.unload_gate)
    agent = NodeAgent(settings, store, gate=gate)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(agent.close)
        if not await _unless_stopped(agent.start(), stop):
            log.info("agent_stopped_while_starting node=%s", settings.node_id)
            return 0
        metrics = AgentMetrics(agent)
        metrics.start()
        stack.push_async_callback(metrics.close)
        server = AgentServer(AgentService(agent, metrics, gate))
        listen = await server.start(settings.listen)
        stack.push_async_callback(server.stop, SHUTDOWN_GRACE_SECONDS)
        registration = discovery_registration(settings.discovery)
        if registration is not None:  # leaves the pool first on the way out, before the API stops
            await registration.start(settings.member(listen))
            stack.push_async_callback(registration.close)
        metrics_listen = "-"
        if settings.metrics_listen is not None:
            page = MetricsPage(metrics)
            metrics_listen = await page.start(settings.metrics_listen)
            stack.push_async_callback(page.close)
        log.info(
            "agent_ready node=%s listen=%s metrics=%s tf_serving=%s store=%s",
            settings.node_id,
            listen,
            metrics_listen,
            settings.tf_serving_grpc,
            settings.store,
        )
        await stop.wait()
        log.info("agent_stopping node=%s", settings.node_id)
    log.info("agent_stopped node=%s", settings.node_id)
    return 0


async def _unless_stopped(work: Awaitable[None], stop: asyncio.Event) -> bool:
    """Run ``work`` unless ``stop`` is set first (then it is cancelled); true if it finished."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return False
    task.result()  # raises what the work raised
    return True
