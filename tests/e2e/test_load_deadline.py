"""A load longer than the daemon's ensure deadline: 503 / UNAVAILABLE saying so, and the load goes on."""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest

from tests.e2e.test_cache_behaviour import write_slow_warmup
from tests.harness.processes import ProcessRegistry, wait_until
from tests.harness.stack import Stack, start_stack
from tfscachectl.modelgen.store import ModelStoreTree

pytestmark = pytest.mark.e2e
ENSURE_DEADLINE_S = 1.0


@pytest.fixture(scope="module")
def stack(
    module_processes: ProcessRegistry,
    generated_models: ModelStoreTree,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("deadline")
    store = root / "store"
    shutil.copytree(generated_models.base_path("slow"), store / "slow")
    for version_dir in (store / "slow").iterdir():
        write_slow_warmup(version_dir)
    running = start_stack(
        module_processes,
        root / "stack",
        str(store),
        nodes=1,
        daemon_settings={"timeouts": {"ensure": ENSURE_DEADLINE_S, "request": 30}},
    )
    yield running
    running.stop()


def test_a_slow_load_is_a_503_with_retry_after_and_completes(stack: Stack) -> None:
    body = {"inputs": 3}
    with httpx.Client(base_url=stack.rest_url, timeout=60) as client:
        first = client.post("/v1/models/slow:predict", json=body)
        assert first.status_code == 503, first.text
        assert first.headers["retry-after"] == "1"
        assert "still loading" in first.json()["error"]

        def ready() -> bool:
            response = client.post("/v1/models/slow:predict", json=body)
            return response.status_code == 200 and response.json() == {"outputs": 3}

        wait_until(ready, 60, "the slow model's load to complete behind the 503")


def test_grpc_gets_unavailable_while_loading_elsewhere(stack: Stack) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "slow"
    request.inputs["iterations"].CopyFrom(tf.make_tensor_proto(np.int64(5)))
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=60)  # loaded by the REST test: a hit now
        assert list(response.outputs["count"].int64_val) == [5]


def test_daemon_metrics(stack: Stack) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10) as response:
        page = response.read().decode()
    assert 'tfscache_daemon_requests_total{protocol="rest"}' in page
    assert 'tfscache_daemon_request_errors_total{code="UNAVAILABLE",protocol="rest"}' in page
    assert 'tfscache_daemon_xds_acks_total{type="Listener"}' in page
    assert 'tfscache_daemon_agent_connected{node="node-1"} 1.0' in page
    assert "tfscache_daemon_ensure_seconds_bucket" in page
