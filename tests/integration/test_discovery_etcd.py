"""etcd discovery against a real etcd: leases, the watch, outages, lost leases, auth, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness.binaries import etcd_binary
from tests.harness.etcd import EtcdServer
from tests.harness.membership import Follower, no_duplicates, until_registered
from tests.harness.processes import LOOPBACK, ProcessRegistry, free_port, port_accepts, wait_until
from tfscachectl.discovery.backoff import Backoff
from tfscachectl.discovery.etcd import EtcdMembership, EtcdRegistration
from tfscachectl.discovery.members import Member
from tfscachectl.discovery.settings import EtcdSettings

pytestmark = pytest.mark.integration

PREFIX = "/test/nodes/"
TTL_S = 1.0
#: Long enough for a lease of TTL_S to expire (etcd checks expiry every 0.5 s) plus the watch to notice.
EXPIRY_WAIT_S = 8.0
#: How long a follower may take to catch up after etcd is back (a few capped backoffs).
CATCH_UP_S = 15.0
FAST_BACKOFF = Backoff(first=0.05, factor=2.0, cap=0.5)


def member(node_id: str, port: int = 8500) -> Member:
    return Member(
        node_id=node_id,
        rest=f"127.0.0.1:{port + 1}",
        grpc=f"127.0.0.1:{port}",
        agent=f"127.0.0.1:{port + 100}",
        max_models=4,
    )


def settings_for(etcd: EtcdServer, **changes: object) -> EtcdSettings:
    values: dict[str, object] = {
        "endpoints": (etcd.endpoint,),
        "prefix": PREFIX,
        "ttl": TTL_S,
        "timeout": 1.0,
    }
    values.update(changes)
    return EtcdSettings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def following(settings: EtcdSettings) -> AsyncIterator[Follower]:
    follower = Follower(EtcdMembership(settings, backoff=FAST_BACKOFF))
    try:
        yield follower
    finally:
        await follower.close()


def abandon(registration: EtcdRegistration) -> None:
    """The agent dies: its keepalive stops and nothing revokes the lease."""
    task = registration._task
    assert task is not None
    task.cancel()


async def etcd_keys(etcd: EtcdServer, *auth: str) -> set[str]:
    output = await asyncio.to_thread(etcd.etcdctl, *auth, "get", "--prefix", "--keys-only", PREFIX)
    return {line for line in output.splitlines() if line.strip()}


def test_members_register_and_leave(etcd: EtcdServer) -> None:
    settings = settings_for(etcd)

    async def scenario() -> None:
        a = EtcdRegistration(settings, backoff=FAST_BACKOFF)
        b = EtcdRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a", 8500))
        await b.start(member("node-b", 9500))
        assert a.registered
        assert b.registered
        async with following(settings) as follower:
            both = await follower.until(lambda m: len(m) == 2, 10, "both members")
            assert both == {"node-a": member("node-a", 8500), "node-b": member("node-b", 9500)}
            await b.close()
            assert await follower.until(lambda m: "node-b" not in m, 5, "node-b to leave") == {
                "node-a": member("node-a", 8500)
            }
            # Keepalives hold node-a well past its TTL.
            await asyncio.sleep(3 * TTL_S)
            assert follower.latest == {"node-a": member("node-a", 8500)}
            assert await etcd_keys(etcd) == {PREFIX + "node-a"}
            no_duplicates(follower.history)
        await a.close()
        assert await etcd_keys(etcd) == set()

    asyncio.run(scenario())


def test_a_dead_agent_disappears_after_its_ttl(etcd: EtcdServer) -> None:
    settings = settings_for(etcd)

    async def scenario() -> None:
        a = EtcdRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a"))
        async with following(settings) as follower:
            await follower.until(lambda m: "node-a" in m, 5, "node-a")
            abandon(a)
            await follower.until(lambda m: not m, EXPIRY_WAIT_S, "node-a's lease to expire")

    asyncio.run(scenario())


def test_a_restarted_agent_replaces_its_registration(etcd: EtcdServer) -> None:
    """Same node id again (new addresses, new lease): one member, and the old lease's expiry keeps it."""
    settings = settings_for(etcd)

    async def scenario() -> None:
        first = EtcdRegistration(settings, backoff=FAST_BACKOFF)
        await first.start(member("node-a", 8500))
        async with following(settings) as follower:
            await follower.until(lambda m: "node-a" in m, 5, "node-a")
            abandon(first)
            second = EtcdRegistration(settings, backoff=FAST_BACKOFF)
            await second.start(member("node-a", 7500))
            assert await follower.until(
                lambda m: m["node-a"].grpc.endswith(":7500"), 5, "the new node-a"
            ) == {"node-a": member("node-a", 7500)}
            await asyncio.sleep(EXPIRY_WAIT_S / 2)  # the first lease expires meanwhile
            assert follower.latest == {"node-a": member("node-a", 7500)}
            assert await etcd_keys(etcd) == {PREFIX + "node-a"}
            await second.close()
            await follower.until(lambda m: not m, 5, "node-a to leave")

    asyncio.run(scenario())


