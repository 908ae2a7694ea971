"""The ADS servicer: state of the world over one gRPC stream per Envoy, glue between cache and streams.

For each stream two tasks feed one queue: one reads Envoy's requests, one waits for the next snapshot.
The handler takes events off the queue, updates the stream's ``StreamState`` and sends whatever responses
it owes, in make-before-break order (CDS, EDS, LDS, RDS). Route configurations and load assignments are
filtered to the names Envoy asked for. A NACK is logged with Envoy's error detail and counted; the
rejected version is not sent again, only a newer snapshot is.

``wait_applied`` lets the daemon wait until every connected Envoy has acknowledged the current snapshot
(for instance before unloading a model whose fast-path route was just withdrawn).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from envoy_data_plane.envoy.config.core.v3 import ControlPlane
from envoy_data_plane.envoy.service.discovery.v3 import (
    AggregatedDiscoveryServiceBase,
    DiscoveryRequest,
    DiscoveryResponse,
)

from xds import type_urls
from xds.cache import SnapshotCache
from xds.counters import XdsCounters
from xds.errors import ConfigNotAppliedError, ConfigRejectedError
from xds.snapshot import Snapshot
from xds.stream import Request, RequestKind, StreamState, TypeStatus

log = logging.getLogger(__name__)

CONTROL_PLANE_ID = "tfscache"
#: The node metadata key under which tfscache's bootstrap gives Envoy's admin address.
ADMIN_METADATA_KEY = "tfscache_admin"
_NO_DETAIL = "(Envoy gave no detail)"


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """One connected Envoy, as the admin API shows it."""

    stream_id: int
    node_id: str
    types: tuple[TypeStatus, ...]
    admin_address: str = ""
    """Where this Envoy says its admin interface is (node metadata :data:`ADMIN_METADATA_KEY`)."""


@dataclass(frozen=True, slots=True)
class _SnapshotChanged:
    pass


@dataclass(frozen=True, slots=True)
class _RequestsEnded:
    error: BaseException | None


_Event = DiscoveryRequest | _SnapshotChanged | _RequestsEnded


def request_of(message: DiscoveryRequest) -> Request:
    """The parts of a DiscoveryRequest that ``StreamState`` needs."""
    error = None
    if message.error_detail is not None:
        error = message.error_detail.message or _NO_DETAIL
    return Request.of(
        message.type_url,
        version_info=message.version_info,
        nonce=message.response_nonce,
        resource_names=message.resource_names,
        error=error,
    )


class AdsServer(AggregatedDiscoveryServiceBase):
    """``StreamAggregatedResources`` from a ``SnapshotCache`` (delta xDS is not offered)."""

    def __init__(self, cache: SnapshotCache, counters: XdsCounters | None = None) -> None:
        self.cache = cache
        self.counters = counters if counters is not None else XdsCounters()
        self._streams: dict[int, StreamState] = {}
        self._admins: dict[int, str] = {}
        self._admin_listeners: list[Callable[[str], None]] = []
        self._stream_ids = itertools.count(1)
        self._progress = asyncio.Event()

    async def stream_aggregated_resources(
        self, messages: AsyncIterator[DiscoveryRequest]
    ) -> AsyncIterator[DiscoveryResponse]:
        state = StreamState(next(self._stream_ids))
        events: asyncio.Queue[_Event] = asyncio.Queue()
        reader = asyncio.create_task(self._read(messages, events), name=f"ads-read-{state.stream_id}")
        watcher = asyncio.create_task(self._watch(events), name=f"ads-watch-{state.stream_id}")
        self._streams[state.stream_id] = state
        self.counters.streams_opened += 1
        log.info("xds.stream.open stream=%d", state.stream_id)
        try:
            while True:
                event = await events.get()
                if isinstance(event, _RequestsEnded):
                    if event.error is not None:
                        raise event.error
                    return
                if isinstance(event, DiscoveryRequest):
                    self._on_request(state, event)
                for response in self._responses(state):
                    yield response
        finally:
            for task in (reader, watcher):
                task.cancel()
            await asyncio.gather(reader, watcher, return_exceptions=True)
            del self._streams[state.stream_id]
            self._admins.pop(state.stream_id, None)
            self.counters.streams_closed += 1
            self._notify_progress()
            log.info("xds.stream.close stream=%d node=%s", state.stream_id, state.node_id or "-")

    def streams(self) -> list[StreamStatus]:
        """The connected Envoys and what each has asked for, been sent and acknowledged."""
        return [
            StreamStatus(
                state.stream_id, state.node_id, tuple(state.status()), self._admins.get(state.stream_id, "")
            )
            for state in self._streams.values()
        ]

    def on_admin(self, listener: Callable[[str], None]) -> None:
        """Call ``listener`` with an Envoy's admin address when its stream opens (before any route)."""
        self._admin_listeners.append(listener)

    def admin_addresses(self) -> list[str]:
        """The admin addresses the connected Envoys gave (those that gave one)."""
        return sorted(set(self._admins.values()))

    def applied(self, snapshot: Snapshot) -> bool:
        """Whether every connected Envoy has acknowledged every type of ``snapshot`` it subscribes to.

        Raises ``ConfigRejectedError`` if one of them rejected a version of ``snapshot``.
        """
        for state in self._streams.values():
            for type_url in type_urls.PUSH_ORDER:
                version = snapshot.version_of(type_url)
                if state.applied(type_url, version):
                    continue
                rejection = state.subscriptions[type_url].rejection
                if rejection is not None and rejection.rejected_version == version:
                    raise ConfigRejectedError(state.node_id, type_url, version, rejection.detail)
                return False
        return True

    async def wait_applied(self, timeout_s: float) -> Snapshot:
        """Wait until every connected Envoy acknowledged the current snapshot (or a later one); returns it.

        With no Envoy connected this returns at once. Raises ``ConfigRejectedError`` on a NACK of it and
        ``ConfigNotAppliedError`` after ``timeout_s``.
        """
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    progress = self._progress
                    snapshot = self.cache.snapshot
                    if snapshot is not None and self.applied(snapshot):
                        return snapshot
                    await progress.wait()
        except TimeoutError as exc:
            version = self.cache.snapshot.version if self.cache.snapshot else "-"
            raise ConfigNotAppliedError(
                f"Envoy did not acknowledge snapshot {version} within {timeout_s:g} s"
            ) from exc

    async def _read(self, messages: AsyncIterator[DiscoveryRequest], events: asyncio.Queue[_Event]) -> None:
        try:
            async for message in messages:
                events.put_nowait(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream broke: end the handler with the reason
            events.put_nowait(_RequestsEnded(exc))
        else:
            events.put_nowait(_RequestsEnded(None))

    async def _watch(self, events: asyncio.Queue[_Event]) -> None:
        seen = self.cache.snapshot
        while True:
            seen = await self.cache.next_snapshot(seen)
            events.put_nowait(_SnapshotChanged())
            self._notify_progress()

    def _on_request(self, state: StreamState, message: DiscoveryRequest) -> None:
        if not state.node_id and message.node is not None:
            state.node_id = message.node.id
            admin = _admin_address(message)
            if admin:
                self._admins[state.stream_id] = admin
                for listener in self._admin_listeners:
                    listener(admin)
        request = request_of(message)
        kind = state.receive(request)
        short = type_urls.short_name(request.type_url)
        if kind is RequestKind.ACK:
            self.counters.acks[request.type_url] += 1
            log.debug("xds.ack node=%s type=%s version=%s", state.node_id, short, request.version_info)
        elif kind is RequestKind.NACK:
            self.counters.nacks[request.type_url] += 1
            rejection = state.subscriptions[request.type_url].rejection
            log.warning(
                "xds.nack node=%s type=%s rejected=%s kept=%s detail=%r",
                state.node_id,
                short,
                rejection.rejected_version if rejection else "-",
                request.version_info or "-",
                request.error,
            )
        elif kind is RequestKind.SUBSCRIBE:
            log.info(
                "xds.subscribe node=%s type=%s names=%s",
                state.node_id,
                short,
                ",".join(sorted(request.resource_names)) or "*",
            )
        self._notify_progress()

    def _responses(self, state: StreamState) -> list[DiscoveryResponse]:
        snapshot = self.cache.snapshot
        if snapshot is None:
            return []
        responses = []
        for type_url in type_urls.PUSH_ORDER:
            version = snapshot.version_of(type_url)
            if not state.needs_response(type_url, version):
                continue
            resources = snapshot.types[type_url].select(state.requested_names(type_url))
            nonce = state.record_sent(type_url, version)
            responses.append(
                DiscoveryResponse(
                    version_info=version,
                    resources=resources,
                    type_url=type_url,
                    nonce=nonce,
                    control_plane=ControlPlane(identifier=CONTROL_PLANE_ID),
                )
            )
            self.counters.pushes[type_url] += 1
            log.debug(
                "xds.push node=%s type=%s version=%s resources=%d",
                state.node_id,
                type_urls.short_name(type_url),
                version,
                len(resources),
            )
        return responses

    def _notify_progress(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()


def _admin_address(message: DiscoveryRequest) -> str:
    """The admin ``host:port`` in the node's metadata, if it is one a peer can use (not 0.0.0.0, port 0)."""
    metadata = message.node.metadata if message.node is not None else None
    value = metadata.fields.get(ADMIN_METADATA_KEY) if metadata is not None else None
    address = value.string_value if value is not None and value.string_value else ""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or int(port) == 0 or host.strip("[]") in ("0.0.0.0", "::"):
        return ""
    return address
