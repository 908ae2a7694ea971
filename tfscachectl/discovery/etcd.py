"""etcd discovery: each agent keeps ``prefix + node_id`` alive with a lease; the daemon watches the prefix.

Registration: grant a lease of ``ttl`` seconds (rounded up to whole seconds, as etcd counts them), put the
member document under it, and refresh the lease every ``ttl / 3``. When a refresh finds the lease gone (etcd
lost it: restarted without its data, or the lease expired during an outage) a new lease is granted and the
key put again. ``close`` revokes the lease, which deletes the key at once. A node that dies without closing
disappears when its lease expires, ``ttl`` seconds after its last refresh.

Membership: list the prefix, then watch it from the revision after the listing. On any error (etcd away, the
watch cancelled, a compacted revision) the connection is dropped and, after a backoff, the prefix is listed
afresh. A value that is not a member document (or names another node than its key) is logged and left out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator
from typing import Any

from tfscachectl.discovery.backoff import DEFAULT_BACKOFF, Backoff
from tfscachectl.discovery.base import DiscoveryError, Membership
from tfscachectl.discovery.etcd_client import EtcdConnector
from tfscachectl.discovery.members import Member
from tfscachectl.discovery.outage import OutageLog, cancelled, describe
from tfscachectl.discovery.settings import EtcdSettings
from tfscachectl.errors import ConfigError

log = logging.getLogger(__name__)

#: Keepalives per lease period: a refresh every ttl / 3 survives two lost refreshes.
KEEPALIVES_PER_TTL = 3


def lease_seconds(ttl: float) -> int:
    """etcd leases are whole seconds: ``ttl`` rounded up, at least 1."""
    return max(1, math.ceil(ttl))


class EtcdRegistration:
    """Keeps one member registered in etcd under a lease until ``close``."""

    def __init__(self, settings: EtcdSettings, *, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self._settings = settings
        self._backoff = backoff
        self._connector = EtcdConnector(settings)
        self._task: asyncio.Task[None] | None = None
        self._member: Member | None = None
        self._lease_id: int | None = None
        self._registered = asyncio.Event()

    @property
    def registered(self) -> bool:
        """Whether the key is in etcd under a live lease, as far as the last call to etcd said."""
        return self._registered.is_set()

    @property
    def lease_id(self) -> int | None:
        return self._lease_id

    @property
    def key(self) -> bytes:
        if self._member is None:
            raise ConfigError("the etcd registration was not started")
        return (self._settings.prefix + self._member.node_id).encode()

    async def start(self, member: Member) -> None:
        """Register ``member``; returns once registered, or after ``timeout`` seconds (then keeps trying)."""
        if self._task is not None:
            raise ConfigError(f"the etcd registration of {member.node_id} is already started")
        self._member = member
        self._task = asyncio.create_task(
            self._keep_registered(member), name=f"etcd-registration-{member.node_id}"
        )
        try:
            await asyncio.wait_for(self._registered.wait(), self._settings.timeout)
        except TimeoutError:
            log.warning(
                "etcd_registration_pending node=%s endpoints=%s (registration keeps trying)",
                member.node_id,
                ",".join(self._settings.endpoints),
            )

    async def close(self) -> None:
        """Stop the keepalive and revoke the lease (deleting the key); best effort within ``timeout``."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        lease_id, self._lease_id = self._lease_id, None
        self._registered.clear()
        if lease_id is None:
            return
        client = self._connector.client()
        try:
            await asyncio.wait_for(client.revoke_lease(lease_id), self._settings.timeout)
            log.info("etcd_deregistered key=%s", self.key.decode())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # best effort: the lease expires by itself within ttl
            log.warning(
                "etcd_revoke_failed key=%s error=%r (the key expires with its lease)",
                self.key.decode(),
                describe(exc),
            )
        finally:
            await self._connector.close(client)

    async def _keep_registered(self, member: Member) -> None:
        outage = OutageLog(log, f"etcd registration of {member.node_id}")
        interval = self._settings.ttl / KEEPALIVES_PER_TTL
        client: Any = None
        try:
            while True:
                try:
                    if client is None:
                        client = self._connector.client()
                    if self._lease_id is None or not await self._refresh(client):
                        await self._register(client, member)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # etcd away or refusing: keep trying, the agent keeps serving
                    if cancelled():
                        raise asyncio.CancelledError from exc
                    self._registered.clear()
                    attempt = outage.failed(exc)
                    await self._connector.close(client)
                    client = None
                    self._connector.rotate()
                    # never longer than a keepalive period: once etcd is back, the lease (which etcd keeps
                    # across its restarts) must be refreshed before it expires, or the node would leave
                    await asyncio.sleep(min(interval, self._backoff.delay(attempt, random.random())))
                    continue
                outage.succeeded()
                await asyncio.sleep(interval)
        finally:
            await self._connector.close(client)

    async def _refresh(self, client: Any) -> bool:
        """Refresh the lease; False if etcd no longer has it."""
        response = await client.refresh_lease(self._lease_id)
        if response is None:
            raise DiscoveryError("etcd answered a lease keepalive with nothing")
        if response.TTL > 0:
            self._registered.set()
            return True
        log.warning("etcd_lease_lost key=%s lease=%x (registering again)", self.key.decode(), self._lease_id)
        self._lease_id = None
        self._registered.clear()
        return False

    async def _register(self, client: Any, member: Member) -> None:
        lease = await client.lease(lease_seconds(self._settings.ttl))
        self._lease_id = lease.id
        try:
            await client.put(self.key, member.to_json(), lease=lease.id)
        except BaseException:
            self._lease_id = None  # the lease (without a key) just expires
            raise
        self._registered.set()
        log.info(
            "etcd_registered key=%s lease=%x ttl=%d",
            self.key.decode(),
            lease.id,
            lease_seconds(self._settings.ttl),
        )


