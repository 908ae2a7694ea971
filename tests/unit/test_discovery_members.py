"""Member documents: JSON round trip, validation, bad data; Consul Meta encoding; backoff; settings."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from pydantic import ValidationError

from tfscachectl.discovery import (
    DiscoverySettings,
    EtcdSettings,
    Member,
    StaticMembership,
    membership_source,
    registration,
)
from tfscachectl.discovery.backoff import Backoff
from tfscachectl.discovery.consul_api import go_duration, member_from_service, member_meta
from tfscachectl.discovery.outage import OutageLog
from tfscachectl.discovery.settings import ConsulSettings, parse_etcd_endpoint
from tfscachectl.errors import ConfigError

MEMBER = Member(
    node_id="node-a",
    rest="10.0.0.5:8501",
    grpc="10.0.0.5:8500",
    agent="10.0.0.5:8600",
    weight=2.5,
    max_models=4,
    max_bytes=8 * 1024**3,
)


def document(**changes: object) -> bytes:
    base = json.loads(MEMBER.to_json())
    for key, value in changes.items():
        if value is ...:
            del base[key]
        else:
            base[key] = value
    return json.dumps(base).encode()


def test_json_round_trip() -> None:
    assert Member.from_json(MEMBER.to_json()) == MEMBER
    minimal = Member("n1", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
    assert Member.from_json(minimal.to_json()) == minimal
    assert json.loads(minimal.to_json())["v"] == 1


def test_json_is_deterministic() -> None:
    same = Member.from_json(MEMBER.to_json())
    assert same.to_json() == MEMBER.to_json()


def test_unknown_fields_are_ignored_and_optional_fields_default() -> None:
    member = Member.from_json(document(zone="eu-1", max_models=..., max_bytes=..., weight=...))
    assert member.max_models is None
    assert member.max_bytes is None
    assert member.weight == 1.0


def test_integer_weight_is_accepted() -> None:
    assert Member.from_json(document(weight=3)).weight == 3.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "JSON object"),
        (document(v=...), "no format version"),
        (document(v=2), "format version 2"),
        (document(v=True), "format version True"),
        (document(grpc=...), "lacks grpc"),
        (document(node_id=""), "must not be empty"),
        (document(node_id=7), "must be a string"),
        (document(node_id="a/b"), "node id 'a/b'"),
        (document(node_id="a b"), "whitespace"),
        (document(rest="no-port"), "rest: expected host:port"),
        (document(agent="h:99999"), "agent: expected host:port"),
        (document(grpc=8500), "grpc must be a host:port string"),
        (document(weight=0), "weight must be a number > 0"),
        (document(weight=-1.5), "weight must be a number > 0"),
        (document(weight="1"), "weight must be a number > 0"),
        (document(weight=True), "weight must be a number > 0"),
        (document(max_models=0), "max_models must be an integer >= 1"),
        (document(max_bytes=1.5), "max_bytes must be an integer >= 1"),
        (b"{" + b" " * 70_000 + b"}", "more than"),
    ],
)
def test_bad_documents_name_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Member.from_json(data)


def test_infinite_weight_is_refused() -> None:
    with pytest.raises(ConfigError, match="weight"):
        Member("n", "h:1", "h:2", "h:3", weight=float("inf"))


def test_consul_meta_round_trip() -> None:
    meta = member_meta(MEMBER)
    assert all(isinstance(value, str) for value in meta.values())
    assert meta["tfscache-v"] == "1"
    assert member_from_service({"ID": "node-a", "Meta": meta}) == MEMBER
    minimal = Member("n1", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
    assert "tfscache-max-models" not in member_meta(minimal)
    assert member_from_service({"ID": "n1", "Meta": member_meta(minimal)}) == minimal


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ({"Meta": {}}, "no ID"),
        ({"ID": "x", "Meta": {"other": "1"}}, "not a tfscache node"),
        ({"ID": "x", "Meta": {**member_meta(MEMBER), "tfscache-weight": "heavy"}}, "not a number"),
        ({"ID": "x", "Meta": {**member_meta(MEMBER), "tfscache-v": "9"}}, "format version 9"),
        (
            {"ID": "x", "Meta": {k: v for k, v in member_meta(MEMBER).items() if k != "tfscache-rest"}},
            "lacks rest",
        ),
    ],
)
def test_bad_consul_services_name_the_problem(service: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        member_from_service(service)


def test_go_durations() -> None:
    assert go_duration(10) == "10s"
    assert go_duration(1.5) == "1500ms"
    assert go_duration(0.0001) == "1ms"


def test_backoff_grows_to_its_cap_and_jitter_shortens() -> None:
    backoff = Backoff(first=0.1, factor=2, cap=1.0, jitter=0.5)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 1000)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.delay(5, spread=0.5) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="bad backoff"):
        Backoff(first=2, cap=1)


def test_outage_log_warns_once_and_tells_when_back(caplog: pytest.LogCaptureFixture) -> None:
    outage = OutageLog(logging.getLogger("test.outage"), "etcd membership")
    with caplog.at_level(logging.INFO, logger="test.outage"):
        assert [outage.failed(OSError("refused")) for _ in range(3)] == [1, 2, 3]
        outage.succeeded()
        outage.succeeded()
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "refused" in caplog.records[0].getMessage()
    assert "attempts=3" in caplog.records[1].getMessage()


def test_etcd_settings() -> None:
    settings = EtcdSettings(endpoints="127.0.0.1:2379, 127.0.0.2:2379")  # type: ignore[arg-type]
    assert settings.endpoints == ("127.0.0.1:2379", "127.0.0.2:2379")
    assert not settings.tls
    assert EtcdSettings(endpoints=("https://etcd:2379",)).tls
    assert EtcdSettings(ca_file="/ca.pem").tls
    assert parse_etcd_endpoint("https://[::1]:2379") == ("::1", 2379, True)
    assert parse_etcd_endpoint("etcd:2379") == ("etcd", 2379, None)
    for bad in (
        {"endpoints": ()},
        {"endpoints": ("etcd",)},
        {"endpoints": ("ftp://etcd:1",)},
        {"endpoints": ("http://a:1", "https://b:1")},
        {"endpoints": ("http://a:1",), "ca_file": "/ca.pem"},
        {"username": "root"},
        {"cert_file": "/c.pem"},
        {"ttl": 0},
        {"surprise": 1},
    ):
        with pytest.raises(ValidationError):
            EtcdSettings(**bad)  # type: ignore[arg-type]


def test_password_is_secret() -> None:
    settings = EtcdSettings(username="root", password="hunter2")  # type: ignore[arg-type]
    assert "hunter2" not in repr(settings)


def test_consul_settings() -> None:
    assert ConsulSettings(address="https://consul:8501/").address == "https://consul:8501"
    for bad in (
        {"address": "consul:8500"},
        {"address": "http://consul:port"},
        {"service": "has space"},
        {"wait": 601},
        {"deregister_after": 0},
    ):
        with pytest.raises(ValidationError):
            ConsulSettings(**bad)  # type: ignore[arg-type]


def test_factories_pick_the_backend() -> None:
    static = DiscoverySettings()
    assert isinstance(membership_source(static, [MEMBER]), StaticMembership)
    assert registration(static) is None
    assert type(registration(DiscoverySettings(kind="etcd"))).__name__ == "EtcdRegistration"
    assert type(membership_source(DiscoverySettings(kind="consul"), [])).__name__ == "ConsulMembership"
    with pytest.raises(ConfigError, match="cannot read the etcd CA file"):
        registration(DiscoverySettings(kind="etcd", etcd=EtcdSettings(ca_file="/nonexistent/ca.pem")))


def test_static_membership_yields_once_then_waits() -> None:
    async def scenario() -> None:
        iterator = StaticMembership([MEMBER]).watch()
        assert await anext(iterator) == {"node-a": MEMBER}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(iterator), 0.05)

    asyncio.run(scenario())


def test_static_membership_refuses_duplicates() -> None:
    with pytest.raises(ConfigError, match="listed twice"):
        StaticMembership([MEMBER, MEMBER])
