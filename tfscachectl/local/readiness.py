"""How the supervisor tells that a child is ready: probes polled until they say yes.

- ``PortAccepts``: a TCP connection is accepted (the agents' API, the daemon's xDS server);
- ``HttpAnswers``: an HTTP GET gets any answer, a 404 too (a serving backend's REST API, which TF Serving
  opens only once its initial models are loaded);
- ``EnvoyReady``: Envoy's admin ``/ready`` says ``LIVE`` and its client listeners, which the daemon
  configures over xDS, accept connections.

A probe never raises: anything that goes wrong means "not yet".
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

#: How long one probe may take before it counts as "not yet".
PROBE_TIMEOUT_S = 2.0


class ReadinessProbe(Protocol):
    async def ready(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class PortAccepts:
    host: str
    port: int

    async def ready(self) -> bool:
        return await port_accepts(self.host, self.port)


@dataclass(frozen=True, slots=True)
class HttpAnswers:
    url: str

    async def ready(self) -> bool:
        return await http_status(self.url) is not None


@dataclass(frozen=True, slots=True)
class EnvoyReady:
    admin_address_file: Path
    listener_host: str
    listener_ports: tuple[int, ...]

    async def ready(self) -> bool:
        try:
            address = self.admin_address_file.read_text().strip()
        except OSError:
            return False
        if not address:
            return False
        if await http_text(f"http://{address}/ready") != "LIVE":
            return False
        for port in self.listener_ports:
            if not await port_accepts(_connectable(self.listener_host), port):
                return False
        return True


async def port_accepts(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``host:port`` accepts a TCP connection."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def http_status(url: str, timeout: float = PROBE_TIMEOUT_S) -> int | None:
    """The HTTP status of a GET of ``url``, or None if nothing answered."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url) as response,
        ):
            return response.status
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


async def http_text(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """The stripped body of a GET of ``url`` answered (with any status), or None."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url) as response,
        ):
            return (await response.text()).strip()
    except (aiohttp.ClientError, OSError, TimeoutError, UnicodeDecodeError):
        return None


def _connectable(host: str) -> str:
    """Where to connect to reach a listener bound to ``host`` (the wildcard means this machine)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
