"""The daemon's admin API and the operator commands, against a real daemon in this process.

The daemon (``tfscachectl.daemon.service.Daemon``) runs on an event loop in a thread, with two node agents
whose gRPC API is the real one (``AgentServer`` over ``AgentService``) but whose node is in memory
(``MemoryNodeAgent``: loads are instant, no TF Serving), on a store directory with small fake versions; a
third node's agent does not exist (nothing listens on its port). The API is called with httpx and through
``python -m tfscachectl`` as a user would; no Envoy, no TensorFlow.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.harness import free_port, wait_until
from tests.harness.serving import REPO_ROOT
from tfscachectl.agent.api.server import AgentServer, AgentService
from tfscachectl.agent.api.values import ModelInfo, NodeStatus, ResidencyEvent
from tfscachectl.core.placement import NodeId, rank
from tfscachectl.core.refs import ModelKey
from tfscachectl.core.residency import Capacity, Residency, ResidencyState
from tfscachectl.daemon.service import Daemon
from tfscachectl.daemon.settings import DaemonSettings, NodeSettings
from tfscachectl.errors import Code, ModelNotInStoreError, ServingError
from tfscachectl.stores.local import LocalModelStore

pytestmark = pytest.mark.integration
T = TypeVar("T")

LOOP_CALL_TIMEOUT_S = 20.0
CONNECTED_TIMEOUT_S = 20.0
CLI_TIMEOUT_S = 60.0
TOKEN = "s3cret-token"
# name -> {version: file bytes}
STORE = {"alpha": {1: 1000, 2: 3000}, "beta": {1: 2048}, "gamma": {7: 10}}


# ----- a node agent in memory ---------------------------------------------------------------------


class MemoryNodeAgent:
    """What ``AgentService`` needs of a ``NodeAgent``, in memory: loads are instant, the store is real."""

    def __init__(self, node_id: str, store: LocalModelStore) -> None:
        self.settings = SimpleNamespace(node_id=node_id, timeouts=SimpleNamespace(ensure=30.0))
        self.store = store
        self.residency = Residency(Capacity(max_models=None, max_bytes=None), guard_window=0.0)
        self.counters = dict.fromkeys(("hits", "misses", "loads", "load_failures", "evictions", "fetches"), 0)
        self.model_hits: dict[ModelKey, int] = {}
        self._subscribers: set[asyncio.Queue[ResidencyEvent]] = set()

    async def resolve(self, name: str, version: int | None, label: str | None) -> ModelKey:
        try:
            versions = self.store.list_versions(name)
        except ModelNotInStoreError:
            versions = ()
        if version is None and versions:
            return ModelKey(name, versions[-1])
        if version is not None and version in versions:
            return ModelKey(name, version)
        wanted = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise ServingError(Code.NOT_FOUND, f"Servable not found for request: {wanted}")

    async def ensure(
        self, name: str, version: int | None = None, label: str | None = None, timeout: float | None = None
    ) -> SimpleNamespace:
        key = await self.resolve(name, version, label)
        entry = self.residency.get(key)
        if entry is not None and entry.state is ResidencyState.RESIDENT:
            self.counters["hits"] += 1
            self.model_hits[key] = self.model_hits.get(key, 0) + 1
            return SimpleNamespace(key=key, outcome="hit", seconds=0.0)
        self.counters["misses"] += 1
        self.residency.start_loading(key, self.store.describe(key.name, key.version).total_bytes, time.time())
        self.residency.loaded(key, time.time())
        self.counters["loads"] += 1
        self._publish(ResidencyEvent("loaded", key))
        return SimpleNamespace(key=key, outcome="loaded", seconds=0.0)

    async def evict(self, name: str, version: int | None = None) -> list[ModelKey]:
        keys = [
            e.key
            for e in self.residency
            if e.key.name == name and version in (None, e.key.version) and e.state is ResidencyState.RESIDENT
        ]
        if not keys:
            raise ServingError(
                Code.NOT_FOUND, f"Model {name} is not resident on node {self.settings.node_id}"
            )
        if any(k in self.residency.pins() for k in keys):
            raise ServingError(Code.FAILED_PRECONDITION, f"Model {name} is pinned: unpin it first")
        for key in keys:
            self.residency.start_unloading(key)
            self._publish(ResidencyEvent("unloading", key))
            self.residency.unloaded(key)
            self.counters["evictions"] += 1
            self._publish(ResidencyEvent("unloaded", key))
        return keys

    async def pin(self, name: str, version: int | None = None, pinned: bool = True) -> ModelKey:
        key = await self.resolve(name, version, None)
        if pinned:
            self.residency.pin(key)
            await self.ensure(key.name, key.version)
        else:
            self.residency.unpin(key)
        return key

    def touch(self, name: str, version: int, hits: int, when: float) -> None:
        return None

    def status(self) -> NodeStatus:
        models = tuple(
            ModelInfo(
                e.key.name,
                e.key.version,
                e.state.value,  # type: ignore[arg-type]
                e.size_bytes,
                e.size_bytes,
                e.last_used,
                self.model_hits.get(e.key, 0),
                1,
                0.0,
                e.key in self.residency.pins(),
            )
            for e in self.residency.entries()
        )
        usage = self.residency.usage()
        return NodeStatus(
            self.settings.node_id, 2, None, usage.models, usage.bytes, None, 0, models, dict(self.counters)
        )

    async def events(self, synced: bool = False) -> AsyncIterator[ResidencyEvent]:
        queue: asyncio.Queue[ResidencyEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            for entry in self.residency.entries():
                if entry.state is ResidencyState.RESIDENT:
                    yield ResidencyEvent("loaded", entry.key)
            if synced:
                yield ResidencyEvent("synced", None)
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    def _publish(self, event: ResidencyEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)


# ----- the daemon on a loop in a thread -----------------------------------------------------------


class DaemonThread:
    """Two memory agents' APIs and the daemon, on an event loop in a thread."""

    def __init__(self, store: Path, token: str | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="daemon-loop", daemon=True)
        self.store = LocalModelStore(store)
        self.token = token
        self.agents = {n: MemoryNodeAgent(n, self.store) for n in ("node-1", "node-2")}
        self.servers: list[AgentServer] = []
        self.daemon: Daemon | None = None
        self.admin_url = ""

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(LOOP_CALL_TIMEOUT_S)

    def start(self) -> DaemonThread:
        self.thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        nodes = []
        for node_id, agent in self.agents.items():
            server = AgentServer(AgentService(agent))  # type: ignore[arg-type]
            address = await server.start("127.0.0.1:0")
            self.servers.append(server)
            nodes.append(self._node(node_id, address))
        nodes.append(self._node("node-3", f"127.0.0.1:{free_port()}"))  # no agent there
        settings = DaemonSettings(
            xds_listen="127.0.0.1:0",
            ext_proc_listen="127.0.0.1:0",
            rest_listen=f"127.0.0.1:{free_port()}",
            grpc_listen=f"127.0.0.1:{free_port()}",
            admin_listen="127.0.0.1:0",
            admin_token=self.token,  # type: ignore[arg-type]
            nodes=tuple(nodes),
            timeouts={"ensure": 20.0},  # type: ignore[arg-type]
        )
        self.daemon = Daemon(settings)
        bound = await self.daemon.start()
        self.admin_url = f"http://{bound.admin}"

    @staticmethod
    def _node(node_id: str, agent: str) -> NodeSettings:
        return NodeSettings(
            id=node_id, rest=f"127.0.0.1:{free_port()}", grpc=f"127.0.0.1:{free_port()}", agent=agent
        )

    def stop(self) -> None:
        async def close() -> None:
            if self.daemon is not None:
                await self.daemon.stop()
            for server in self.servers:
                await server.stop(0)

        try:
            self.call(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(LOOP_CALL_TIMEOUT_S)
            self.loop.close()


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("admin-store")
    for name, versions in STORE.items():
        for version, size in versions.items():
            directory = root / name / str(version)
            directory.mkdir(parents=True)
            (directory / "saved_model.pb").write_bytes(b"x" * size)
    (root / "alpha" / "labels.json").write_text(json.dumps({"stable": 1, "canary": 2}))
    return root


def _start(store_dir: Path, token: str | None = None) -> Iterator[DaemonThread]:
    running = DaemonThread(store_dir, token).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def daemon(store_dir: Path) -> Iterator[DaemonThread]:
    yield from _start(store_dir)


@pytest.fixture
def guarded_daemon(store_dir: Path) -> Iterator[DaemonThread]:
    yield from _start(store_dir, TOKEN)


def api(daemon: DaemonThread, method: str, endpoint: str, body: Any = None, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=daemon.admin_url, timeout=LOOP_CALL_TIMEOUT_S) as client:
        return client.request(method, f"/v1/{endpoint}", json=body, headers=headers)


def cli(
    daemon: DaemonThread, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TFSCACHE_ADMIN_")}
    environment.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        TFSCACHE_ADMIN_URL=daemon.admin_url,
        COLUMNS="200",
        **(env or {}),
    )
    return subprocess.run(
        [sys.executable, "-m", "tfscachectl", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO_ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def holders(daemon: DaemonThread, name: str) -> list[str]:
    nodes = api(daemon, "GET", "status").json()["nodes"]
    return [
        n["id"] for n in nodes if any(m["name"] == name and m["state"] == "resident" for m in n["models"])
    ]


# ----- status -------------------------------------------------------------------------------------


def test_status_lists_every_node_and_an_unreachable_one(daemon: DaemonThread) -> None:
    api(daemon, "POST", "preload", {"models": [{"model": "alpha"}]})
    response = api(daemon, "GET", "status")
    assert response.status_code == 200
    document = response.json()
    by_id = {n["id"]: n for n in document["nodes"]}
    assert sorted(by_id) == ["node-1", "node-2", "node-3"]
    assert by_id["node-3"]["reachable"] is False
    assert by_id["node-3"]["connected"] is False
    assert "is unreachable" in by_id["node-3"]["error"]
    reachable = [by_id["node-1"], by_id["node-2"]]
    assert all(n["reachable"] and n["error"] is None for n in reachable)
    resident = [m for n in reachable for m in n["models"] if m["state"] == "resident"]
    assert [(m["name"], m["version"], m["memory_bytes"]) for m in resident] == [("alpha", 2, 3000)]
    assert document["totals"]["loads"] == 1
    assert document["totals"]["resident_models"] == 1
    daemon_view = document["daemon"]
    assert (daemon_view["nodes"], daemon_view["replicas"], daemon_view["slow_path_routed"]) == (3, 1, 0)


# ----- preload, evict, pin ------------------------------------------------------------------------


def test_preload_places_like_a_request_and_waits(daemon: DaemonThread) -> None:
    response = api(daemon, "POST", "preload", {"models": [{"model": "beta", "version": 1}], "replicas": 2})
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["wait"] is True
    assert document["replicas"] == 2
    [model] = document["models"]
    assert model["model"] == "beta"
    assert sorted(n["node"] for n in model["nodes"]) == ["node-1", "node-2"]
    assert all(
        n["outcome"] == "loaded" and n["key"] == {"model": "beta", "version": 1} for n in model["nodes"]
    )
    assert sorted(holders(daemon, "beta")) == ["node-1", "node-2"]
    # again: hits
    again = api(daemon, "POST", "preload", {"models": [{"model": "beta", "version": 1}], "replicas": 2})
    assert {n["outcome"] for n in again.json()["models"][0]["nodes"]} == {"hit"}


def test_preload_passes_over_a_node_whose_agent_does_not_answer(daemon: DaemonThread) -> None:
    """As a request would: the next node in rank order is used, and the one passed over is reported."""
    nodes = [NodeId(n) for n in ("node-1", "node-2", "node-3")]
    model = next(name for name in STORE if rank(name, nodes)[0] == "node-3")
    response = api(daemon, "POST", "preload", {"models": [{"model": model}]})
    assert response.status_code == 200, response.text
    [placed] = response.json()["models"]
    assert [n["node"] for n in placed["nodes"]] == [rank(model, nodes)[1]]
    assert [n["node"] for n in placed["skipped"]] == ["node-3"]
    assert "is unreachable" in placed["skipped"][0]["error"]


def test_preload_of_an_unknown_model_is_tf_servings_404(daemon: DaemonThread) -> None:
    response = api(daemon, "POST", "preload", {"models": [{"model": "nope"}], "wait": False})
    assert response.status_code == 404
    document = response.json()
    assert document["error"] == "Servable not found for request: Latest(nope)"
    assert document["code"] == "NOT_FOUND"


def test_evict_unloads_on_the_holders(daemon: DaemonThread) -> None:
    api(daemon, "POST", "preload", {"models": [{"model": "gamma"}], "replicas": 2})
    wait_until(lambda: len(holders(daemon, "gamma")) == 2, CONNECTED_TIMEOUT_S, "gamma on both nodes")
    response = api(daemon, "POST", "evict", {"model": "gamma"})
    assert response.status_code == 200, response.text
    document = response.json()
    assert sorted(n["node"] for n in document["nodes"]) == ["node-1", "node-2"]
    assert all(n["evicted"] == [{"model": "gamma", "version": 7}] for n in document["nodes"])
    assert holders(daemon, "gamma") == []
    missing = api(daemon, "POST", "evict", {"model": "gamma"})
    assert missing.status_code == 404
    assert missing.json() == {"error": "Model gamma is not resident on any node", "code": "NOT_FOUND"}


def test_evict_on_a_node_that_does_not_hold_it_or_does_not_exist(daemon: DaemonThread) -> None:
    response = api(daemon, "POST", "evict", {"model": "alpha", "node": "node-2"})
    assert response.status_code == 404
    assert response.json()["error"] == "Model alpha is not resident on node node-2"
    unknown = api(daemon, "POST", "evict", {"model": "alpha", "node": "node-9"})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "Unknown node 'node-9' (nodes: node-1, node-2, node-3)"


def test_pin_refuses_eviction_until_unpinned(daemon: DaemonThread) -> None:
    pinned = api(daemon, "POST", "pin", {"model": "alpha", "version": 1})
    assert pinned.status_code == 200, pinned.text
    [node] = pinned.json()["nodes"]
    assert node["key"] == {"model": "alpha", "version": 1}
    assert pinned.json()["pinned"] is True
    wait_until(lambda: holders(daemon, "alpha") == [node["node"]], CONNECTED_TIMEOUT_S, "alpha resident")
    refused = api(daemon, "POST", "evict", {"model": "alpha", "version": 1})
    assert refused.status_code == 400
    assert refused.json()["code"] == "FAILED_PRECONDITION"
    assert refused.json()["nodes"][0]["error"] == "Model alpha is pinned: unpin it first"
    unpinned = api(daemon, "POST", "unpin", {"model": "alpha", "version": 1})
    assert unpinned.status_code == 200
    assert unpinned.json()["pinned"] is False
    assert api(daemon, "POST", "evict", {"model": "alpha", "version": 1}).status_code == 200


# ----- the store ----------------------------------------------------------------------------------


def test_models_lists_the_store_with_sizes_and_labels(daemon: DaemonThread, store_dir: Path) -> None:
    document = api(daemon, "GET", "models").json()
    assert document["store"] == store_dir.as_uri()
    assert document["node"] in ("node-1", "node-2")
    assert document["truncated"] is False
    assert document["models"] == [
        {
            "name": "alpha",
            "versions": [{"version": 1, "bytes": 1000}, {"version": 2, "bytes": 3000}],
            "labels": {"stable": 1, "canary": 2},
        },
        {"name": "beta", "versions": [{"version": 1, "bytes": 2048}], "labels": {}},
        {"name": "gamma", "versions": [{"version": 7, "bytes": 10}], "labels": {}},
    ]
    limited = api(daemon, "GET", "models?limit=1").json()
    assert [m["name"] for m in limited["models"]] == ["alpha"]
    assert limited["truncated"] is True


# ----- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "endpoint", "body", "status", "code", "message"),
    [
        ("GET", "nothing", None, 404, "NOT_FOUND", "No admin endpoint /v1/nothing"),
        ("GET", "evict", None, 405, "UNIMPLEMENTED", "GET is not allowed on /v1/evict"),
        ("POST", "evict", {"version": 1}, 400, "INVALID_ARGUMENT", "Invalid request: model: Field required"),
        ("POST", "evict", {"model": "a/b"}, 400, "INVALID_ARGUMENT", "model name 'a/b' contains '/'"),
        ("POST", "preload", {"models": []}, 400, "INVALID_ARGUMENT", "Invalid request: models:"),
        ("GET", "models?limit=0", None, 400, "INVALID_ARGUMENT", "limit must be a positive integer"),
    ],
)
def test_errors_are_json(
    daemon: DaemonThread, method: str, endpoint: str, body: Any, status: int, code: str, message: str
) -> None:
    response = api(daemon, method, endpoint, body)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["code"] == code
    assert message in response.json()["error"]


def test_a_body_that_is_not_json(daemon: DaemonThread) -> None:
    with httpx.Client(base_url=daemon.admin_url) as client:
        response = client.post("/v1/evict", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("The request body is not JSON")


# ----- the token ----------------------------------------------------------------------------------


def test_a_token_is_required_when_set_even_on_loopback(guarded_daemon: DaemonThread) -> None:
    missing = api(guarded_daemon, "GET", "status")
    assert missing.status_code == 401
    assert missing.json() == {
        "error": "This admin API needs a token: send 'Authorization: Bearer <token>'",
        "code": "UNAUTHENTICATED",
    }
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = api(guarded_daemon, "GET", "status", Authorization="Bearer nope")
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "The admin token is not valid"
    unknown_path = api(guarded_daemon, "GET", "nothing")
    assert unknown_path.status_code == 401
    right = api(guarded_daemon, "GET", "status", Authorization=f"Bearer {TOKEN}")
    assert right.status_code == 200


def test_the_cli_with_and_without_the_token(guarded_daemon: DaemonThread) -> None:
    refused = cli(guarded_daemon, "status")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: The daemon's admin API at {guarded_daemon.admin_url} needs a token: give it with --token "
        "or TFSCACHE_ADMIN_TOKEN"
    ]
    wrong = cli(guarded_daemon, "status", "--token", "nope")
    assert wrong.returncode == 1
    assert "refused the token" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    accepted = cli(guarded_daemon, "status", "-o", "json", env={"TFSCACHE_ADMIN_TOKEN": TOKEN})
    assert accepted.returncode == 0, accepted.stderr
    assert len(json.loads(accepted.stdout)["nodes"]) == 3


def test_a_non_loopback_admin_address_without_a_token_is_refused_at_start(tmp_path: Path) -> None:
    config = tmp_path / "daemon.yaml"
    config.write_text(yaml.safe_dump({"admin_listen": f"0.0.0.0:{free_port()}", "nodes": []}))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TFSCACHE_DAEMON_")},
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-m", "tfscachectl", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert (
        "is not a loopback address, with no token: set admin_token (TFSCACHE_DAEMON_ADMIN_TOKEN)" in lines[0]
    )


# ----- the commands -------------------------------------------------------------------------------


def test_the_commands_as_a_user_runs_them(daemon: DaemonThread) -> None:
    preloaded = cli(daemon, "preload", "beta", "gamma:7")
    assert preloaded.returncode == 0, preloaded.stderr
    rows = [line.split() for line in preloaded.stdout.splitlines()[1:] if " skipped " not in line]
    assert sorted((row[0], row[2], row[3]) for row in rows) == [
        ("beta", "1", "loaded"),
        ("gamma:7", "7", "loaded"),
    ]
    assert preloaded.stderr == ""  # the progress display is shown on a terminal only, then replaced

    status = cli(daemon, "status")
    assert status.returncode == 0, status.stderr
    assert "Nodes" in status.stdout
    assert "Models" in status.stdout
    assert "unreachable" in status.stdout  # node-3
    assert "Totals:" in status.stdout

    as_yaml = yaml.safe_load(cli(daemon, "status", "-o", "yaml").stdout)
    assert {n["id"] for n in as_yaml["nodes"]} == {"node-1", "node-2", "node-3"}

    listed = cli(daemon, "models")
    assert listed.returncode == 0, listed.stderr
    assert "stable" in listed.stdout
    assert "2.9 KiB" in listed.stdout

    evicted = cli(daemon, "evict", "beta", "-o", "json")
    assert evicted.returncode == 0, evicted.stderr
    assert json.loads(evicted.stdout)["nodes"][0]["evicted"] == [{"model": "beta", "version": 1}]

    pinned = cli(daemon, "pin", "alpha:1")
    assert pinned.returncode == 0, pinned.stderr
    assert "pinned" in pinned.stdout
    refused = cli(daemon, "evict", "alpha:1")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: Model alpha is pinned: unpin it first"
    assert cli(daemon, "unpin", "alpha:1").returncode == 0


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("preload", "nope"), 1, "error: Servable not found for request: Latest(nope)"),
        (("preload", "nope", "--no-wait"), 1, "error: Servable not found for request: Latest(nope)"),
        (("evict", "nope"), 1, "error: Model nope is not resident on any node"),
        (
            ("evict", "alpha:x"),
            2,
            "error: model reference 'alpha:x': version 'x' is not a non-negative integer",
        ),
        (
            ("pin", "alpha", "--node", "node-9"),
            1,
            "error: Unknown node 'node-9' (nodes: node-1, node-2, node-3)",
        ),
    ],
)
def test_command_errors_are_one_line(
    daemon: DaemonThread, args: tuple[str, ...], status: int, message: str
) -> None:
    result = cli(daemon, *args)
    assert result.returncode == status
    assert result.stderr.strip().splitlines() == [message]
    assert result.stdout == ""


def test_an_unreachable_daemon_is_one_line(daemon: DaemonThread) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli(daemon, "status", "--admin", url)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: The daemon's admin API at {url} is unreachable (Connection refused); is the daemon "
        "running? Give its address with --admin or TFSCACHE_ADMIN_URL"
    ]
