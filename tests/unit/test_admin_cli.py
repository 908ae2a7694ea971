"""The operator commands' pure parts: references, URLs, rendering, and the admin client's error mapping
(through ``httpx.MockTransport``: no socket)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console, RenderableType
from rich.progress import Progress

from tfscachectl.cli.admin_client import (
    AdminAuthError,
    AdminClient,
    AdminError,
    AdminUnreachableError,
    admin_url,
)
from tfscachectl.cli.admin_options import model_ref
from tfscachectl.cli.models import render_models
from tfscachectl.cli.operate import (
    failures,
    preload_failures,
    preload_models,
    render_evicted,
    render_pins,
    render_preloaded,
)
from tfscachectl.cli.output import ago, human_bytes, plural, ratio, used_of
from tfscachectl.cli.status import node_health, render_status
from tfscachectl.core.refs import ModelRef
from tfscachectl.errors import ConfigError
from tfscachectl.local.endpoints import StackEndpoints

NOW = 1_700_000_000.0


def text_of(renderable: RenderableType) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(renderable)
    return console.export_text()


# ----- parsing ------------------------------------------------------------------------------------


def test_model_references() -> None:
    assert model_ref("tenant-0001") == ModelRef("tenant-0001")
    assert model_ref(" tenant-0001:3 ") == ModelRef("tenant-0001", 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a:x", "model reference 'a:x': version 'x' is not a non-negative integer"),
        (":3", "model reference ':3' has an empty model name"),
        ("a:", "model reference 'a:' has an empty version after ':'"),
        ("a/b", "model name 'a/b' contains '/'"),
    ],
)
def test_bad_model_references(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        model_ref(text)
    assert str(caught.value) == message


def test_admin_urls() -> None:
    assert admin_url("127.0.0.1:18002") == "http://127.0.0.1:18002"
    assert admin_url("https://admin.example/") == "https://admin.example"
    with pytest.raises(ConfigError, match="must be http:// or https://"):
        admin_url("ftp://x")
    with pytest.raises(ConfigError, match="is empty"):
        admin_url(" ")


# ----- formatting ---------------------------------------------------------------------------------


def test_formatting() -> None:
    assert [human_bytes(n) for n in (None, 0, 1023, 1536, 3 * 1024**3)] == [
        "-",
        "0 B",
        "1023 B",
        "1.5 KiB",
        "3.0 GiB",
    ]
    assert used_of(1, None) == "1 / -"
    assert used_of(2048, 4096, bytes_=True) == "2.0 KiB / 4.0 KiB"
    assert [ago(t, NOW) for t in (0, NOW - 4.5, NOW - 150, NOW - 7200, NOW - 3 * 86400)] == [
        "never",
        "4 s ago",
        "2 min ago",
        "2 h ago",
        "3 d ago",
    ]
    assert (ratio(None), ratio(0.9091)) == ("-", "90.9%")
    assert (plural(1, "miss", "misses"), plural(2, "miss", "misses"), plural(0, "hit")) == (
        "1 miss",
        "2 misses",
        "0 hits",
    )


# ----- rendering ----------------------------------------------------------------------------------


STATUS = {
    "nodes": [
        {
            "id": "node-1",
            "agent": "127.0.0.1:1",
            "connected": True,
            "reachable": True,
            "error": None,
            "max_models": 2,
            "max_bytes": None,
            "used_models": 1,
            "used_bytes": 2048,
            "disk_budget_bytes": 1024**3,
            "disk_used_bytes": 1024,
            "counters": {"hits": 9, "misses": 1, "loads": 1, "evictions": 0},
            "models": [
                {
                    "name": "tenant-0002",
                    "version": 1,
                    "state": "cached",
                    "memory_bytes": 0,
                    "disk_bytes": 512,
                    "last_used": NOW - 600,
                    "hits": 0,
                    "loads": 1,
                    "last_load_seconds": None,
                    "pinned": False,
                },
                {
                    "name": "tenant-0001",
                    "version": 1,
                    "state": "resident",
                    "memory_bytes": 2048,
                    "disk_bytes": 512,
                    "last_used": NOW - 3,
                    "hits": 9,
                    "loads": 1,
                    "last_load_seconds": 0.8,
                    "pinned": True,
                },
            ],
        },
        {
            "id": "node-2",
            "agent": "127.0.0.1:2",
            "connected": False,
            "reachable": False,
            "error": "agent at 127.0.0.1:2 is unreachable: connection refused",
            "counters": {},
            "models": [],
        },
    ],
    "totals": {"hits": 9, "misses": 1, "loads": 1, "evictions": 0, "hit_ratio": 0.9, "resident_models": 1},
    "daemon": {"nodes": 2, "connected": 1, "replicas": 1, "fast_path_routes": 2},
}


def test_status_tables() -> None:
    text = text_of(render_status(STATUS, NOW))
    lines = [" ".join(line.replace("│", " ").split()) for line in text.splitlines()]
    assert "node-1 ok 1 / 2 2.0 KiB / - 1.0 KiB / 1.0 GiB 9 1 1 0" in lines
    assert "node-2 unreachable - - - - - - -" in lines
    assert "node-2: agent at 127.0.0.1:2 is unreachable: connection refused" in lines
    models = [line for line in lines if line.startswith("node-1 tenant")]
    # resident first, then cached; sizes, last use, hits, loads, pin
    assert models == [
        "node-1 tenant-0001 1 resident 2.0 KiB 512 B 3 s ago 9 1 yes",
        "node-1 tenant-0002 1 cached - 512 B 10 min ago 0 1",
    ]
    assert lines[-1] == (
        "Totals: 9 hits, 1 miss (hit ratio 90.0%), 1 load, 0 evictions; 1 resident model on 2 nodes; "
        "2 fast-path routes"
    )
    assert node_health(STATUS["nodes"][0]) == ("ok", "green")


def test_status_with_no_model() -> None:
    document = {"nodes": [{**STATUS["nodes"][1]}], "totals": {}, "daemon": {}}
    assert "No model is loaded or cached on any node." in text_of(render_status(document, NOW))


def test_store_listing() -> None:
    document = {
        "store": "s3://models/prod",
        "node": "node-1",
        "truncated": True,
        "models": [
            {
                "name": "alpha",
                "versions": [{"version": 1, "bytes": 1000}, {"version": 2, "bytes": 3 * 1024**2}],
                "labels": {"stable": 1, "canary": 2, "beta": 2},
            },
            {"name": "empty", "versions": [], "labels": {}},
        ],
    }
    lines = [" ".join(line.split()) for line in text_of(render_models(document)).splitlines()]
    assert lines[:4] == [
        "MODEL VERSION SIZE LABELS",
        "alpha 1 1000 B stable",
        "2 3.0 MiB beta, canary",
        "empty - -",
    ]
    assert "2 models, 2 versions in s3://models/prod (listed by node-1)" in lines
    assert lines[-1] == "The store holds more models: list more with --limit."


def test_operation_results() -> None:
    evicted = {
        "nodes": [
            {"node": "node-1", "evicted": [{"model": "m", "version": 1}], "error": None, "code": None},
            {"node": "node-2", "evicted": [], "error": "Model m is pinned", "code": "FAILED_PRECONDITION"},
        ]
    }
    lines = [" ".join(line.split()) for line in text_of(render_evicted(evicted)).splitlines()]
    assert lines[1:] == ["node-1 m:1 unloaded", "node-2 - FAILED_PRECONDITION: Model m is pinned"]
    assert failures(evicted["nodes"]) == 1

    pins = {
        "pinned": True,
        "nodes": [{"node": "node-2", "key": {"model": "m", "version": 3}, "error": None}],
        "skipped": [{"node": "node-1", "key": None, "error": "agent at x is unreachable"}],
    }
    lines = [" ".join(line.split()) for line in text_of(render_pins(pins)).splitlines()]
    assert lines[1:] == ["node-2 3 pinned", "node-1 skipped: agent at x is unreachable"]

    preloaded = {
        "models": [
            {
                "model": "a",
                "version": None,
                "nodes": [
                    {
                        "node": "node-1",
                        "key": {"model": "a", "version": 2},
                        "outcome": "loaded",
                        "seconds": 1.234,
                    }
                ],
            },
            {
                "model": "b",
                "version": 4,
                "nodes": [{"node": "node-1"}],
                "error": "Servable not found",
                "code": "NOT_FOUND",
            },
        ]
    }
    lines = [" ".join(line.split()) for line in text_of(render_preloaded(preloaded)).splitlines()]
    assert lines[1:] == ["a node-1 2 loaded 1.23", "b:4: Servable not found"]
    assert preload_failures(preloaded) == 1


def test_the_status_hint_of_up() -> None:
    endpoints = StackEndpoints(
        host="127.0.0.1",
        rest_port=8501,
        grpc_port=8500,
        admin_address=None,
        metrics_address="127.0.0.1:1",
        example_model="m",
        logs_dir=Path("logs"),
        store="s",
        nodes=2,
        max_models=2,
        python="/nowhere/bin/python",
        admin_api_address="127.0.0.1:18002",
    )
    assert endpoints.status_command("http://127.0.0.1:18002") == "tfscachectl status"
    other = dataclasses.replace(endpoints, admin_api_address="127.0.0.1:5555")
    assert (
        other.status_command("http://127.0.0.1:18002") == "tfscachectl status --admin http://127.0.0.1:5555"
    )


# ----- the client's errors ------------------------------------------------------------------------


def call(handler: Callable[[httpx.Request], httpx.Response], token: str | None = None) -> Any:
    async def run() -> Any:
        async with AdminClient("127.0.0.1:9", token, transport=httpx.MockTransport(handler)) as client:
            return await client.status()

    return asyncio.run(run())


def answer(status: int, document: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=document)


def test_the_token_is_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"nodes": []})

    assert call(handler, token="t0k") == {"nodes": []}
    assert seen[0].headers["Authorization"] == "Bearer t0k"
    assert seen[0].url.path == "/v1/status"


def test_a_missing_or_refused_token() -> None:
    refusal = {"error": "The admin token is not valid", "code": "UNAUTHENTICATED"}
    with pytest.raises(AdminAuthError) as missing:
        call(answer(401, refusal))
    assert str(missing.value) == (
        "The daemon's admin API at http://127.0.0.1:9 needs a token: give it with --token or "
        "TFSCACHE_ADMIN_TOKEN"
    )
    with pytest.raises(AdminAuthError) as wrong:
        call(answer(401, refusal), token="bad")
    assert str(wrong.value).endswith(
        "refused the token (--token or TFSCACHE_ADMIN_TOKEN): The admin token is not valid"
    )


def test_the_daemons_errors() -> None:
    with pytest.raises(AdminError) as caught:
        call(answer(404, {"error": "Servable not found for request: Latest(x)", "code": "NOT_FOUND"}))
    assert (caught.value.message, caught.value.code) == (
        "Servable not found for request: Latest(x)",
        "NOT_FOUND",
    )
    with pytest.raises(AdminError) as other:
        call(lambda request: httpx.Response(502, text="<html>bad gateway</html>"))
    assert str(other.value) == (
        "http://127.0.0.1:9 does not answer as tfscache's admin API (HTTP 502 on /v1/status); "
        "is --admin the daemon's admin address?"
    )


def test_transport_failures() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed") from ConnectionRefusedError(111, "refused")

    with pytest.raises(AdminUnreachableError) as caught:
        call(refused)
    assert str(caught.value) == (
        "The daemon's admin API at http://127.0.0.1:9 is unreachable (Connection refused); is the daemon "
        "running? Give its address with --admin or TFSCACHE_ADMIN_URL"
    )

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    with pytest.raises(AdminError, match=r"did not answer within 60 s$"):
        call(slow)


def preload_handler(bodies: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    """A daemon that knows model ``a`` (loaded on node-1) and no other."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        names = [m["model"] for m in body["models"]]
        if any(name != "a" for name in names):
            missing = next(name for name in names if name != "a")
            error = f"Servable not found for request: Latest({missing})"
            return httpx.Response(404, json={"error": error, "code": "NOT_FOUND"})
        entry = {"node": "node-1", "key": {"model": "a", "version": 2}, "outcome": "loaded", "error": None}
        return httpx.Response(
            200,
            json={
                "wait": body["wait"],
                "replicas": 1,
                "models": [{"model": "a", "version": None, "nodes": [entry]}],
            },
        )

    return handler