def test_outage_keeps_the_last_membership_and_catches_up(
    etcd: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(etcd)
    caplog.set_level(logging.INFO, logger="tfscachectl.discovery")

    async def scenario() -> None:
        a = EtcdRegistration(settings, backoff=FAST_BACKOFF)
        b = EtcdRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a", 8500))
        await b.start(member("node-b", 9500))
        async with following(settings) as follower:
            await follower.until(lambda m: len(m) == 2, 5, "both members")
            yielded = len(follower.history)

            await asyncio.to_thread(etcd.stop)
            await asyncio.sleep(3 * TTL_S)  # longer than the TTL: the registrations fail their keepalives
            assert len(follower.history) == yielded, "nothing is yielded while etcd is away"
            assert not a.registered
            assert not b.registered

            await asyncio.to_thread(etcd.start)
            deadline = asyncio.get_running_loop().time() + CATCH_UP_S
            while not (a.registered and b.registered):
                assert asyncio.get_running_loop().time() < deadline, "registrations did not come back"
                await asyncio.sleep(0.05)
            # A change made after the restart shows up.
            await b.close()
            c = EtcdRegistration(settings, backoff=FAST_BACKOFF)
            await c.start(member("node-c", 6500))
            await follower.until(
                lambda m: set(m) == {"node-a", "node-c"}, CATCH_UP_S, "the change after the restart"
            )
            assert await etcd_keys(etcd) == {PREFIX + "node-a", PREFIX + "node-c"}
            no_duplicates(follower.history)
            await a.close()
            await c.close()

    asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("tfscachectl.discovery")]
    membership_warnings = [m for m in messages if "discovery_unreachable" in m and "etcd membership" in m]
    assert len(membership_warnings) == 1, messages
    assert any("discovery_reachable" in m and "etcd membership" in m for m in messages)


def test_registrations_come_back_when_etcd_lost_its_data(etcd: EtcdServer) -> None:
    settings = settings_for(etcd)

    async def scenario() -> None:
        a = EtcdRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a"))
        old_lease = a.lease_id
        async with following(settings) as follower:
            await follower.until(lambda m: "node-a" in m, 5, "node-a")
            await asyncio.to_thread(etcd.stop)
            shutil.rmtree(etcd.data_dir)
            await asyncio.to_thread(etcd.start)
            await follower.until(
                lambda m: "node-a" in m and len(follower.history) > 1, CATCH_UP_S, "node-a again"
            )
            wait_deadline = asyncio.get_running_loop().time() + CATCH_UP_S
            while await etcd_keys(etcd) != {PREFIX + "node-a"}:
                assert asyncio.get_running_loop().time() < wait_deadline
                await asyncio.sleep(0.1)
            assert a.lease_id != old_lease
            await a.close()
            await follower.until(lambda m: not m, 5, "node-a to leave")

    asyncio.run(scenario())


def test_an_agent_starts_while_etcd_is_down(etcd: EtcdServer) -> None:
    settings = settings_for(etcd)
    etcd.stop()

    async def scenario() -> None:
        a = EtcdRegistration(settings, backoff=FAST_BACKOFF)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await a.start(member("node-a"))
        assert loop.time() - started < settings.timeout + 1, "start returns after the timeout"
        assert not a.registered
        await asyncio.to_thread(etcd.start)
        async with following(settings) as follower:
            await follower.until(lambda m: "node-a" in m, CATCH_UP_S, "node-a once etcd is up")
        await until_registered(a, CATCH_UP_S, "node-a")
        await a.close()

    asyncio.run(scenario())


