"""An ADS server in this process for tests against a real Envoy, on an event loop in a thread.

``AdsThread`` runs ``xds.server.AdsServer`` (and tiny HTTP backends a test wants) on its own loop, so a
test can poll Envoy with blocking calls; fixtures ``ads`` and ``listener_ports`` are in
``tests/integration/conftest.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web
from grpclib.server import Server

from tests.harness.envoy import EnvoyProcess
from tests.harness.processes import LOOPBACK, free_port, wait_until
from xds.cache import SnapshotCache
from xds.server import AdsServer
from xds.snapshot import Snapshot

T = TypeVar("T")
LOOP_CALL_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 15.0
#: Large enough for the xDS tests' 64 MiB messages.
MAX_BODY_BYTES = 2 * 64 * 1024 * 1024


class AdsThread:
    """An event loop in a thread running the ADS server, and any tiny HTTP backends a test wants."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ads-loop", daemon=True)
        self.cache = SnapshotCache()
        self.servicer = AdsServer(self.cache)
        self.port = free_port()
        self._server: Server | None = None
        self._runners: list[web.AppRunner] = []

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = LOOP_CALL_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def run(self, function: Callable[[], T]) -> T:
        """``function()`` on the loop's thread (the cache and the servicer belong to it)."""

        async def call() -> T:
            return function()

        return self.call(call())

    def start(self) -> AdsThread:
        self.thread.start()

        async def serve() -> None:
            self._server = Server([self.servicer])
            await self._server.start(LOOPBACK, self.port)

        self.call(serve())
        return self

    def stop(self) -> None:
        async def close() -> None:
            for runner in self._runners:
                await runner.cleanup()
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        try:
            self.call(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(LOOP_CALL_TIMEOUT_S)
            self.loop.close()

    def set_snapshot(self, snapshot: Snapshot) -> Snapshot:
        return self.run(lambda: self.cache.set_snapshot(snapshot))

    def acked(self) -> dict[str, str | None]:
        """Type URL -> the version the one connected Envoy acknowledged."""
        streams = self.run(self.servicer.streams)
        if len(streams) != 1:
            return {}
        return {status.type_url: status.acked_version for status in streams[0].types}

    def wait_acked(self, envoy: EnvoyProcess, versions: dict[str, str]) -> None:
        wait_until(
            lambda: all(self.acked().get(t) == v for t, v in versions.items()),
            ACK_TIMEOUT_S,
            f"Envoy to acknowledge {versions}",
            process=envoy.process,
        )

    def start_backend(self, name: str) -> int:
        """A tiny HTTP server: a POST gets its body back, anything else its name, path and headers."""

        async def echo(request: web.Request) -> web.Response:
            if request.method == "POST":
                return web.Response(body=await request.read(), headers={"x-backend": name})
            answer = {"backend": name, "path": request.path, "headers": dict(request.headers)}
            return web.json_response(answer)

        async def start() -> int:
            app = web.Application(client_max_size=MAX_BODY_BYTES)
            app.router.add_route("*", "/{tail:.*}", echo)
            runner = web.AppRunner(app)
            await runner.setup()
            self._runners.append(runner)
            port = free_port()
            await web.TCPSite(runner, LOOPBACK, port).start()
            return port

        return self.call(start())


@dataclasses.dataclass(frozen=True)
class Ports:
    """Envoy's listeners and the ext_proc address, fixed for one test."""

    rest: int
    grpc: int
    ext_proc: int
