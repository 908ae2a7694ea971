"""Serving an aiohttp application on one ``host:port`` (the metrics pages, the daemon's admin API)."""

from __future__ import annotations

from aiohttp import web

from tfscachectl.errors import ConfigError


async def listen(runner: web.AppRunner, address: str, what: str) -> str:
    """Serve ``runner``'s application on ``host:port`` (port 0: any free port); returns the address bound.

    ``ConfigError`` naming ``what`` when the address cannot be used (taken, not local...).
    """
    host, _, port = address.rpartition(":")
    await runner.setup()
    try:
        await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"The {what} cannot listen on {address}: {exc}") from exc
    bound = runner.addresses[0]
    return f"{host}:{bound[1]}"
