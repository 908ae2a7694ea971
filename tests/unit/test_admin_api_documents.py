"""The admin API's pure parts: status documents and totals, the all-failed rule, the token rule in the
daemon's settings, and ``ListStore``'s wire format."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tfscachectl.agent.api import agent_pb2, wire
from tfscachectl.agent.api.values import ModelInfo, NodeStatus, StoredModel, StoredModelVersion, StoreListing
from tfscachectl.daemon.admin import NodeResult, failed_answer, node_document, status_totals
from tfscachectl.daemon.settings import DaemonSettings, is_loopback, load_daemon_settings
from tfscachectl.errors import Code, ConfigError, ServingError


def status(node: str, hits: int, misses: int, resident: int = 1) -> NodeStatus:
    models = tuple(
        ModelInfo(f"m{i}", 1, "resident", 100, 50, 1.0, hits, 1, 0.5, False) for i in range(resident)
    )
    counters = {"hits": hits, "misses": misses, "loads": misses, "evictions": 1, "load_failures": 0}
    return NodeStatus(node, 4, None, resident, 100 * resident, None, 50, models, counters)


def test_totals_sum_the_agents_counters() -> None:
    totals = status_totals([status("a", 8, 2), status("b", 1, 1, resident=2)])
    assert totals == {
        "hits": 9,
        "misses": 3,
        "loads": 3,
        "load_failures": 0,
        "evictions": 2,
        "fetches": 0,
        "hit_ratio": 0.75,
        "resident_models": 3,
        "used_bytes": 300,
    }
    assert status_totals([])["hit_ratio"] is None


def test_node_documents() -> None:
    reachable = node_document("a", "127.0.0.1:1", True, status("a", 1, 0), None)
    assert "node_id" not in reachable
    assert (reachable["id"], reachable["reachable"], reachable["max_models"], reachable["max_bytes"]) == (
        "a",
        True,
        4,
        None,
    )
    assert reachable["models"][0] == {
        "name": "m0",
        "version": 1,
        "state": "resident",
        "memory_bytes": 100,
        "disk_bytes": 50,
        "last_used": 1.0,
        "hits": 1,
        "loads": 1,
        "last_load_seconds": 0.5,
        "pinned": False,
    }
    error = ServingError(Code.UNAVAILABLE, "agent at x is unreachable: refused")
    unreachable = node_document("b", "127.0.0.1:2", False, None, error)
    assert unreachable == {
        "id": "b",
        "agent": "127.0.0.1:2",
        "connected": False,
        "reachable": False,
        "error": "agent at x is unreachable: refused",
        "counters": {},
        "models": [],
    }


def test_an_operation_fails_only_when_every_node_of_a_model_failed() -> None:
    missing = ServingError(Code.NOT_FOUND, "Servable not found for request: Latest(x)")
    ok = NodeResult("n1", outcome="hit")
    assert failed_answer([[ok, NodeResult("n2", error=missing)]]) is None
    assert (
        failed_answer([[ok], [NodeResult("n1", error=missing), NodeResult("n2", error=missing)]]) is missing
    )
    assert failed_answer([[]]) is None
    assert NodeResult("n2", error=missing).document() == {
        "node": "n2",
        "key": None,
        "error": "Servable not found for request: Latest(x)",
        "code": "NOT_FOUND",
    }


# ----- the token rule -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:18002", True),
        ("127.9.9.9:1", True),
        ("[::1]:18002", True),
        ("localhost:18002", True),
        ("0.0.0.0:18002", False),
        ("[::]:18002", False),
        ("10.0.0.5:18002", False),
        ("admin.example:18002", False),
    ],
)
def test_loopback_addresses(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


def test_the_admin_api_defaults_to_loopback_without_a_token() -> None:
    settings = DaemonSettings()
    assert settings.admin_listen == "127.0.0.1:18002"
    assert settings.admin_token is None


def test_a_non_loopback_admin_api_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TFSCACHE_DAEMON_ADMIN_TOKEN", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_daemon_settings(admin_listen="0.0.0.0:18002")
    assert "is not a loopback address, with no token: set admin_token (TFSCACHE_DAEMON_ADMIN_TOKEN)" in str(
        caught.value
    )
    monkeypatch.setenv("TFSCACHE_DAEMON_ADMIN_TOKEN", "from-the-environment")
    settings = load_daemon_settings(admin_listen="0.0.0.0:18002")
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "from-the-environment"
    assert "from-the-environment" not in repr(settings)


def test_admin_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="admin_token is empty"):
        DaemonSettings(admin_token=" ")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="expected host:port"):
        DaemonSettings(admin_listen="nowhere")
    assert DaemonSettings(admin_listen=None).admin_listen is None


# ----- ListStore on the wire ----------------------------------------------------------------------


def test_store_listings_cross_the_wire() -> None:
    listing = StoreListing(
        "s3://models/prod",
        (
            StoredModel("a", (StoredModelVersion(1, 10), StoredModelVersion(2, 2**40)), {"stable": 1}),
            StoredModel("b", ()),
        ),
        truncated=True,
    )
    message = agent_pb2.ListStoreResponse.FromString(wire.encode_listing(listing).SerializeToString())
    assert wire.decode_listing(message) == listing
