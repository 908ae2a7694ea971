"""The cache's behaviour through Envoy: LRU cycling, one load for many cold requests, stickiness, deadlines,
large messages. Two nodes, each holding at most two models, with unmodified TF Serving clients."""

from __future__ import annotations

import shutil
import time
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
from tfscachectl.agent.api.client import AgentClient
from tfscachectl.modelgen.store import ModelStoreTree
from tfscachectl.modelgen.tenants import tenant_weights

pytestmark = pytest.mark.e2e

TENANTS = [f"tenant-{n:04d}" for n in range(1, 9)]
#: The slow model's warm-up runs this many loop iterations at load: seconds of TF Serving load time.
SLOW_LOAD_ITERATIONS = 1_500_000
BIG_VALUES = 16 * 1024 * 1024  # 64 MiB of float32 each way
UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def write_slow_warmup(version_dir: Path) -> None:
    """A warm-up file making the ``slow`` model's load take seconds (TF Serving replays it at load)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    record = prediction_log_pb2.PredictionLog()
    request = record.predict_log.request
    request.model_spec.name = "slow"
    request.inputs["iterations"].CopyFrom(tf.make_tensor_proto(np.int64(SLOW_LOAD_ITERATIONS)))
    (version_dir / "assets.extra").mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(version_dir / "assets.extra" / "tf_serving_warmup_requests")) as writer:
        writer.write(record.SerializeToString())


@pytest.fixture(scope="module")
def stack(
    module_processes: ProcessRegistry,
    generated_models: ModelStoreTree,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("behaviour")
    store = root / "store"
    for name in [*TENANTS, "half_plus_two"]:
        shutil.copytree(generated_models.base_path(name), store / name)
    shutil.copytree(generated_models.base_path("slow"), store / "slow")
    for version_dir in (store / "slow").iterdir():
        write_slow_warmup(version_dir)
    running = start_stack(
        module_processes,
        root / "stack",
        str(store),
        agent_settings={"max_models": 2},
        daemon_settings={"max_message_bytes": 256 * 1024 * 1024},
    )
    yield running
    running.stop()


def predict_rest(client: httpx.Client, name: str, x: float) -> httpx.Response:
    return client.post(f"/v1/models/{name}:predict", json={"instances": [x]})


def expected(name: str, x: float) -> float:
    weights = tenant_weights(int(name.rsplit("-", 1)[1]))
    return weights.w * x + weights.b


def node_status(stack: Stack) -> dict[str, Any]:
    import asyncio

    async def read() -> dict[str, Any]:
        result = {}
        for node in stack.nodes:
            async with AgentClient(f"127.0.0.1:{node.agent_port}") as client:
                result[node.id] = await client.status()
        return result

    return asyncio.run(read())


def test_more_models_than_capacity_cycle_with_lru_and_no_failed_request(stack: Stack) -> None:
    failures = []
    with httpx.Client(base_url=stack.rest_url, timeout=120) as client:
        for round_number in range(2):
            for name in TENANTS:
                response = predict_rest(client, name, 2.0)
                if response.status_code != 200 or response.json() != {"predictions": [expected(name, 2.0)]}:
                    failures.append((round_number, name, response.status_code, response.text))
    assert failures == []
    statuses = node_status(stack)
    assert sum(s.counters["evictions"] for s in statuses.values()) >= len(TENANTS)
    for status in statuses.values():
        assert len([m for m in status.models if m.state == "resident"]) <= 2


def test_concurrent_cold_requests_load_once(stack: Stack) -> None:
    name = "half_plus_two"
    before = sum(s.counters["loads"] for s in node_status(stack).values())

    def call(_: int) -> tuple[int, Any]:
        with httpx.Client(base_url=stack.rest_url, timeout=120) as client:
            response = client.post(f"/v1/models/{name}:predict", json={"instances": [1.0, 2.0, 3.0]})
            return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(call, range(100)))
    assert results == [(200, {"predictions": [2.5, 3.0, 3.5]})] * 100
    after = node_status(stack)
    assert sum(s.counters["loads"] for s in after.values()) - before == 1
    holders = [
        node for node, s in after.items() if any(m.name == name and m.state == "resident" for m in s.models)
    ]
    assert len(holders) == 1


def test_requests_for_one_model_stick_to_its_node(stack: Stack) -> None:
    name = TENANTS[0]
    with httpx.Client(base_url=stack.rest_url, timeout=120) as client:
        for _ in range(20):
            assert predict_rest(client, name, 1.0).status_code == 200

    def served_and_holders() -> tuple[set[str], set[str]]:
        statuses = node_status(stack)
        served = {node for node, s in statuses.items() for m in s.models if m.name == name and m.hits}
        holders = {
            node
            for node, s in statuses.items()
            if any(m.name == name and m.state == "resident" for m in s.models)
        }
        return served, holders

    # fast-path hits reach the agents with the daemon's recency feed, about a second later
    wait_until(lambda: served_and_holders()[0] != set(), 15, "the hits to be reported to the agent")
    served, holders = served_and_holders()
    assert len(holders) == 1
    assert served == holders


def test_client_deadline_shorter_than_a_load(stack: Stack) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "slow"
    import tensorflow as tf

    request.inputs["iterations"].CopyFrom(tf.make_tensor_proto(np.int64(10)))
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 5
        # the load went on: a later request finds the model (waiting for the rest of the load at most)
        response = stub.Predict(request, timeout=120)
        assert list(response.outputs["count"].int64_val) == [10]
    statuses = node_status(stack)
    assert sum(m.loads for s in statuses.values() for m in s.models if m.name == "slow") == 1


def test_64_mib_predict_both_ways_over_grpc(stack: Stack) -> None:
    import tensorflow as tf

    x = np.ones((BIG_VALUES, 1), dtype=np.float32)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    assert request.ByteSize() >= 64 * 1024 * 1024
    with grpc.insecure_channel(stack.grpc_target, options=UNLIMITED) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=300)
    assert response.ByteSize() >= 64 * 1024 * 1024
    y = tf.make_ndarray(response.outputs["y"])
    assert y.shape == (BIG_VALUES, 1)
    assert float(y.min()) == float(y.max()) == 2.5


def test_16_mib_predict_both_ways_over_rest(stack: Stack) -> None:
    # "1.0, " is 5 bytes: 3.4 M values make a 16 MiB JSON body, and the answer ("2.5, ") is as large.
    # Not 64 MiB as over gRPC: the bundled backend's Python JSON codec needs about 3 s per million
    # numbers, which would exceed its REST deadline; Envoy's limits are the same for both listeners.
    count = 16 * 1024 * 1024 // 5 + 1
    body = ('{"instances": [' + ", ".join(["1.0"] * count) + "]}").encode()
    assert len(body) >= 16 * 1024 * 1024
    with httpx.Client(base_url=stack.rest_url, timeout=600) as client:
        response = client.post(
            "/v1/models/half_plus_two:predict", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 200, response.text[:500]
    assert len(response.content) >= 16 * 1024 * 1024
    predictions = response.json()["predictions"]
    assert len(predictions) == count
    assert predictions[0] == predictions[-1] == 2.5