def test_values_that_are_no_member_are_skipped(etcd: EtcdServer, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(etcd)
    etcd.etcdctl("put", PREFIX + "garbage", "{not json")
    etcd.etcdctl("put", PREFIX + "liar", member("someone-else").to_json().decode())

    async def scenario() -> None:
        a = EtcdRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a"))
        async with following(settings) as follower:
            assert await follower.until(lambda m: "node-a" in m, 5, "node-a") == {"node-a": member("node-a")}
            # A member whose value turns bad is left out, and the watch goes on.
            await asyncio.to_thread(
                etcd.etcdctl, "put", PREFIX + "node-b", member("node-b").to_json().decode()
            )
            await follower.until(lambda m: "node-b" in m, 5, "node-b")
            await asyncio.to_thread(etcd.etcdctl, "put", PREFIX + "node-b", '{"v": 1}')
            await follower.until(lambda m: "node-b" not in m, 5, "node-b to be left out")
        await a.close()

    asyncio.run(scenario())
    skipped = [r.getMessage() for r in caplog.records if "etcd_member_skipped" in r.getMessage()]
    assert any("garbage" in m for m in skipped)
    assert any("liar" in m and "someone-else" in m for m in skipped)


def test_user_and_password(etcd: EtcdServer) -> None:
    etcd.etcdctl("user", "add", "root", "--new-user-password=root-secret")
    etcd.etcdctl("user", "add", "agent", "--new-user-password=agent-secret")
    etcd.etcdctl("role", "add", "nodes")
    etcd.etcdctl("role", "grant-permission", "nodes", "--prefix=true", "readwrite", PREFIX)
    etcd.etcdctl("user", "grant-role", "agent", "nodes")
    etcd.etcdctl("auth", "enable")
    good = settings_for(etcd, username="agent", password="agent-secret")
    wrong = settings_for(etcd, username="agent", password="wrong")

    async def scenario() -> None:
        a = EtcdRegistration(good, backoff=FAST_BACKOFF)
        await a.start(member("node-a"))
        assert a.registered
        async with following(good) as follower:
            assert await follower.until(lambda m: "node-a" in m, 5, "node-a") == {"node-a": member("node-a")}
        async with following(wrong) as refused:
            await asyncio.sleep(1.0)
            assert refused.history == [], "a wrong password never yields (and never raises)"
        assert await etcd_keys(etcd, "--user=root:root-secret") == {PREFIX + "node-a"}
        await a.close()
        assert await etcd_keys(etcd, "--user=root:root-secret") == set()

    asyncio.run(scenario())


# ----- TLS ----------------------------------------------------------------------------------------


def write_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tfscache test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(name: str, usage: x509.ObjectIdentifier) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), False
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        name: directory / f"{name}.pem" for name in ("ca", "server", "server-key", "client", "client-key")
    }
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server, server_key = leaf("etcd", ExtendedKeyUsageOID.SERVER_AUTH)
    client, client_key = leaf("agent", ExtendedKeyUsageOID.CLIENT_AUTH)
    for name, data in (
        ("server", server),
        ("server-key", server_key),
        ("client", client),
        ("client-key", client_key),
    ):
        paths[name].write_bytes(data)
        paths[name].chmod(0o600)
    return paths


def test_tls_with_client_certificates(processes: ProcessRegistry, tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    certs = write_certificates(tmp_path / "certs")
    client_port, peer_port = free_port(), free_port()
    client_url = f"https://{LOOPBACK}:{client_port}"
    peer_url = f"http://{LOOPBACK}:{peer_port}"
    process = processes.start(
        "etcd-tls",
        [
            str(etcd_binary()),
            "--name=tls",
            f"--data-dir={tmp_path / 'etcd-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=tls={peer_url}",
            f"--cert-file={certs['server']}",
            f"--key-file={certs['server-key']}",
            f"--trusted-ca-file={certs['ca']}",
            "--client-cert-auth",
            "--heartbeat-interval=10",
            "--election-timeout=100",
            "--log-level=warn",
        ],
    )
    wait_until(lambda: port_accepts(client_port), 20, "etcd with TLS to listen", process=process)
    settings = EtcdSettings(
        endpoints=(client_url,),
        prefix=PREFIX,
        ttl=TTL_S,
        timeout=2.0,
        ca_file=str(certs["ca"]),
        cert_file=str(certs["client"]),
        key_file=str(certs["client-key"]),
    )
    without_certificate = settings.model_copy(update={"cert_file": None, "key_file": None})

    async def scenario() -> None:
        a = EtcdRegistration(settings, backoff=FAST_BACKOFF)
        await a.start(member("node-a"))
        await until_registered(a, 20, "node-a over TLS")  # etcd may still be electing itself
        async with following(settings) as follower:
            assert await follower.until(lambda m: "node-a" in m, 10, "node-a over TLS") == {
                "node-a": member("node-a")
            }
        async with following(without_certificate) as refused:
            await asyncio.sleep(1.0)
            assert refused.history == [], "etcd requires a client certificate"
        await a.close()

    asyncio.run(scenario())
