"""aetcd clients built from ``EtcdSettings``: endpoint rotation, user/password, TLS and gRPC keepalive.

aetcd (1.0) opens plaintext channels only; ``_TlsClient`` opens its channel with TLS credentials instead (CA
bundle, and a client certificate for etcd's client-certificate auth) and sets up what aetcd's methods need on
it. It relies on aetcd 1.0's attribute names, so the dependency is pinned below 1.1.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aetcd
import aetcd.watcher
import grpc
from aetcd import rpc

from tfscachectl.discovery.settings import EtcdSettings, parse_etcd_endpoint
from tfscachectl.errors import ConfigError

log = logging.getLogger(__name__)

#: gRPC keepalive pings on idle etcd connections, so a watch on a dead connection fails instead of hanging.
#: etcd refuses clients that ping more often than every 5 s (``--grpc-keepalive-min-time``).
KEEPALIVE_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The PEM contents of the TLS files in the settings (each optional)."""

    ca: bytes | None
    cert: bytes | None
    key: bytes | None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def read_tls_files(settings: EtcdSettings) -> TlsFiles | None:
    """The TLS files' contents if TLS is on, else None; ``ConfigError`` for a file that cannot be read."""
    if not settings.tls:
        return None

    def read(what: str, path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the etcd {what} {path}: {exc.strerror or exc}") from exc

    return TlsFiles(
        read("CA file", settings.ca_file),
        read("certificate", settings.cert_file),
        read("key", settings.key_file),
    )


#: The service stubs an aetcd client talks through, by the attribute it keeps each one in.
_STUBS = {
    "kvstub": "KVStub",
    "clusterstub": "ClusterStub",
    "leasestub": "LeaseStub",
    "maintenancestub": "MaintenanceStub",
}


class _TlsClient(aetcd.Client):  # type: ignore[misc]  # aetcd has no type information
    """An aetcd client whose channel carries TLS credentials (aetcd 1.0 only opens plaintext channels).

    ``connect`` opens the secure channel, authenticates when a user is set (etcd answers a token, sent as
    metadata on every call), and attaches the stubs and the watcher aetcd's methods use; the rest is aetcd.
    """

    def __init__(self, *, credentials: grpc.ChannelCredentials, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._credentials = credentials

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:  # type: ignore[has-type]  # someone else is connecting: wait for them
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        self._is_connecting = True
        try:
            channel = rpc.secure_channel(
                f"{self._host}:{self._port}", self._credentials, options=self._options.items()
            )
            self.channel = channel
            if self._username is not None and self._password is not None:
                self.auth_stub = rpc.AuthStub(channel)
                answer = await self.auth_stub.Authenticate(
                    rpc.AuthenticateRequest(name=self._username, password=self._password),
                    timeout=self._timeout,
                )
                self.metadata = (("token", answer.token),)
            for attribute, stub in _STUBS.items():
                setattr(self, attribute, getattr(rpc, stub)(channel))
            self._watcher = aetcd.watcher.Watcher(
                rpc.WatchStub(channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        finally:
            self._is_connecting = False


class EtcdConnector:
    """Opens clients to the configured endpoints, moving to the next endpoint after a failure."""

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        read_tls_files(settings)  # unreadable files are a settings error, raised now rather than retried
        self._next = 0

    @property
    def endpoint(self) -> str:
        return self.settings.endpoints[self._next]

    def rotate(self) -> None:
        """Use the next endpoint for the next client (after the current one failed)."""
        self._next = (self._next + 1) % len(self.settings.endpoints)

    def client(self) -> Any:
        """A new (not yet connected) aetcd client to the current endpoint; it connects on first use."""
        settings = self.settings
        host, port, _ = parse_etcd_endpoint(self.endpoint)
        options = {
            "grpc.keepalive_time_ms": int(KEEPALIVE_INTERVAL_S * 1000),
            "grpc.keepalive_timeout_ms": int(settings.timeout * 1000),
            # A fresh channel per attempt must not inherit a shared subchannel's reconnect backoff.
            "grpc.use_local_subchannel_pool": 1,
        }
        common: dict[str, Any] = {
            "host": host,
            "port": port,
            "username": settings.username,
            "password": settings.password.get_secret_value() if settings.password is not None else None,
            "timeout": settings.timeout,
            "options": options,
            "connect_wait_timeout": settings.timeout,
        }
        tls = read_tls_files(settings)
        if tls is None:
            return aetcd.Client(**common)
        return _TlsClient(credentials=tls.credentials(), **common)

    async def close(self, client: Any) -> None:
        """Close ``client`` without raising (it may belong to a connection that already failed)."""
        if client is None:
            return
        try:
            await asyncio.wait_for(client.close(), self.settings.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken connection may fail to close; nothing is left to do with it
            log.debug("etcd_client_close_failed error=%r", str(exc))
