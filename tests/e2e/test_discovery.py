"""A dynamic pool with a real etcd: agents register, a third node joins under traffic (about a third of the
resident models move, no request fails), a node is killed under traffic (requests fail over after a short
window, counted), and etcd restarts under traffic without a failed request.

Run in this order (module state carries over): join, kill, etcd restart. Then the same daemon and agents
with Consul's HTTP API (a stand-in of it).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.consul_standin import ConsulApiStandIn
from tests.harness.etcd import EtcdServer
from tests.harness.processes import ProcessRegistry, wait_until
from tests.harness.stack import Stack, add_node, start_stack
from tfscachectl.core.placement import Node, NodeId, place
from tfscachectl.modelgen.store import ModelStoreTree
from tfscachectl.modelgen.tenants import tenant_weights

pytestmark = pytest.mark.e2e

#: Copies of one generated tenant model under these names (weights follow the copied tenant).
MODELS = [f"model-{i:02d}" for i in range(12)]
SOURCE_TENANT = "tenant-0001"
TTL_S = 2.0
HTTP_TIMEOUT_S = 60.0
SETTLE_S = 60.0


@dataclass
class Traffic:
    """Clients sending predicts for every model in turn until stopped; answers counted."""

    url: str
    ok: int = 0
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    failed_started: list[float] = field(default_factory=list)  # monotonic time each failed request began
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, clients: int = 2) -> Traffic:
        for index in range(clients):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, offset: int) -> None:
        with httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT_S) as client:
            turn = offset
            while not self._stop.is_set():
                name = MODELS[turn % len(MODELS)]
                turn += 1
                started = time.monotonic()
                try:
                    response = client.post(f"/v1/models/{name}:predict", json={"instances": [2.0]})
                    status, text = response.status_code, response.text
                except httpx.HTTPError as exc:
                    status, text = 0, repr(exc)
                if status == 200 and response.json() == {"predictions": [expected(2.0)]}:
                    self.ok += 1
                else:
                    self.failed.append((name, status, text[:200]))
                    self.failed_started.append(started)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(HTTP_TIMEOUT_S)


def expected(x: float) -> float:
    weights = tenant_weights(int(SOURCE_TENANT.rsplit("-", 1)[1]))
    return weights.w * x + weights.b


def metrics(stack: Stack) -> dict[str, float]:
    return stack.daemon_metrics()


def agent_settings(etcd: EtcdServer) -> dict[str, Any]:
    return {
        "max_models": 12,
        "discovery": {"kind": "etcd", "etcd": {"endpoints": [etcd.endpoint], "ttl": TTL_S}},
    }


@pytest.fixture(scope="module")
def etcd(module_processes: ProcessRegistry, tmp_path_factory: pytest.TempPathFactory) -> EtcdServer:
    return EtcdServer(module_processes, tmp_path_factory.mktemp("etcd") / "data").start()


@pytest.fixture(scope="module")
def store(generated_models: ModelStoreTree, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("discovery-store")
    for name in MODELS:
        shutil.copytree(generated_models.base_path(SOURCE_TENANT), root / name)
    return str(root)


@pytest.fixture(scope="module")
def stack(
    module_processes: ProcessRegistry, etcd: EtcdServer, store: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    running = start_stack(
        module_processes,
        tmp_path_factory.mktemp("discovery") / "stack",
        store,
        nodes=2,
        agent_settings=agent_settings(etcd),
        daemon_settings={"discovery": {"kind": "etcd", "etcd": {"endpoints": [etcd.endpoint]}}},
    )
    wait_until(lambda: metrics(running).get("tfscache_daemon_nodes") == 2, SETTLE_S, "two registered nodes")
    yield running
    running.stop()


def resident(stack: Stack) -> dict[str, set[str]]:
    """Node id -> the models its agent says are resident."""
    import asyncio

    from tfscachectl.agent.api.client import AgentClient

    async def read() -> dict[str, set[str]]:
        found = {}
        for node in stack.nodes:
            if not node.agent.running:
                continue
            async with AgentClient(f"127.0.0.1:{node.agent_port}") as client:
                status = await client.status()
            found[node.id] = {m.name for m in status.models if m.state == "resident"}
        return found

    return asyncio.run(read())


def test_registered_agents_serve_and_a_joining_node_takes_about_a_third(
    module_processes: ProcessRegistry, stack: Stack, etcd: EtcdServer, store: str
) -> None:
    with httpx.Client(base_url=stack.rest_url, timeout=HTTP_TIMEOUT_S) as client:
        for name in MODELS:
            response = client.post(f"/v1/models/{name}:predict", json={"instances": [2.0]})
            assert response.json() == {"predictions": [expected(2.0)]}, response.text
    before = resident(stack)
    assert sum(len(models) for models in before.values()) == len(MODELS)

    three = [Node(NodeId(f"node-{i}")) for i in (1, 2, 3)]
    will_move = {name for name in MODELS if place(name, three, 1) == (NodeId("node-3"),)}
    traffic = Traffic(stack.rest_url).start()
    try:
        add_node(module_processes, stack, "node-3", store, agent_settings=agent_settings(etcd))
        wait_until(lambda: metrics(stack).get("tfscache_daemon_nodes") == 3, SETTLE_S, "node-3 registered")
        wait_until(
            lambda: metrics(stack).get("tfscache_daemon_model_moves_total", 0) >= len(will_move),
            SETTLE_S,
            f"{len(will_move)} models to move to node-3",
        )
        time.sleep(1.0)  # traffic goes on over the new placement for a moment
    finally:
        traffic.stop()
    after = resident(stack)
    print(
        f"join: {len(will_move)} of {len(MODELS)} models moved ({len(will_move) / len(MODELS):.0%}); "
        f"{traffic.ok} requests served, {len(traffic.failed)} failed during the join"
    )
    assert traffic.failed == []
    assert after["node-3"] == will_move
    assert metrics(stack).get("tfscache_daemon_model_move_failures_total", 0) == 0
    for node in ("node-1", "node-2"):
        assert after[node] == before[node] - will_move


def test_a_killed_node_fails_over_after_a_short_window(stack: Stack) -> None:
    victim = next(n for n in stack.nodes if n.id == "node-3")
    held = resident(stack)["node-3"]
    assert held
    traffic = Traffic(stack.rest_url).start()
    try:
        time.sleep(0.5)
        killed_at = time.monotonic()
        victim.agent.kill()
        victim.backend.process.kill()
        wait_until(
            lambda: metrics(stack).get("tfscache_daemon_nodes") == 2, SETTLE_S, "node-3's lease to end"
        )
        left_at = time.monotonic()
        left_after = left_at - killed_at
        time.sleep(3.0)
    finally:
        traffic.stop()
    # requests that began once the node had left the pool all succeed (those in flight may fail: counted)
    late = [f for f, began in zip(traffic.failed, traffic.failed_started, strict=True) if began > left_at]
    print(
        f"kill: node-3 left the pool {left_after:.1f} s after it was killed; "
        f"{len(traffic.failed)} requests failed in the window, {traffic.ok} served"
    )
    assert late == [], late[:3]
    with httpx.Client(base_url=stack.rest_url, timeout=HTTP_TIMEOUT_S) as client:
        for name in held:
            response = client.post(f"/v1/models/{name}:predict", json={"instances": [2.0]})
            assert response.json() == {"predictions": [expected(2.0)]}, response.text
    survivors = resident(stack)
    assert held <= survivors["node-1"] | survivors["node-2"]


def test_etcd_restarting_under_traffic_fails_no_request(stack: Stack, etcd: EtcdServer) -> None:
    traffic = Traffic(stack.rest_url).start()
    try:
        time.sleep(0.5)
        etcd.stop()
        time.sleep(TTL_S * 2)  # longer than the leases: the daemon keeps the last membership
        assert metrics(stack).get("tfscache_daemon_nodes") == 2
        etcd.start()
        time.sleep(TTL_S * 2)
    finally:
        traffic.stop()
    assert traffic.failed == [], traffic.failed[:3]
    assert traffic.ok > 0
    assert metrics(stack).get("tfscache_daemon_nodes") == 2


def test_agents_registered_in_consul_are_served(
    processes: ProcessRegistry, store: str, tmp_path: Path
) -> None:
    """The daemon follows nodes registered with Consul's HTTP API (a stand-in of it: no Consul agent can be
    installed here), and stops routing to a node whose registration ends."""
    consul = ConsulApiStandIn().start()
    try:
        discovery = {"kind": "consul", "consul": {"address": consul.address, "ttl": TTL_S}}
        stack = start_stack(
            processes,
            tmp_path / "stack",
            store,
            nodes=2,
            agent_settings={"max_models": 4, "discovery": discovery},
            daemon_settings={"discovery": discovery},
        )
        wait_until(lambda: metrics(stack).get("tfscache_daemon_nodes") == 2, SETTLE_S, "two Consul members")
        assert consul.service_ids() == {"node-1", "node-2"}
        with httpx.Client(base_url=stack.rest_url, timeout=HTTP_TIMEOUT_S) as client:
            for name in MODELS[:4]:
                response = client.post(f"/v1/models/{name}:predict", json={"instances": [2.0]})
                assert response.json() == {"predictions": [expected(2.0)]}, response.text
        stack.nodes[1].agent.stop()  # deregisters on the way out
        wait_until(lambda: metrics(stack).get("tfscache_daemon_nodes") == 1, SETTLE_S, "node-2 to leave")
        with httpx.Client(base_url=stack.rest_url, timeout=HTTP_TIMEOUT_S) as client:
            for name in MODELS[:4]:
                response = client.post(f"/v1/models/{name}:predict", json={"instances": [2.0]})
                assert response.json() == {"predictions": [expected(2.0)]}, response.text
        stack.stop()
    finally:
        consul.close()
