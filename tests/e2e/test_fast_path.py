"""The fast path through the whole stack: hits never reach the daemon, the agents still see them, and a
model leaving a node never fails a request (its routes are withdrawn and acknowledged before it unloads).

One node holding one model at a time, so every new model evicts the previous one; the recency feed reads
Envoy every 0.2 s. Each test runs with both ways of reading a gRPC request's model: tfscache's model-key
module (gRPC misses through the internal listener) and Envoy's generic field extraction.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.harness.processes import ProcessRegistry, wait_until
from tests.harness.stack import Stack, start_stack
from tfscachectl import envoy_module
from tfscachectl.agent.api.client import AgentClient
from tfscachectl.modelgen.store import ModelStoreTree
from tfscachectl.modelgen.tenants import tenant_weights

pytestmark = pytest.mark.e2e

TENANTS = [f"tenant-{n:04d}" for n in range(1, 5)]
ROUTE_WAIT_S = 30.0
HTTP_TIMEOUT_S = 120.0


@pytest.fixture(scope="module", params=["module", "field extraction"])
def stack(
    request: pytest.FixtureRequest,
    module_processes: ProcessRegistry,
    generated_models: ModelStoreTree,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    grpc_key_module = "auto" if request.param == "module" else "off"
    if request.param == "module" and envoy_module.grpc_key_module() is None:
        pytest.skip("the gRPC model-key module cannot be built here (no C compiler)")
    running, _ = one_node_stack(
        module_processes,
        generated_models,
        tmp_path_factory.mktemp("fast-path"),
        TENANTS,
        agent_settings={"max_models": 1},
        fast_path={"grpc_key_module": grpc_key_module},
    )
    yield running
    running.stop()


def one_node_stack(
    processes: ProcessRegistry,
    generated_models: ModelStoreTree,
    root: Path,
    names: list[str],
    *,
    agent_settings: dict[str, Any],
    fast_path: dict[str, Any],
) -> tuple[Stack, Path]:
    """One node over a store of ``names`` (copied under ``root``), recency read every 0.2 s; the stack and
    its store."""
    store = root / "store"
    for name in names:
        shutil.copytree(generated_models.base_path(name), store / name)
    running = start_stack(
        processes,
        root / "stack",
        str(store),
        nodes=1,
        agent_settings=agent_settings,
        daemon_settings={"fast_path": {"recency_interval": 0.2, **fast_path}},
    )
    return running, store


def metrics(stack: Stack) -> dict[str, float]:
    return stack.daemon_metrics()


def ext_proc_requests(stack: Stack) -> float:
    return sum(v for k, v in metrics(stack).items() if k.startswith("tfscache_daemon_requests_total"))


def routes_acked(stack: Stack) -> float:
    return metrics(stack).get("tfscache_daemon_fast_path_route_seconds_count", 0.0)


def expected(name: str, x: float) -> float:
    weights = tenant_weights(int(name.rsplit("-", 1)[1]))
    return weights.w * x + weights.b


def predict_rest(client: httpx.Client, name: str, x: float) -> tuple[int, Any]:
    response = client.post(f"/v1/models/{name}:predict", json={"instances": [x]})
    return response.status_code, response.json()


def predict_grpc(stub: prediction_service_pb2_grpc.PredictionServiceStub, name: str, x: float) -> float:
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([x], dtype=np.float32)))
    response = stub.Predict(request, timeout=HTTP_TIMEOUT_S)
    return float(tf.make_ndarray(response.outputs["y"])[0])


def agent_status(stack: Stack) -> Any:
    async def read() -> Any:
        async with AgentClient(f"127.0.0.1:{stack.nodes[0].agent_port}") as client:
            return await client.status()

    return asyncio.run(read())


def load_and_wait_for_route(stack: Stack, client: httpx.Client, name: str) -> None:
    acked = routes_acked(stack)
    assert predict_rest(client, name, 1.0) == (200, {"predictions": [expected(name, 1.0)]})
    wait_until(lambda: routes_acked(stack) > acked, ROUTE_WAIT_S, f"the fast-path route of {name}")


def test_hits_are_served_without_the_daemon_and_still_count_for_the_agent(stack: Stack) -> None:
    name = TENANTS[0]
    with httpx.Client(base_url=stack.rest_url, timeout=HTTP_TIMEOUT_S) as client:
        load_and_wait_for_route(stack, client, name)
        asked = ext_proc_requests(stack)
        hits_before = next(m.hits for m in agent_status(stack).models if m.name == name)
        for x in range(30):
            assert predict_rest(client, name, float(x)) == (200, {"predictions": [expected(name, float(x))]})
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for x in range(30):
            assert predict_grpc(stub, name, float(x)) == pytest.approx(expected(name, float(x)))
    assert ext_proc_requests(stack) == asked, "a hit reached the daemon's ext_proc server"

    # Envoy counted them; the daemon read the counts and told the agent (recency and per-model hits).
    def agent_saw_them() -> bool:
        model = next(m for m in agent_status(stack).models if m.name == name)
        return model.hits >= hits_before + 60

    wait_until(agent_saw_them, 15, "the agent to learn of the 60 fast-path hits")
    assert metrics(stack)["tfscache_daemon_fast_path_requests_total"] >= 60


def test_a_grpc_miss_takes_the_slow_path_then_its_hits_the_fast_path(stack: Stack) -> None:
    name = TENANTS[3]
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        asked, acked = ext_proc_requests(stack), routes_acked(stack)
        assert predict_grpc(stub, name, 2.0) == pytest.approx(expected(name, 2.0))
        assert ext_proc_requests(stack) > asked, "the cold gRPC request did not take the slow path"
        wait_until(lambda: routes_acked(stack) > acked, ROUTE_WAIT_S, f"the fast-path route of {name}")
        asked = ext_proc_requests(stack)
        for x in range(20):
            assert predict_grpc(stub, name, float(x)) == pytest.approx(expected(name, float(x)))
    assert ext_proc_requests(stack) == asked, "a gRPC hit reached the daemon's ext_proc server"


def test_a_model_evicted_under_steady_traffic_fails_no_request(stack: Stack) -> None:
    busy, other = TENANTS[1], TENANTS[2]
    failures: list[tuple[str, int, Any]] = []
    served = 0
    stop = threading.Event()

    def steady() -> None:
        nonlocal served
        with httpx.Client(base_url=stack.rest_url, timeout=HTTP_TIMEOUT_S) as client:
            while not stop.is_set():
                status, body = predict_rest(client, busy, 3.0)
                if (status, body) != (200, {"predictions": [expected(busy, 3.0)]}):
                    failures.append((busy, status, body))
                served += 1

    withdrawals = metrics(stack).get("tfscache_daemon_fast_path_withdrawals_total", 0.0)
    with httpx.Client(base_url=stack.rest_url, timeout=HTTP_TIMEOUT_S) as client:
        load_and_wait_for_route(stack, client, busy)
        traffic = threading.Thread(target=steady)
        traffic.start()
        try:
            for _ in range(3):  # each load of `other` evicts `busy`, and the traffic brings it back
                status, body = predict_rest(client, other, 2.0)
                if (status, body) != (200, {"predictions": [expected(other, 2.0)]}):
                    failures.append((other, status, body))
        finally:
            stop.set()
            traffic.join(HTTP_TIMEOUT_S)
    assert failures == []
    assert served > 0
    page = metrics(stack)
    assert page["tfscache_daemon_fast_path_withdrawals_total"] > withdrawals
    assert page.get("tfscache_daemon_fast_path_withdrawal_failures_total", 0.0) == 0.0


def test_requests_racing_an_operator_eviction_are_served(stack: Stack) -> None:
    name = TENANTS[3]
    with httpx.Client(base_url=stack.rest_url, timeout=HTTP_TIMEOUT_S) as client:
        load_and_wait_for_route(stack, client, name)

    def call(index: int) -> tuple[int, Any]:
        with httpx.Client(base_url=stack.rest_url, timeout=HTTP_TIMEOUT_S) as client:
            return predict_rest(client, name, float(index))

    async def evict() -> None:
        async with AgentClient(f"127.0.0.1:{stack.nodes[0].agent_port}") as agent:
            await agent.evict(name)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = [pool.submit(call, index) for index in range(64)]
        asyncio.run(evict())
        answers += [pool.submit(call, index) for index in range(64, 96)]
        results = [answer.result() for answer in answers]
    assert results == [(200, {"predictions": [expected(name, float(i))]}) for i in range(96)]


def test_a_new_version_in_the_store_moves_the_unversioned_route(
    module_processes: ProcessRegistry,
    generated_models: ModelStoreTree,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The daemon asks a holder for the latest version every ``latest_refresh``: a version added to the store
    is loaded, and unversioned requests move to it (on the fast path once its route is there)."""
    name, newer = TENANTS[0], TENANTS[1]
    refreshing, store = one_node_stack(
        module_processes,
        generated_models,
        tmp_path_factory.mktemp("latest-refresh"),
        [name],
        agent_settings={"max_models": 2, "version_cache_seconds": 0},
        fast_path={"latest_refresh": 0.5},
    )
    try:
        with httpx.Client(base_url=refreshing.rest_url, timeout=HTTP_TIMEOUT_S) as client:
            load_and_wait_for_route(refreshing, client, name)
            (version_dir,) = [p for p in (store / name).iterdir() if p.name.isdigit()]
            # version 2 of `name`: another tenant's weights, so the answers tell the versions apart
            (newer_dir,) = [p for p in generated_models.base_path(newer).iterdir() if p.name.isdigit()]
            staging = store / name / ".staging"
            shutil.copytree(newer_dir, staging)
            staging.rename(store / name / str(int(version_dir.name) + 1))

            def moved() -> bool:
                return predict_rest(client, name, 2.0) == (200, {"predictions": [expected(newer, 2.0)]})

            wait_until(moved, ROUTE_WAIT_S, f"unversioned requests for {name} to reach its new version")

            def fast_again() -> bool:
                before = ext_proc_requests(refreshing)
                assert moved(), "an unversioned request went back to the old version"
                return ext_proc_requests(refreshing) == before

            wait_until(fast_again, ROUTE_WAIT_S, f"the unversioned route of {name} to its new version")
    finally:
        refreshing.stop()
