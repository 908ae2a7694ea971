"""``ConsulApiStandIn``: a STAND-IN for the few Consul HTTP API endpoints tfscache uses. It is NOT Consul.

No Consul agent can be installed from the package registries available here, so the Consul discovery backend
is tested against this small aiohttp server, written from Consul's HTTP API documentation. It implements only:

- ``PUT /v1/agent/service/register`` (``replace-existing-checks``): a service with one TTL check (``Check``)
  whose id is ``service:<service id>`` unless ``CheckID`` says otherwise; ``Status`` sets the initial status
  (default critical; a re-registration without ``Status`` keeps the check's current status);
- ``PUT /v1/agent/service/deregister/<service id>`` (404 for an unknown id);
- ``PUT /v1/agent/check/pass/<check id>`` (404 ``Unknown check ID`` for an unknown check);
- TTL expiry: a check not passed for its ``TTL`` turns critical; a service whose check stays critical for
  ``DeregisterCriticalServiceAfter`` is deregistered (checked every ``reap_interval``; real Consul reaps every
  30 s and never sooner than one minute);
- ``GET /v1/health/service/<name>`` with ``passing`` and ``dc``, as a blocking query: ``index`` and ``wait``
  (Go durations, default 5 m, at most 10 m, plus up to wait/16 of jitter); the ``X-Consul-Index`` header is
  the index of the last write that touched the service (at least 1); a query with an index at or above it
  waits for a later write or for ``wait``;
- ACLs reduced to one token: with ``token`` set, a request without that ``X-Consul-Token`` gets 403.

The server runs on its own event loop in a thread. ``stop()`` closes the port and drops open connections
(an outage); ``start()`` opens the same port again. ``stop(forget=True)`` also forgets every service and
resets the index, as a Consul dev agent does on restart; ``forget()`` does that while serving, so a
follower sees the index go backwards in an answer.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from tests.harness.processes import LOOPBACK, free_port

T = TypeVar("T")
LOOP_CALL_TIMEOUT_S = 10.0
DEFAULT_WAIT_S = 300.0
MAX_WAIT_S = 600.0
TOKEN_HEADER = "X-Consul-Token"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds from a Go duration (``10s``, ``1.5s``, ``1m30s``, ``1500ms``); ``ValueError`` otherwise."""
    if not text or _DURATION.sub("", text):
        raise ValueError(f"time: invalid duration {text!r}")
    return sum(float(number) * _UNIT_S[unit] for number, unit in _DURATION.findall(text))


@dataclass
class _Check:
    check_id: str
    name: str
    service_id: str
    ttl: float
    deregister_after: float | None
    status: str
    last_pass: float
    critical_since: float | None
    create_index: int
    modify_index: int


@dataclass
class _Service:
    service_id: str
    name: str
    address: str
    port: int
    tags: list[str]
    meta: dict[str, str]
    create_index: int
    modify_index: int
    check_ids: list[str] = field(default_factory=list)


class _Catalog:
    """The stand-in's state. Touched only on its event loop."""

    def __init__(self) -> None:
        #: 1 is "nothing written yet" (what a query for an unknown service answers): writes start at 2.
        self.index = 1
        self.services: dict[str, _Service] = {}
        self.checks: dict[str, _Check] = {}
        #: Service name -> index of the last write that touched it.
        self.name_index: dict[str, int] = {}
        self.changed = asyncio.Condition()

    async def write(self, *names: str) -> int:
        self.index += 1
        for name in names:
            self.name_index[name] = self.index
        async with self.changed:
            self.changed.notify_all()
        return self.index