class EtcdMembership:
    """The members under the prefix: listed, then watched; listed afresh after any error."""

    def __init__(self, settings: EtcdSettings, *, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self._settings = settings
        self._backoff = backoff
        self._connector = EtcdConnector(settings)
        self._prefix = settings.prefix.encode()

    async def watch(self) -> AsyncIterator[Membership]:
        outage = OutageLog(log, "etcd membership")
        last: Membership | None = None
        client: Any = None
        try:
            while True:
                try:
                    client = self._connector.client()
                    listing = await client.get_prefix(self._prefix)
                    members: Membership = {}
                    for kv in listing:
                        self._apply_put(members, kv.key, kv.value)
                    outage.succeeded()
                    if members != last:
                        last = dict(members)
                        yield dict(members)
                    watch = await client.watch_prefix(
                        self._prefix, start_revision=listing.header.revision + 1
                    )
                    async for event in watch:
                        if event.kind == "PUT":
                            self._apply_put(members, event.kv.key, event.kv.value)
                        else:
                            members.pop(self._node_id(event.kv.key), None)
                        if members != last:
                            last = dict(members)
                            yield dict(members)
                    raise DiscoveryError("the etcd watch ended")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # etcd away, watch broken: list afresh after a backoff
                    if cancelled():
                        raise asyncio.CancelledError from exc
                    attempt = outage.failed(exc)
                    await self._connector.close(client)
                    client = None
                    self._connector.rotate()
                    await asyncio.sleep(self._backoff.delay(attempt, random.random()))
        finally:
            await self._connector.close(client)

    def _node_id(self, key: bytes) -> str:
        return key[len(self._prefix) :].decode("utf-8", errors="replace")

    def _apply_put(self, members: Membership, key: bytes, value: bytes) -> None:
        """Set the member of ``key`` from ``value``; a value that is no member is logged and leaves it out."""
        node_id = self._node_id(key)
        try:
            member = Member.from_json(value)
            if member.node_id != node_id:
                raise ConfigError(f"the document is node {member.node_id!r}, under the key of {node_id!r}")
        except ConfigError as exc:
            members.pop(node_id, None)
            log.warning(
                "etcd_member_skipped key=%r error=%r", key.decode("utf-8", errors="replace"), str(exc)
            )
            return
        members[node_id] = member
