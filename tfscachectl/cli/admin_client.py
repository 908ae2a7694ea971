"""``AdminClient``: the daemon's admin API (``tfscachectl.daemon.admin``) for the operator commands.

Every failure is an ``AdminError`` with one line a user can act on::

    TfsCacheError
    └── AdminError                  the daemon refused or failed the request (its message and code)
        ├── AdminUnreachableError   nothing answers at the admin URL (connection refused, timed out...)
        └── AdminAuthError          401: the token is missing or wrong

``httpx`` is imported at the first request, so commands that never call the daemon do not pay for it; a
``transport`` can be given (``httpx.MockTransport``) to test the error mapping without a socket.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tfscachectl.core.refs import ModelRef
from tfscachectl.errors import ConfigError, TfsCacheError

if TYPE_CHECKING:
    import httpx

DEFAULT_ADMIN_URL = "http://127.0.0.1:18002"
ADMIN_URL_ENV = "TFSCACHE_ADMIN_URL"
ADMIN_TOKEN_ENV = "TFSCACHE_ADMIN_TOKEN"
API_PREFIX = "/v1"

Document = dict[str, Any]


class AdminError(TfsCacheError):
    """The daemon's admin API refused or failed a request; ``code`` is its status code's name, if any."""

    def __init__(self, message: str, code: str | None = None, document: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.document: Document = dict(document or {})


class AdminUnreachableError(AdminError):
    """Nothing answered at the admin URL."""


class AdminAuthError(AdminError):
    """The admin API wants a token, or another one."""


@dataclass(frozen=True, slots=True)
class AdminTimeouts:
    """Seconds: to connect, for an answer, and for an answer that waits for loads (preload, pin)."""

    connect: float = 5.0
    read: float = 60.0
    wait: float = 600.0


def admin_url(text: str) -> str:
    """``text`` as a base URL: ``host:port`` gets ``http://``; no trailing ``/``."""
    url = text.strip()
    if not url:
        raise ConfigError(f"The admin URL is empty (--admin or {ADMIN_URL_ENV})")
    if "://" not in url:
        url = f"http://{url}"
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"The admin URL must be http:// or https://, not {text!r}")
    return url.rstrip("/")


def _target(ref: ModelRef, node: str | None = None) -> Document:
    body: Document = {"model": ref.name, "version": ref.version}
    if node is not None:
        body["node"] = node
    return body


class AdminClient:
    """One daemon's admin API. Use with ``async with``, on one event loop."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeouts: AdminTimeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = admin_url(url)
        self.token = token or None
        self.timeouts = timeouts or AdminTimeouts()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # ----- calls --------------------------------------------------------------------------------

    async def status(self) -> Document:
        return await self._request("GET", "status")

    async def models(self, limit: int | None = None) -> Document:
        return await self._request("GET", "models", params={"limit": limit} if limit else None)

    async def evict(self, ref: ModelRef, node: str | None = None) -> Document:
        return await self._request("POST", "evict", _target(ref, node), waits=True)

    async def preload(
        self, refs: Sequence[ModelRef], replicas: int | None = None, wait: bool = True
    ) -> Document:
        body = {"models": [_target(ref) for ref in refs], "replicas": replicas, "wait": wait}
        return await self._request("POST", "preload", body, waits=wait)

    async def pin(self, ref: ModelRef, node: str | None = None) -> Document:
        return await self._request("POST", "pin", _target(ref, node), waits=True)

    async def unpin(self, ref: ModelRef, node: str | None = None) -> Document:
        return await self._request("POST", "unpin", _target(ref, node))

    # ----- plumbing -----------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        import httpx

        if self._client is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._client = httpx.AsyncClient(
                base_url=self.url,
                headers=headers,
                timeout=httpx.Timeout(self.timeouts.read, connect=self.timeouts.connect),
                transport=self._transport,
            )
        return self._client

    async def _request(
        self,
        method: str,
        endpoint: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        waits: bool = False,
    ) -> Document:
        import httpx

        path = f"{API_PREFIX}/{endpoint}"
        read = self.timeouts.wait if waits else self.timeouts.read
        timeout = httpx.Timeout(read, connect=self.timeouts.connect)
        try:
            response = await self._http().request(method, path, json=body, params=params, timeout=timeout)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise ConfigError(f"Invalid admin URL {self.url!r}: {exc}") from exc
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise AdminUnreachableError(
                f"The daemon's admin API at {self.url} is unreachable ({_reason(exc)}); is the daemon "
                f"running? Give its address with --admin or {ADMIN_URL_ENV}"
            ) from exc
        except httpx.TimeoutException as exc:
            raise AdminError(
                f"The daemon's admin API at {self.url} did not answer within {read:g} s"
            ) from exc
        except httpx.TransportError as exc:
            raise AdminUnreachableError(
                f"The daemon's admin API at {self.url} failed: {_reason(exc)}"
            ) from exc
        return self._document(response)

    def _document(self, response: httpx.Response) -> Document:
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise AdminError(
                f"{self.url} does not answer as tfscache's admin API (HTTP {response.status_code} on "
                f"{response.request.url.path}); is --admin the daemon's admin address?"
            )
        if response.status_code == 401:
            if self.token is None:
                raise AdminAuthError(
                    f"The daemon's admin API at {self.url} needs a token: give it with --token or "
                    f"{ADMIN_TOKEN_ENV}",
                    "UNAUTHENTICATED",
                )
            raise AdminAuthError(
                f"The daemon's admin API at {self.url} refused the token (--token or {ADMIN_TOKEN_ENV}): "
                f"{document.get('error', 'unauthorized')}",
                "UNAUTHENTICATED",
            )
        if response.status_code >= 400:
            message = document.get("error") or f"HTTP {response.status_code}"
            raise AdminError(str(message), document.get("code"), document)
        return document


def _reason(exc: BaseException) -> str:
    """A transport error in a few words: the operating system's reason when there is one (``Connection
    refused``), else httpx's message, else the error's class name."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno)
        cause = cause.__cause__ or cause.__context__
    return str(exc).strip() or type(exc).__name__
