"""The few Consul HTTP API calls discovery makes, over aiohttp, and the member <-> service encoding.

- ``PUT /v1/agent/service/register?replace-existing-checks=true``: the node as a service (ID = node id) with a
  TTL check (``service:<node id>``) that Consul deregisters after ``DeregisterCriticalServiceAfter``;
- ``PUT /v1/agent/check/pass/service:<node id>``: the heartbeat; 404 means the agent does not know the check
  (it restarted and lost its state), so the node registers again;
- ``PUT /v1/agent/service/deregister/<node id>``;
- ``GET /v1/health/service/<service>?passing=true`` with blocking queries (``index``, ``wait``; the answer's
  ``X-Consul-Index``).

The member travels in the service's ``Meta``, one key per field (Consul Meta values are strings of at most
512 characters), ``tfscache-v`` first; the node id is the service ID. An ACL token goes in ``X-Consul-Token``.
Failures become ``DiscoveryError`` (an answer Consul gave) or stay aiohttp/timeout errors (no answer); the
backend's retry loops handle both.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from tfscachectl.discovery.base import DiscoveryError
from tfscachectl.discovery.members import Member
from tfscachectl.discovery.settings import ConsulSettings
from tfscachectl.errors import ConfigError

#: A blocking query may take this much longer than its ``wait``: Consul adds up to wait/16 of jitter.
CONSUL_WAIT_JITTER_FRACTION = 1 / 16
TOKEN_HEADER = "X-Consul-Token"
INDEX_HEADER = "X-Consul-Index"
#: Meta keys of each member field (Meta keys: letters, digits, dashes and underscores).
META_KEYS = {
    "v": "tfscache-v",
    "rest": "tfscache-rest",
    "grpc": "tfscache-grpc",
    "agent": "tfscache-agent",
    "weight": "tfscache-weight",
    "max_models": "tfscache-max-models",
    "max_bytes": "tfscache-max-bytes",
}


def go_duration(seconds: float) -> str:
    """A duration as Consul (Go's ``time.ParseDuration``) reads it: ``10s``, or ``1500ms``."""
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def check_id(node_id: str) -> str:
    """The id Consul gives the single check of service ``node_id``."""
    return f"service:{node_id}"


def member_meta(member: Member) -> dict[str, str]:
    """The member's fields as service Meta (strings; optional fields left out when unset)."""
    document = member.to_document()
    meta = {}
    for field, key in META_KEYS.items():
        value = document[field]
        if value is not None:
            meta[key] = str(value)
    return meta


def member_from_service(service: Mapping[str, Any]) -> Member:
    """The member a health entry's ``Service`` describes; ``ConfigError`` naming the problem if none."""
    node_id = service.get("ID")
    meta = service.get("Meta")
    if not isinstance(node_id, str):
        raise ConfigError("the service has no ID")
    if not isinstance(meta, dict) or META_KEYS["v"] not in meta:
        raise ConfigError(f"service {node_id!r} has no {META_KEYS['v']} in its Meta: not a tfscache node")
    document: dict[str, Any] = {"node_id": node_id}
    for field, key in META_KEYS.items():
        text = meta.get(key)
        if text is None:
            continue
        if not isinstance(text, str):
            raise ConfigError(f"service {node_id!r}: Meta {key} is not a string")
        try:
            if field in ("v", "max_models", "max_bytes"):
                document[field] = int(text)
            elif field == "weight":
                document[field] = float(text)
            else:
                document[field] = text
        except ValueError as exc:
            raise ConfigError(f"service {node_id!r}: Meta {key}={text!r} is not a number") from exc
    return Member.from_document(document)


def _ssl_context(settings: ConsulSettings) -> ssl.SSLContext | bool:
    if not settings.verify:
        return False
    if settings.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot read the Consul CA file {settings.ca_file}: {exc}") from exc


class ConsulApi:
    """One HTTP session to a Consul agent. Use ``async with``, or ``close`` it."""

    def __init__(self, settings: ConsulSettings) -> None:
        self.settings = settings
        self._ssl = _ssl_context(settings)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ConsulApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _headers(self) -> dict[str, str]:
        token = self.settings.token
        return {TOKEN_HEADER: token.get_secret_value()} if token is not None else {}

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers(), connector=aiohttp.TCPConnector(ssl=self._ssl)
            )
        total = timeout if timeout is not None else self.settings.timeout
        async with self._session.request(
            method,
            self.settings.address + path,
            params=params,
            data=json.dumps(body).encode() if body is not None else None,
            timeout=aiohttp.ClientTimeout(total=total, connect=self.settings.timeout),
        ) as response:
            return response.status, await response.read(), response.headers

    @staticmethod
    def _refused(what: str, status: int, body: bytes) -> DiscoveryError:
        text = body.decode("utf-8", errors="replace").strip()[:300]
        return DiscoveryError(f"Consul refused to {what}: HTTP {status} {text}")

    async def register(self, member: Member) -> None:
        """Register (or re-register) ``member`` as an instance of the service, with a passing TTL check."""
        host, _, port = member.agent.rpartition(":")
        body = {
            "ID": member.node_id,
            "Name": self.settings.service,
            "Address": host.strip("[]"),
            "Port": int(port),
            "Meta": member_meta(member),
            "Check": {
                "CheckID": check_id(member.node_id),
                "Name": f"{self.settings.service} TTL",
                "TTL": go_duration(self.settings.ttl),
                "DeregisterCriticalServiceAfter": go_duration(self.settings.deregister_after),
                "Status": "passing",
            },
        }
        status, text, _ = await self._request(
            "PUT", "/v1/agent/service/register", params={"replace-existing-checks": "true"}, body=body
        )
        if status != 200:
            raise self._refused(f"register {member.node_id}", status, text)

    async def pass_check(self, node_id: str) -> bool:
        """Heartbeat the node's TTL check; False if the agent does not know it (404)."""
        path = "/v1/agent/check/pass/" + quote(check_id(node_id), safe=":")
        status, text, _ = await self._request("PUT", path)
        if status == 404:
            return False
        if status != 200:
            raise self._refused(f"pass the check of {node_id}", status, text)
        return True

    async def deregister(self, node_id: str) -> None:
        status, text, _ = await self._request(
            "PUT", "/v1/agent/service/deregister/" + quote(node_id, safe="")
        )
        if status not in (200, 404):
            raise self._refused(f"deregister {node_id}", status, text)

    async def healthy_instances(self, index: int) -> tuple[list[dict[str, Any]], int]:
        """The passing instances of the service and the answer's ``X-Consul-Index``.

        With ``index > 0`` this is a blocking query: Consul answers when the result may have changed since
        ``index``, or after ``wait``.
        """
        params = {"passing": "true"}
        timeout = self.settings.timeout
        if index > 0:
            params["index"] = str(index)
            params["wait"] = go_duration(self.settings.wait)
            timeout += self.settings.wait * (1 + CONSUL_WAIT_JITTER_FRACTION)
        if self.settings.datacenter is not None:
            params["dc"] = self.settings.datacenter
        path = "/v1/health/service/" + quote(self.settings.service, safe="")
        status, text, headers = await self._request("GET", path, params=params, timeout=timeout)
        if status != 200:
            raise self._refused(f"list the instances of {self.settings.service}", status, text)
        try:
            entries = json.loads(text)
            new_index = int(headers[INDEX_HEADER])
        except (ValueError, KeyError) as exc:
            raise DiscoveryError(
                f"Consul's answer is not a health listing with an {INDEX_HEADER}: {exc}"
            ) from exc
        if not isinstance(entries, list):
            raise DiscoveryError("Consul's health listing is not a JSON array")
        return [entry for entry in entries if isinstance(entry, dict)], new_index