def preload(refs: list[ModelRef], wait: bool, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with AdminClient(
            "127.0.0.1:9", transport=httpx.MockTransport(preload_handler(bodies))
        ) as client:
            return await preload_models(client, refs, None, wait, Progress(disable=True))

    return asyncio.run(run())


def test_preload_waits_for_each_model_in_its_own_request() -> None:
    bodies: list[dict[str, Any]] = []
    document = preload([ModelRef("a"), ModelRef("b")], True, bodies)
    assert sorted((b["models"][0]["model"], b["wait"]) for b in bodies) == [("a", True), ("b", True)]
    a, b = document["models"]
    assert a["nodes"][0]["outcome"] == "loaded"
    assert b == {
        "nodes": [],
        "model": "b",
        "version": None,
        "error": "Servable not found for request: Latest(b)",
        "code": "NOT_FOUND",
    }
    assert preload_failures(document) == 1
    lines = [" ".join(line.split()) for line in text_of(render_preloaded(document)).splitlines()]
    assert lines[1:] == ["a node-1 2 loaded -", "b: Servable not found for request: Latest(b)"]


def test_preload_fails_when_every_model_failed() -> None:
    with pytest.raises(AdminError) as caught:
        preload([ModelRef("b")], True, [])
    assert str(caught.value) == "Servable not found for request: Latest(b)"


def test_preload_without_waiting_is_one_request() -> None:
    bodies: list[dict[str, Any]] = []
    document = preload([ModelRef("a")], False, bodies)
    assert bodies == [{"models": [{"model": "a", "version": None}], "replicas": None, "wait": False}]
    assert document["models"][0]["nodes"][0]["node"] == "node-1"
