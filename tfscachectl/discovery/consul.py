"""Consul discovery: agents register a service instance with a TTL check; the daemon follows passing ones.

Registration: register the node (service ID = node id, the member in Meta, a TTL check of ``ttl`` seconds,
passing from the start, deregistered by Consul after ``deregister_after`` seconds critical), then pass the
check every ``ttl / 3``. A pass answered 404 means the Consul agent no longer knows the service (it restarted
without its state): the node registers again. ``close`` deregisters. A node that dies without closing turns
critical ``ttl`` seconds after its last pass, which takes it out of the membership at once (only passing
instances count), and is removed from Consul's catalog after ``deregister_after``.

Membership: ``GET /v1/health/service/<service>?passing=true`` as a blocking query, each time with the
``X-Consul-Index`` of the previous answer and ``wait``. The index is reset to 0 when it goes backwards (as
Consul's documentation asks) and after any error, so the next query lists the instances afresh at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

from tfscachectl.discovery.backoff import DEFAULT_BACKOFF, Backoff
from tfscachectl.discovery.base import Membership
from tfscachectl.discovery.consul_api import ConsulApi, member_from_service
from tfscachectl.discovery.members import Member
from tfscachectl.discovery.outage import OutageLog, cancelled, describe
from tfscachectl.discovery.settings import ConsulSettings
from tfscachectl.errors import ConfigError

log = logging.getLogger(__name__)

#: Check passes per TTL: a pass every ttl / 3 survives two lost passes.
PASSES_PER_TTL = 3
#: Blocking queries are never sent closer together than this (Consul asks clients to rate-limit them).
MIN_QUERY_INTERVAL_S = 0.1


class ConsulRegistration:
    """Keeps one member registered with the local Consul agent until ``close``."""

    def __init__(self, settings: ConsulSettings, *, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self._settings = settings
        self._backoff = backoff
        self._api = ConsulApi(settings)
        self._task: asyncio.Task[None] | None = None
        self._member: Member | None = None
        self._registered = asyncio.Event()

    @property
    def registered(self) -> bool:
        """Whether the Consul agent had the service (with a passing check) at the last call it answered."""
        return self._registered.is_set()

    async def start(self, member: Member) -> None:
        """Register ``member``; returns once registered, or after ``timeout`` seconds (then keeps trying)."""
        if self._task is not None:
            raise ConfigError(f"the Consul registration of {member.node_id} is already started")
        self._member = member
        self._task = asyncio.create_task(
            self._keep_registered(member), name=f"consul-registration-{member.node_id}"
        )
        try:
            await asyncio.wait_for(self._registered.wait(), self._settings.timeout)
        except TimeoutError:
            log.warning(
                "consul_registration_pending node=%s address=%s (registration keeps trying)",
                member.node_id,
                self._settings.address,
            )

    async def close(self) -> None:
        """Stop passing the check and deregister the service; best effort within ``timeout``."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        self._registered.clear()
        try:
            if self._member is not None:
                await asyncio.wait_for(self._api.deregister(self._member.node_id), self._settings.timeout)
                log.info("consul_deregistered node=%s", self._member.node_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # best effort: Consul removes a critical service after deregister_after
            log.warning(
                "consul_deregister_failed node=%s error=%r (Consul removes it after %gs critical)",
                self._member.node_id if self._member else None,
                describe(exc),
                self._settings.deregister_after,
            )
        finally:
            self._member = None
            await self._api.close()

    async def _keep_registered(self, member: Member) -> None:
        outage = OutageLog(log, f"Consul registration of {member.node_id}")
        interval = self._settings.ttl / PASSES_PER_TTL
        while True:
            try:
                if not self._registered.is_set():
                    await self._register(member)
                elif not await self._api.pass_check(member.node_id):
                    log.warning(
                        "consul_check_unknown node=%s (the Consul agent forgot it; registering again)",
                        member.node_id,
                    )
                    self._registered.clear()
                    await self._register(member)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Consul away or refusing: keep trying, the agent keeps serving
                if cancelled():
                    raise asyncio.CancelledError from exc
                attempt = outage.failed(exc)
                # never longer than a pass period: the check must pass within its TTL when Consul is back
                await asyncio.sleep(min(interval, self._backoff.delay(attempt, random.random())))
                continue
            outage.succeeded()
            await asyncio.sleep(interval)

    async def _register(self, member: Member) -> None:
        await self._api.register(member)
        self._registered.set()
        log.info(
            "consul_registered node=%s service=%s ttl=%g deregister_after=%g",
            member.node_id,
            self._settings.service,
            self._settings.ttl,
            self._settings.deregister_after,
        )


class ConsulMembership:
    """The passing instances of the service, followed with blocking queries."""

    def __init__(self, settings: ConsulSettings, *, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self._settings = settings
        self._backoff = backoff
        ConsulApi(settings)  # a settings error (an unreadable CA file) is raised now, not retried
        self._reported: set[tuple[str, str]] = set()

    async def watch(self) -> AsyncIterator[Membership]:
        outage = OutageLog(log, f"Consul membership of {self._settings.service}")
        loop = asyncio.get_running_loop()
        last: Membership | None = None
        index = 0
        async with ConsulApi(self._settings) as api:
            while True:
                started = loop.time()
                try:
                    entries, new_index = await api.healthy_instances(index)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Consul away or refusing: list afresh after a backoff
                    if cancelled():
                        raise asyncio.CancelledError from exc
                    attempt = outage.failed(exc)
                    index = 0
                    await asyncio.sleep(self._backoff.delay(attempt, random.random()))
                    continue
                outage.succeeded()
                if new_index < index:
                    log.info("consul_index_reset previous=%d answer=%d (listing afresh)", index, new_index)
                    index = 0
                else:
                    index = max(new_index, 1)
                members = self._members(entries)
                if members != last:
                    last = dict(members)
                    yield dict(members)
                pause = MIN_QUERY_INTERVAL_S - (loop.time() - started)
                if pause > 0:
                    await asyncio.sleep(pause)

    def _members(self, entries: list[dict[str, Any]]) -> Membership:
        """Members of the health entries; an entry that is no member is logged once and left out."""
        members: Membership = {}
        modify_index: dict[str, int] = {}
        for entry in entries:
            service = entry.get("Service")
            if not isinstance(service, dict):
                continue
            try:
                member = member_from_service(service)
            except ConfigError as exc:
                problem = (str(service.get("ID")), str(exc))
                if problem not in self._reported:
                    self._reported.add(problem)
                    log.warning("consul_member_skipped service_id=%r error=%r", problem[0], problem[1])
                continue
            # The same id registered with two Consul agents: the latest registration wins.
            modified = service.get("ModifyIndex")
            modified = modified if isinstance(modified, int) else 0
            if member.node_id not in members or modified > modify_index[member.node_id]:
                members[member.node_id] = member
                modify_index[member.node_id] = modified
        return members
