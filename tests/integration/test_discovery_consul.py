"""Consul discovery against ``ConsulApiStandIn``, a stand-in for Consul's HTTP API (no Consul agent can
be installed here): registration with TTL checks, blocking queries, outages, a forgetful agent restart, ACLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tests.harness.consul_standin import ConsulApiStandIn
from tests.harness.membership import Follower, no_duplicates, until_registered
from tfscachectl.discovery.backoff import Backoff
from tfscachectl.discovery.consul import ConsulMembership, ConsulRegistration
from tfscachectl.discovery.members import Member
from tfscachectl.discovery.settings import ConsulSettings

pytestmark = pytest.mark.integration

SERVICE = "tfscache-test"
TTL_S = 1.0
DEREGISTER_AFTER_S = 1.5
#: A node that stops passing its check turns critical after TTL_S (and the reaper runs every 0.05 s).
EXPIRY_WAIT_S = 5.0
CATCH_UP_S = 10.0
FAST_BACKOFF = Backoff(first=0.05, factor=2.0, cap=0.5)


@pytest.fixture
def consul() -> Iterator[ConsulApiStandIn]:
    standin = ConsulApiStandIn().start()
    yield standin
    standin.close()


def member(node_id: str, port: int = 8500) -> Member:
    return Member(
        node_id=node_id,
        rest=f"127.0.0.1:{port + 1}",
        grpc=f"127.0.0.1:{port}",
        agent=f"127.0.0.1:{port + 100}",
        weight=1.5,
        max_bytes=2**30,
    )


def settings_for(consul: ConsulApiStandIn, **changes: object) -> ConsulSettings:
    values: dict[str, object] = {
        "address": consul.address,
        "service": SERVICE,
        "ttl": TTL_S,
        "deregister_after": DEREGISTER_AFTER_S,
        "wait": 5.0,
        "timeout": 1.0,
    }
    values.update(changes)
    return ConsulSettings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def following(settings: ConsulSettings) -> AsyncIterator[Follower]:
    follower = Follower(ConsulMembership(settings, backoff=FAST_BACKOFF))
    try:
        yield follower
    finally:
        await follower.close()


def abandon(registration: ConsulRegistration) -> None:
    """The agent dies: its heartbeat stops and nothing deregisters it."""
    task = registration._task
    assert task is not None
    task.cancel()


#: An instance of the service that is no tfscache node (no member in its Meta).
STRANGER = {
    "ID": "not-ours",
    "Name": SERVICE,
    "Port": 1,
    "Meta": {"owner": "someone"},
    "Check": {"TTL": "60s", "Status": "passing"},
}


def put(consul: ConsulApiStandIn, path: str, body: object = None) -> None:
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(consul.address + path, data=data, method="PUT")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


async def until_true(condition: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_members_register_and_leave(consul: ConsulApiStandIn) -> None:
    settings = settings_for(consul)

    async def scenario() -> None:
        a = ConsulRegistration(settings, backoff=FAST_BACKOFF)
        b = ConsulRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a", 8500))
        await b.start(member("node-b", 9500))
        assert a.registered
        assert b.registered
        assert consul.check_status("service:node-a") == "passing"
        async with following(settings) as follower:
            both = await follower.until(lambda m: len(m) == 2, 5, "both members")
            assert both == {"node-a": member("node-a", 8500), "node-b": member("node-b", 9500)}
            await b.close()
            assert await follower.until(lambda m: "node-b" not in m, 5, "node-b to leave") == {
                "node-a": member("node-a", 8500)
            }
            assert consul.service_ids() == {"node-a"}
            # Heartbeats keep node-a passing well past its TTL.
            await asyncio.sleep(3 * TTL_S)
            assert follower.latest == {"node-a": member("node-a", 8500)}
            assert consul.check_status("service:node-a") == "passing"
            no_duplicates(follower.history)
        await a.close()
        assert consul.service_ids() == set()

    asyncio.run(scenario())


def test_a_dead_agent_turns_critical_then_is_deregistered(consul: ConsulApiStandIn) -> None:
    settings = settings_for(consul)

    async def scenario() -> None:
        a = ConsulRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a"))
        async with following(settings) as follower:
            await follower.until(lambda m: "node-a" in m, 5, "node-a")
            abandon(a)
            await follower.until(lambda m: not m, EXPIRY_WAIT_S, "node-a's check to turn critical")
            await until_true(lambda: not consul.service_ids(), EXPIRY_WAIT_S, "Consul to deregister node-a")
        await a.close()  # the dead agent's session (its deregistration finds nothing)

    asyncio.run(scenario())


def test_a_restarted_agent_replaces_its_registration(consul: ConsulApiStandIn) -> None:
    settings = settings_for(consul)

    async def scenario() -> None:
        first = ConsulRegistration(settings, backoff=FAST_BACKOFF)
        await first.start(member("node-a", 8500))
        async with following(settings) as follower:
            await follower.until(lambda m: "node-a" in m, 5, "node-a")
            abandon(first)
            second = ConsulRegistration(settings, backoff=FAST_BACKOFF)
            await second.start(member("node-a", 7500))
            assert await follower.until(
                lambda m: m.get("node-a") == member("node-a", 7500), 5, "the new node-a"
            ) == {"node-a": member("node-a", 7500)}
            await asyncio.sleep(2 * TTL_S)
            assert follower.latest == {"node-a": member("node-a", 7500)}
            assert consul.service_ids() == {"node-a"}
            await second.close()
            await follower.until(lambda m: not m, 5, "node-a to leave")
        await first.close()  # the dead agent's session (its deregistration finds nothing)

    asyncio.run(scenario())


def test_outage_keeps_the_last_membership_and_catches_up(
    consul: ConsulApiStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """The Consul agent is away for a while, then back with its state."""
    settings = settings_for(consul)
    caplog.set_level(logging.INFO, logger="tfscachectl.discovery")

    async def scenario() -> None:
        a = ConsulRegistration(settings, backoff=FAST_BACKOFF)
        b = ConsulRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a", 8500))
        await b.start(member("node-b", 9500))
        async with following(settings) as follower:
            await follower.until(lambda m: len(m) == 2, 5, "both members")
            yielded = len(follower.history)
            await asyncio.to_thread(consul.stop)
            await asyncio.sleep(0.5 * TTL_S)
            assert len(follower.history) == yielded, "nothing is yielded while Consul is away"
            await asyncio.to_thread(consul.start)
            # A change made after the restart shows up.
            await b.close()
            c = ConsulRegistration(settings, backoff=FAST_BACKOFF)
            await c.start(member("node-c", 6500))
            await follower.until(
                lambda m: set(m) == {"node-a", "node-c"}, CATCH_UP_S, "the change after the restart"
            )
            no_duplicates(follower.history)
            await a.close()
            await c.close()

    asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("tfscachectl.discovery")]
    assert len([m for m in messages if "discovery_unreachable" in m and "membership" in m]) == 1, messages
    assert any("discovery_reachable" in m and "membership" in m for m in messages)


def test_agents_register_again_when_consul_forgot_them(consul: ConsulApiStandIn) -> None:
    """The Consul agent restarts without its state: passes get 404, nodes register again, the index resets."""
    settings = settings_for(consul)

    async def scenario() -> None:
        a = ConsulRegistration(settings, backoff=FAST_BACKOFF)
        b = ConsulRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a", 8500))
        await b.start(member("node-b", 9500))
        async with following(settings) as follower:
            await follower.until(lambda m: len(m) == 2, 5, "both members")
            # Writes before the restart push the index well above what the fresh agent will answer.
            for _ in range(10):
                await asyncio.to_thread(put, consul, "/v1/agent/service/register", STRANGER)
                await asyncio.to_thread(put, consul, "/v1/agent/service/deregister/not-ours")
            index_before = consul.index
            await asyncio.to_thread(consul.restart, forget=True)
            await until_true(
                lambda: consul.service_ids() == {"node-a", "node-b"}, CATCH_UP_S, "re-registrations"
            )
            assert consul.index < index_before
            # The follower still has both (it may have seen an empty list in between, never an error).
            await follower.until(
                lambda m: len(m) == 2 and len(follower.history) >= 1, CATCH_UP_S, "both again"
            )
            await b.close()
            assert await follower.until(
                lambda m: "node-b" not in m, CATCH_UP_S, "node-b to leave after reset"
            ) == {"node-a": member("node-a", 8500)}
            await a.close()

    asyncio.run(scenario())


def test_the_index_going_backwards_resets_it(
    consul: ConsulApiStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(consul)
    caplog.set_level(logging.INFO, logger="tfscachectl.discovery")

    async def scenario() -> None:
        a = ConsulRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a"))
        async with following(settings) as follower:
            await follower.until(lambda m: "node-a" in m, 5, "node-a")
            for _ in range(5):
                await asyncio.to_thread(put, consul, "/v1/agent/service/register", STRANGER)
                await asyncio.to_thread(put, consul, "/v1/agent/service/deregister/not-ours")
            await asyncio.sleep(0.3)  # the follower's query is blocked again
            await asyncio.to_thread(consul.forget)
            # The answer with the lower index resets the follower's index; the node registers again (404).
            await until_true(
                lambda: consul.service_ids() == {"node-a"}, CATCH_UP_S, "node-a registered again"
            )
            await follower.until(lambda m: "node-a" in m, CATCH_UP_S, "node-a")
            # Blocking queries work from the reset index: a later change shows up.
            b = ConsulRegistration(settings, backoff=FAST_BACKOFF)
            await b.start(member("node-b", 9500))
            await follower.until(lambda m: set(m) == {"node-a", "node-b"}, 5, "node-b")
            await b.close()
            await a.close()

    asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert any("consul_index_reset" in m for m in messages), messages
    assert any("consul_check_unknown node=node-a" in m for m in messages), messages


def test_an_agent_starts_while_consul_is_down(consul: ConsulApiStandIn) -> None:
    settings = settings_for(consul)
    consul.stop()

    async def scenario() -> None:
        a = ConsulRegistration(settings, backoff=FAST_BACKOFF)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await a.start(member("node-a"))
        assert loop.time() - started < settings.timeout + 1, "start returns after the timeout"
        assert not a.registered
        await asyncio.to_thread(consul.start)
        async with following(settings) as follower:
            await follower.until(lambda m: "node-a" in m, CATCH_UP_S, "node-a once Consul is up")
        await until_registered(a, CATCH_UP_S, "node-a")
        await a.close()

    asyncio.run(scenario())


def test_acl_token() -> None:
    consul = ConsulApiStandIn(token="agent-token").start()
    good = settings_for(consul, token="agent-token")
    wrong = settings_for(consul, token="nope")

    async def scenario() -> None:
        a = ConsulRegistration(good, backoff=FAST_BACKOFF)
        await a.start(member("node-a"))
        assert a.registered
        async with following(good) as follower:
            assert await follower.until(lambda m: "node-a" in m, 5, "node-a") == {"node-a": member("node-a")}
        async with following(wrong) as refused:
            await asyncio.sleep(0.5)
            assert refused.history == [], "a wrong token never yields (and never raises)"
        await a.close()
        assert consul.service_ids() == set()

    try:
        asyncio.run(scenario())
    finally:
        consul.close()


def test_other_services_and_bad_meta_are_skipped(
    consul: ConsulApiStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(consul)
    put(consul, "/v1/agent/service/register", STRANGER)

    async def scenario() -> None:
        a = ConsulRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a"))
        async with following(settings) as follower:
            assert await follower.until(lambda m: "node-a" in m, 5, "node-a") == {"node-a": member("node-a")}
        await a.close()

    asyncio.run(scenario())
    skipped = [r.getMessage() for r in caplog.records if "consul_member_skipped" in r.getMessage()]
    assert len(skipped) == 1
    assert "not-ours" in skipped[0]


def test_another_datacenter_is_asked_for(consul: ConsulApiStandIn) -> None:
    settings = settings_for(consul)

    async def scenario() -> None:
        a = ConsulRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a"))
        async with following(settings_for(consul, datacenter="dc1")) as follower:
            await follower.until(lambda m: "node-a" in m, 5, "node-a in dc1")
        async with following(settings_for(consul, datacenter="dc9")) as elsewhere:
            await asyncio.sleep(0.5)
            assert elsewhere.history == []
        await a.close()

    asyncio.run(scenario())
    assert any("dc=dc9" in path for _, path in consul.requests)
