"""``GET /metrics``: a Prometheus page served on the event loop (the agent's and the daemon's).

Served on the loop, never in a thread: collectors read state that only the loop touches.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from tfscachectl.errors import ConfigError

METRICS_PATH = "/metrics"


class Exposition(Protocol):
    def exposition(self) -> bytes: ...


class MetricsPage:
    """``GET /metrics`` on ``host:port``, served on the event loop."""

    def __init__(self, metrics: Exposition) -> None:
        self._metrics = metrics
        app = web.Application()
        app.router.add_get(METRICS_PATH, self._page)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self, listen: str) -> str:
        """Listen on ``host:port`` (port 0: any free port); returns the address actually bound."""
        host, _, port = listen.rpartition(":")
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host.strip("[]"), int(port)).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(f"The metrics page cannot listen on {listen}: {exc}") from exc
        bound = self._runner.addresses[0]
        return f"{host}:{bound[1]}"

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
