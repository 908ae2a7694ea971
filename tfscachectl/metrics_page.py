"""``GET /metrics``: a Prometheus page served on the event loop (the agent's and the daemon's).

Served on the loop, never in a thread: collectors read state that only the loop touches.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from tfscachectl import http_site

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
        return await http_site.listen(self._runner, listen, "metrics page")

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
