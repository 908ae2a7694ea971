"""The Consul API stand-in itself (it is not Consul): blocking queries, TTL checks, 404s and the token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.harness.consul_standin import ConsulApiStandIn, parse_go_duration

pytestmark = pytest.mark.integration

HEALTH = "/v1/health/service/web"


@pytest.fixture
def standin() -> Iterator[ConsulApiStandIn]:
    server = ConsulApiStandIn().start()
    yield server
    server.close()


def registration(service_id: str, ttl: str = "10s", **check: Any) -> dict[str, Any]:
    return {
        "ID": service_id,
        "Name": "web",
        "Address": "127.0.0.1",
        "Port": 80,
        "Check": {"TTL": ttl, "Status": "passing", **check},
    }


async def call(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None, **params: str
) -> tuple[int, Any, int | None]:
    async with session.request(method, url, json=body, params=params) as response:
        payload = (
            await response.json() if response.content_type == "application/json" else await response.text()
        )
        index = response.headers.get("X-Consul-Index")
        return response.status, payload, int(index) if index else None


def test_go_durations() -> None:
    assert parse_go_duration("10s") == 10
    assert parse_go_duration("1500ms") == 1.5
    assert parse_go_duration("1m30s") == 90
    for bad in ("", "10", "ten s", "5x"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_go_duration(bad)


def test_blocking_query_waits_for_a_write_or_the_wait(standin: ConsulApiStandIn) -> None:
    base = standin.address

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            status, entries, index = await call(session, "GET", base + HEALTH)
            assert (status, entries) == (200, [])
            assert index is not None
            assert index >= 1

            # Nothing changes: the query returns after about `wait`, with the same index.
            started = time.monotonic()
            status, _, same = await call(session, "GET", base + HEALTH, index=str(index), wait="300ms")
            elapsed = time.monotonic() - started
            assert status == 200
            assert same == index
            assert 0.28 <= elapsed < 0.3 * (1 + 1 / 16) + 0.5

            # A write to the service wakes a blocked query at once, with a higher index.
            blocked = asyncio.create_task(call(session, "GET", base + HEALTH, index=str(index), wait="30s"))
            await asyncio.sleep(0.2)
            assert not blocked.done()
            started = time.monotonic()
            assert (await call(session, "PUT", base + "/v1/agent/service/register", registration("web-1")))[
                0
            ] == 200
            status, entries, newer = await asyncio.wait_for(blocked, 5)
            assert time.monotonic() - started < 1
            assert newer is not None
            assert newer > index
            assert [e["Service"]["ID"] for e in entries] == ["web-1"]

            # A write to another service does not wake it.
            other = {**registration("db-1"), "Name": "db"}
            blocked = asyncio.create_task(call(session, "GET", base + HEALTH, index=str(newer), wait="500ms"))
            await asyncio.sleep(0.1)
            assert (await call(session, "PUT", base + "/v1/agent/service/register", other))[0] == 200
            await asyncio.sleep(0.1)
            assert not blocked.done()
            assert (await blocked)[2] == newer

            # A heartbeat that changes nothing does not wake it either.
            status, _, _ = await call(session, "PUT", base + "/v1/agent/check/pass/service:web-1")
            assert status == 200
            assert (await call(session, "GET", base + HEALTH, index=str(newer), wait="200ms"))[2] == newer

            assert (await call(session, "GET", base + HEALTH, index="x"))[0] == 400
            assert (await call(session, "GET", base + HEALTH, wait="soon"))[0] == 400
            assert (await call(session, "GET", base + HEALTH, dc="elsewhere"))[0] == 500

    asyncio.run(scenario())


def test_ttl_checks_turn_critical_and_critical_services_are_reaped(standin: ConsulApiStandIn) -> None:
    base = standin.address

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            body = registration("web-1", ttl="300ms", DeregisterCriticalServiceAfter="600ms")
            assert (await call(session, "PUT", base + "/v1/agent/service/register", body))[0] == 200
            _, entries, index = await call(session, "GET", base + HEALTH, passing="true")
            assert [e["Service"]["ID"] for e in entries] == ["web-1"]
            assert index is not None
            # No pass: critical after the TTL, which a blocking query sees as a change.
            _, entries, critical_index = await call(
                session, "GET", base + HEALTH, passing="true", index=str(index), wait="5s"
            )
            assert entries == []
            assert critical_index is not None
            assert critical_index > index
            _, everything, _ = await call(session, "GET", base + HEALTH)
            assert [c["Status"] for c in everything[0]["Checks"]] == ["passing", "critical"]
            # A pass brings it back.
            assert (await call(session, "PUT", base + "/v1/agent/check/pass/service:web-1"))[0] == 200
            _, entries, _ = await call(session, "GET", base + HEALTH, passing="")
            assert len(entries) == 1
            # Critical for longer than DeregisterCriticalServiceAfter: gone.
            deadline = time.monotonic() + 5
            while standin.service_ids():
                assert time.monotonic() < deadline, "the critical service was not reaped"
                await asyncio.sleep(0.05)
            assert (await call(session, "PUT", base + "/v1/agent/check/pass/service:web-1"))[0] == 404

    asyncio.run(scenario())


def test_unknown_ids_token_and_a_forgetful_restart() -> None:
    standin = ConsulApiStandIn(token="s3cret").start()
    base = standin.address

    async def scenario() -> tuple[int, int]:
        async with aiohttp.ClientSession(headers={"X-Consul-Token": "s3cret"}) as session:
            status, text, _ = await call(session, "PUT", base + "/v1/agent/check/pass/service:nobody")
            assert status == 404
            assert "Unknown check ID" in text
            assert (await call(session, "PUT", base + "/v1/agent/service/deregister/nobody"))[0] == 404
            for n in range(3):
                await call(session, "PUT", base + "/v1/agent/service/register", registration(f"web-{n}"))
            index = (await call(session, "GET", base + HEALTH))[2]
        async with aiohttp.ClientSession(headers={"X-Consul-Token": "wrong"}) as session:
            assert (await call(session, "GET", base + HEALTH))[0] == 403
        async with aiohttp.ClientSession() as session:
            assert (await call(session, "GET", base + HEALTH))[0] == 403
        assert index is not None
        return index, 0

    try:
        before, _ = asyncio.run(scenario())
        standin.restart(forget=True)
        assert standin.service_ids() == set()

        async def after_restart() -> int | None:
            async with aiohttp.ClientSession(headers={"X-Consul-Token": "s3cret"}) as session:
                return (await call(session, "GET", base + HEALTH))[2]

        after = asyncio.run(after_restart())
        assert after is not None
        assert after < before, "a forgetful restart makes the index go backwards"
    finally:
        standin.close()


def test_stop_drops_blocked_queries(standin: ConsulApiStandIn) -> None:
    base = standin.address

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            index = (await call(session, "GET", base + HEALTH))[2]
            blocked = asyncio.create_task(call(session, "GET", base + HEALTH, index=str(index), wait="30s"))
            await asyncio.sleep(0.2)
            await asyncio.to_thread(standin.stop)
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(blocked, 5)
            with pytest.raises(aiohttp.ClientError):
                await call(session, "GET", base + HEALTH)
            await asyncio.to_thread(standin.start)
            assert (await call(session, "GET", base + HEALTH))[0] == 200

    asyncio.run(scenario())