class ConsulApiStandIn:
    """A stand-in (NOT Consul) for Consul's agent, check and health endpoints; see the module docstring."""

    def __init__(
        self,
        *,
        token: str | None = None,
        datacenter: str = "dc1",
        node_name: str = "consul-standin",
        reap_interval: float = 0.05,
    ) -> None:
        self.port = free_port()
        self.token = token
        self.datacenter = datacenter
        self.node_name = node_name
        self.node_id = str(uuid.uuid4())
        self.reap_interval = reap_interval
        self.requests: list[tuple[str, str]] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="consul-standin", daemon=True)
        self._thread.start()
        self._catalog: _Catalog = self.call(self._new_catalog())
        self._runner: web.AppRunner | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._blocked: set[asyncio.Task[Any]] = set()

    @property
    def address(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    # ----- control, from the test's thread -------------------------------------------------------

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = LOOP_CALL_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> ConsulApiStandIn:
        """Open the port (again); returns once it accepts connections."""
        self.call(self._start())
        return self

    def stop(self, *, forget: bool = False) -> None:
        """Close the port and drop open connections; ``forget`` also loses every service and the index."""
        self.call(self._stop(forget))

    def restart(self, *, forget: bool = False) -> ConsulApiStandIn:
        self.stop(forget=forget)
        return self.start()

    def close(self) -> None:
        """Stop, and end the stand-in's thread."""
        try:
            if self._thread.is_alive():
                self.call(self._stop(False))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(LOOP_CALL_TIMEOUT_S)
            self.loop.close()

    def service_ids(self) -> set[str]:
        """Ids of the registered services (any status)."""

        async def ids() -> set[str]:
            return set(self._catalog.services)

        return self.call(ids())

    def check_status(self, check_id: str) -> str | None:
        async def status() -> str | None:
            check = self._catalog.checks.get(check_id)
            return None if check is None else check.status

        return self.call(status())

    def forget(self) -> None:
        """Lose every service and reset the index while serving (say, a restore from an old snapshot).

        Blocked queries answer at once, with the new, lower index.
        """

        async def forget() -> None:
            old, self._catalog = self._catalog, _Catalog()
            async with old.changed:
                old.changed.notify_all()

        self.call(forget())

    def deregister_now(self, service_id: str) -> None:
        """Remove a service as an operator would (``consul services deregister``)."""
        self.call(self._deregister(service_id))

    @property
    def index(self) -> int:
        async def index() -> int:
            return self._catalog.index

        return self.call(index())

    # ----- the server, on the loop ---------------------------------------------------------------

    async def _new_catalog(self) -> _Catalog:
        return _Catalog()

    async def _start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(middlewares=[self._acl])
        app.router.add_put("/v1/agent/service/register", self._register)
        app.router.add_put("/v1/agent/service/deregister/{service_id}", self._deregister_handler)
        app.router.add_put("/v1/agent/check/pass/{check_id}", self._pass)
        app.router.add_get("/v1/health/service/{name}", self._health)
        runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, LOOPBACK, self.port).start()
        self._runner = runner
        self._reaper = asyncio.create_task(self._reap())

    async def _stop(self, forget: bool) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.wait([self._reaper])
            self._reaper = None
        for task in list(self._blocked):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if forget:
            self._catalog = _Catalog()

    @web.middleware
    async def _acl(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if self.token is not None:
            given = request.headers.get(TOKEN_HEADER) or request.query.get("token")
            if given != self.token:
                return web.Response(status=403, text="ACL not found")
        response: web.StreamResponse = await handler(request)
        return response

    async def _register(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            return web.Response(status=400, text=f"Request decode failed: {exc}")
        if not isinstance(body, dict) or not isinstance(body.get("Name"), str) or not body["Name"]:
            return web.Response(status=400, text="Missing service name")
        name = body["Name"]
        service_id = body.get("ID") or name
        checks = list(body.get("Checks") or [])
        if body.get("Check"):
            checks.insert(0, body["Check"])
        parsed = []
        for number, check in enumerate(checks, start=1):
            if "TTL" not in check:
                return web.Response(status=400, text="The stand-in implements TTL checks only")
            try:
                ttl = parse_go_duration(check["TTL"])
                after = check.get("DeregisterCriticalServiceAfter")
                deregister_after = parse_go_duration(after) if after else None
            except ValueError as exc:
                return web.Response(status=400, text=f"Invalid check: {exc}")
            default_id = f"service:{service_id}" if len(checks) == 1 else f"service:{service_id}:{number}"
            parsed.append((check.get("CheckID") or default_id, check, ttl, deregister_after))
        catalog = self._catalog
        previous = catalog.services.get(service_id)
        index = await catalog.write(name, *([previous.name] if previous else []))
        now = time.monotonic()
        new_checks: dict[str, _Check] = {}
        for check_id, check, ttl, deregister_after in parsed:
            old = catalog.checks.get(check_id)
            status = check.get("Status") or (old.status if old is not None else "critical")
            new_checks[check_id] = _Check(
                check_id=check_id,
                name=check.get("Name") or f"Service '{name}' check",
                service_id=service_id,
                ttl=ttl,
                deregister_after=deregister_after,
                status=status,
                last_pass=now,
                critical_since=None if status == "passing" else now,
                create_index=old.create_index if old is not None else index,
                modify_index=index,
            )
        if previous is not None and request.query.get("replace-existing-checks") in ("true", "1", ""):
            for check_id in previous.check_ids:
                catalog.checks.pop(check_id, None)
        catalog.checks.update(new_checks)
        kept = [
            c for c in (previous.check_ids if previous else []) if c in catalog.checks and c not in new_checks
        ]
        catalog.services[service_id] = _Service(
            service_id=service_id,
            name=name,
            address=body.get("Address") or "",
            port=int(body.get("Port") or 0),
            tags=list(body.get("Tags") or []),
            meta={str(k): str(v) for k, v in (body.get("Meta") or {}).items()},
            create_index=previous.create_index if previous is not None else index,
            modify_index=index,
            check_ids=kept + list(new_checks),
        )
        return web.Response(status=200)

    async def _deregister_handler(self, request: web.Request) -> web.Response:
        service_id = request.match_info["service_id"]
        if service_id not in self._catalog.services:
            return web.Response(status=404, text=f'Unknown service ID "{service_id}"')
        await self._deregister(service_id)
        return web.Response(status=200)

    async def _deregister(self, service_id: str) -> None:
        catalog = self._catalog
        service = catalog.services.pop(service_id, None)
        if service is None:
            return
        for check_id in service.check_ids:
            catalog.checks.pop(check_id, None)
        await catalog.write(service.name)

    async def _pass(self, request: web.Request) -> web.Response:
        check_id = request.match_info["check_id"]
        catalog = self._catalog
        check = catalog.checks.get(check_id)
        if check is None:
            return web.Response(
                status=404,
                text=f'Unknown check ID "{check_id}". '
                "Ensure that the check ID is passed, not the check name.",
            )
        check.last_pass = time.monotonic()
        if check.status != "passing":
            check.status = "passing"
            check.critical_since = None
            service = catalog.services.get(check.service_id)
            check.modify_index = await catalog.write(*([service.name] if service else []))
        return web.Response(status=200)

    async def _reap(self) -> None:
        """Turn checks critical after their TTL; deregister services critical for too long."""
        while True:
            await asyncio.sleep(self.reap_interval)
            catalog = self._catalog
            now = time.monotonic()
            for check in list(catalog.checks.values()):
                service = catalog.services.get(check.service_id)
                if check.status == "passing" and now - check.last_pass > check.ttl:
                    check.status = "critical"
                    check.critical_since = now
                    check.modify_index = await catalog.write(*([service.name] if service else []))
                elif (
                    check.status == "critical"
                    and check.deregister_after is not None
                    and check.critical_since is not None
                    and now - check.critical_since > check.deregister_after
                ):
                    await self._deregister(check.service_id)

    async def _health(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        query = request.query
        if query.get("dc", self.datacenter) != self.datacenter:
            return web.Response(status=500, text="No path to datacenter")
        try:
            index = int(query.get("index", "0"))
            if index < 0:
                raise ValueError(index)
        except ValueError:
            return web.Response(status=400, text="Invalid index")
        try:
            wait = min(parse_go_duration(query["wait"]), MAX_WAIT_S) if "wait" in query else DEFAULT_WAIT_S
        except ValueError:
            return web.Response(status=400, text="Invalid wait time")
        passing_only = "passing" in query and query["passing"] not in ("false", "0")
        if index > 0:
            task = asyncio.current_task()
            assert task is not None
            self._blocked.add(task)
            try:
                await self._wait_for_write(name, index, wait + random.uniform(0, wait / 16))
            finally:
                self._blocked.discard(task)
        catalog = self._catalog
        entries = [
            self._entry(service)
            for service in sorted(catalog.services.values(), key=lambda s: s.service_id)
            if service.name == name
        ]
        if passing_only:
            entries = [e for e in entries if all(c["Status"] == "passing" for c in e["Checks"])]
        return web.json_response(
            entries,
            headers={
                "X-Consul-Index": str(max(catalog.name_index.get(name, 0), 1)),
                "X-Consul-KnownLeader": "true",
                "X-Consul-LastContact": "0",
            },
        )

    async def _wait_for_write(self, name: str, index: int, wait: float) -> None:
        catalog = self._catalog

        def written() -> bool:
            return self._catalog is not catalog or max(catalog.name_index.get(name, 0), 1) > index

        async with catalog.changed:
            try:
                await asyncio.wait_for(catalog.changed.wait_for(written), wait)
            except TimeoutError:
                pass

    def _entry(self, service: _Service) -> dict[str, Any]:
        node = {
            "ID": self.node_id,
            "Node": self.node_name,
            "Address": LOOPBACK,
            "Datacenter": self.datacenter,
            "TaggedAddresses": {"lan": LOOPBACK, "wan": LOOPBACK},
            "Meta": {},
        }
        checks: list[dict[str, Any]] = [
            {
                "Node": self.node_name,
                "CheckID": "serfHealth",
                "Name": "Serf Health Status",
                "Status": "passing",
                "Notes": "",
                "Output": "Agent alive and reachable",
                "ServiceID": "",
                "ServiceName": "",
                "ServiceTags": [],
                "Type": "",
            }
        ]
        for check_id in service.check_ids:
            check = self._catalog.checks[check_id]
            checks.append(
                {
                    "Node": self.node_name,
                    "CheckID": check.check_id,
                    "Name": check.name,
                    "Status": check.status,
                    "Notes": "",
                    "Output": "" if check.status == "passing" else "TTL expired",
                    "ServiceID": service.service_id,
                    "ServiceName": service.name,
                    "ServiceTags": service.tags,
                    "Type": "ttl",
                    "CreateIndex": check.create_index,
                    "ModifyIndex": check.modify_index,
                }
            )
        return {
            "Node": node,
            "Service": {
                "ID": service.service_id,
                "Service": service.name,
                "Tags": service.tags,
                "Address": service.address,
                "Meta": service.meta,
                "Port": service.port,
                "Weights": {"Passing": 1, "Warning": 1},
                "EnableTagOverride": False,
                "CreateIndex": service.create_index,
                "ModifyIndex": service.modify_index,
            },
            "Checks": checks,
        }
