"""Through Envoy with unmodified clients: the smallest end-to-end check that the stack serves."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.harness.processes import ProcessRegistry
from tests.harness.stack import Stack, start_stack
from tfscachectl.modelgen.store import ModelStoreTree

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(
    module_processes: ProcessRegistry,
    generated_models: ModelStoreTree,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("e2e")
    store = root / "store"
    for name in ["tenant-0001", "tenant-0002", "half_plus_two"]:
        shutil.copytree(generated_models.base_path(name), store / name)
    running = start_stack(module_processes, root / "stack", str(store))
    yield running
    running.stop()


def test_rest_predict_through_envoy(stack: Stack) -> None:
    with httpx.Client(base_url=stack.rest_url, timeout=60) as client:
        response = client.post("/v1/models/tenant-0001:predict", json={"instances": [2.0]})
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": [2.25]}
        again = client.post("/v1/models/tenant-0001:predict", json={"instances": [2.0]})
        assert again.json() == {"predictions": [2.25]}
        missing = client.post("/v1/models/nope:predict", json={"instances": [2.0]})
        assert missing.status_code == 404
        assert missing.json() == {"error": "Servable not found for request: Latest(nope)"}


def test_grpc_predict_through_envoy(stack: Stack) -> None:
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tenant-0002"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray([2.0], dtype=np.float32)))
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=60)
        assert list(response.outputs["y"].float_val) == [4.5]
        assert response.model_spec.version.value == 1
        request.model_spec.name = "nope"
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=60)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert caught.value.details() == "Servable not found for request: Latest(nope)"
