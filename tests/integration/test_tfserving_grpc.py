"""The bundled backend over real gRPC, with unmodified ``tensorflow_serving.apis`` stubs.

Each test runs on the generated equivalents of TF Serving's test models and, when ``../shared/testdata`` is
there, on TF Serving's own files too: the values are the ones TF Serving returns for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
    session_service_pb2,
)

from tests.conftest import TESTDATA_DIR
from tests.harness.model_config import AllVersions, ModelConfigEntry
from tests.harness.processes import ProcessRegistry
from tests.harness.serving import ServingBackend
from tfscachectl.modelgen.store import ModelStoreTree

pytestmark = pytest.mark.integration

MODELS = ("half_plus_two", "half_plus_two_2_versions", "half_plus_three", "half_plus_two_tf2", "counter")
TESTDATA_NAMES = {
    "half_plus_two": "saved_model_half_plus_two_cpu",
    "half_plus_two_2_versions": "saved_model_half_plus_two_2_versions",
    "half_plus_three": "saved_model_half_plus_three",
    "half_plus_two_tf2": "saved_model_half_plus_two_tf2_cpu",
    "counter": "saved_model_counter",
}
RPC_TIMEOUT_S = 30.0


def base_paths(source: str, generated: ModelStoreTree) -> dict[str, Path]:
    if source == "generated":
        return {name: generated.base_path(name) for name in MODELS}
    if not TESTDATA_DIR.is_dir():
        pytest.skip(f"TF Serving's testdata is not at {TESTDATA_DIR}")
    return {name: TESTDATA_DIR / TESTDATA_NAMES[name] for name in MODELS}


class Clients:
    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        # the pip package ships no SessionService stub: call the method by its name, as a stub would
        self.session_run = self.channel.unary_unary(
            "/tensorflow.serving.SessionService/SessionRun",
            request_serializer=session_service_pb2.SessionRunRequest.SerializeToString,
            response_deserializer=session_service_pb2.SessionRunResponse.FromString,
        )


@pytest.fixture(scope="module", params=["generated", "testdata"])
def backend(
    request: pytest.FixtureRequest,
    module_processes: ProcessRegistry,
    generated_models: ModelStoreTree,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Clients]:
    paths = base_paths(request.param, generated_models)
    entries = [
        ModelConfigEntry(name, path, AllVersions() if name == "half_plus_two_2_versions" else None)
        for name, path in paths.items()
    ]
    server = ServingBackend.with_models(
        module_processes,
        tmp_path_factory.mktemp(f"grpc-{request.param}"),
        entries,
        name=f"serving-{request.param}",
    ).start()
    clients = Clients(server.grpc_target)
    yield clients
    clients.channel.close()
    server.stop()


def tensor(values: Any, dtype: Any = np.float32) -> tensor_pb2.TensorProto:
    import tensorflow as tf

    return tf.make_tensor_proto(np.asarray(values, dtype=dtype))


def predict_request(
    name: str, signature: str = "", version: int | None = None, label: str = "", **inputs: Any
) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(value)
    return request


def examples_input(target: Any, **features: float) -> None:
    """Adds one tf.Example to an ``Input`` (or to the ``examples`` of an ``ExampleListWithContext``)."""
    examples = target.examples if hasattr(target, "context") else target.example_list.examples
    example = examples.add()
    for key, value in features.items():
        example.features.feature[key].float_list.value.append(value)


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# ----- Predict -------------------------------------------------------------------------------------


def test_predict_returns_values_and_the_resolved_model_spec(backend: Clients) -> None:
    response = backend.predict.Predict(
        predict_request("half_plus_two", x=tensor([[1.0], [2.0], [3.0]])), timeout=RPC_TIMEOUT_S
    )
    y = response.outputs["y"]
    assert y.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in y.tensor_shape.dim] == [3, 1]
    assert list(y.float_val) == [2.5, 3.0, 3.5]
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"


def test_predict_by_version_and_latest(backend: Clients) -> None:
    latest = backend.predict.Predict(
        predict_request("half_plus_two_2_versions", x=tensor([[2.0]])), timeout=RPC_TIMEOUT_S
    )
    assert latest.model_spec.version.value == 124
    older = backend.predict.Predict(
        predict_request("half_plus_two_2_versions", version=123, x=tensor([[2.0]])), timeout=RPC_TIMEOUT_S
    )
    assert older.model_spec.version.value == 123
    assert list(older.outputs["y"].float_val) == [3.0]


def test_predict_on_tf2_and_scalar_signatures(backend: Clients) -> None:
    tf2 = backend.predict.Predict(
        predict_request("half_plus_two_tf2", x=tensor([2.0])), timeout=RPC_TIMEOUT_S
    )
    assert list(tf2.outputs["y"].float_val) == [3.0]
    # half_plus_three declares scalar x and y; TF Serving feeds any shape
    three = backend.predict.Predict(predict_request("half_plus_three", x=tensor(2.0)), timeout=RPC_TIMEOUT_S)
    assert list(three.outputs["y"].float_val) == [4.0]
    batch = backend.predict.Predict(
        predict_request("half_plus_three", x=tensor([1.0, 2.0, 3.0])), timeout=RPC_TIMEOUT_S
    )
    assert list(batch.outputs["y"].float_val) == [3.5, 4.0, 4.5]


def test_stateful_counter(backend: Clients) -> None:
    def call(signature: str, **inputs: Any) -> float:
        response = backend.predict.Predict(
            predict_request("counter", signature, **inputs), timeout=RPC_TIMEOUT_S
        )
        return float(response.outputs["output"].float_val[0])

    assert call("reset_counter") == 0.0
    assert [call("get_counter"), call("incr_counter"), call("reset_counter"), call("incr_counter")] == [
        0.0,
        1.0,
        0.0,
        1.0,
    ]
    assert call("incr_counter_by", delta=tensor(3.0)) == 4.0


# ----- Classify, Regress, MultiInference -----------------------------------------------------------


@pytest.mark.parametrize("model", ["half_plus_two", "half_plus_two_tf2"])
def test_regress_and_classify_on_examples(backend: Clients, model: str) -> None:
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = model
    regress.model_spec.signature_name = "regress_x_to_y"
    examples_input(regress.input, x=80.0)
    examples_input(regress.input, x=2.0)
    response = backend.predict.Regress(regress, timeout=RPC_TIMEOUT_S)
    assert [r.value for r in response.result.regressions] == [42.0, 3.0]
    assert response.model_spec.signature_name == "regress_x_to_y"
    assert response.model_spec.version.value == 123

    regress.model_spec.signature_name = "regress_x_to_y2"
    assert [r.value for r in backend.predict.Regress(regress, timeout=RPC_TIMEOUT_S).result.regressions] == [
        43.0,
        4.0,
    ]

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = model
    classify.model_spec.signature_name = "classify_x_to_y"
    examples_input(classify.input, x=2.0)
    result = backend.predict.Classify(classify, timeout=RPC_TIMEOUT_S).result
    assert [[(c.label, c.score) for c in row.classes] for row in result.classifications] == [[("", 3.0)]]


def test_regress_with_context_examples(backend: Clients) -> None:
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_two"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list_with_context.context.features.feature["x"].float_list.value.append(10.0)
    regress.input.example_list_with_context.examples.add()
    examples_input(regress.input.example_list_with_context, x=4.0)
    response = backend.predict.Regress(regress, timeout=RPC_TIMEOUT_S)
    assert [r.value for r in response.result.regressions] == [7.0, 4.0]


def test_multi_inference(backend: Clients) -> None:
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("regress_x_to_y", "tensorflow/serving/regress"),
        ("classify_x_to_y", "tensorflow/serving/classify"),
    ):
        task = request.tasks.add()
        task.model_spec.name = "half_plus_two"
        task.model_spec.signature_name = signature
        task.method_name = method
    examples_input(request.input, x=80.0)
    response = backend.predict.MultiInference(request, timeout=RPC_TIMEOUT_S)
    regression, classification = response.results
    assert regression.model_spec.signature_name == "regress_x_to_y"
    assert [r.value for r in regression.regression_result.regressions] == [42.0]
    assert classification.classification_result.classifications[0].classes[0].score == 42.0


def test_multi_inference_requires_one_model(backend: Clients) -> None:
    request = inference_pb2.MultiInferenceRequest()
    for name in ("half_plus_two", "half_plus_three"):
        task = request.tasks.add()
        task.model_spec.name = name
        task.model_spec.signature_name = "regress_x_to_y"
        task.method_name = "tensorflow/serving/regress"
    examples_input(request.input, x=1.0)
    error = rpc_error(lambda: backend.predict.MultiInference(request, timeout=RPC_TIMEOUT_S))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "same model name" in error.details()


# ----- Metadata and status -------------------------------------------------------------------------


def test_model_metadata_lists_signatures(backend: Clients) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    request.metadata_field.append("signature_def")
    response = backend.predict.GetModelMetadata(request, timeout=RPC_TIMEOUT_S)
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 123
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    expected = {"serving_default", "regress_x_to_y", "regress_x_to_y2", "regress_x2_to_y3", "classify_x_to_y"}
    # the generated model also has the two-version model's classify_x2_to_y3
    assert expected <= set(signatures.signature_def) <= expected | {"classify_x2_to_y3"}
    assert signatures.signature_def["serving_default"].inputs["x"].dtype == types_pb2.DT_FLOAT


def test_model_metadata_field_is_checked(backend: Clients) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    error = rpc_error(lambda: backend.predict.GetModelMetadata(request, timeout=RPC_TIMEOUT_S))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    request.metadata_field.append("graph")
    error = rpc_error(lambda: backend.predict.GetModelMetadata(request, timeout=RPC_TIMEOUT_S))
    assert error.details() == "Metadata field graph is not supported"


def test_model_status(backend: Clients) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two_2_versions"
    response = backend.models.GetModelStatus(request, timeout=RPC_TIMEOUT_S)
    assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] == [
        (124, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0),
        (123, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0),
    ]
    request.model_spec.version.value = 123
    response = backend.models.GetModelStatus(request, timeout=RPC_TIMEOUT_S)
    assert [s.version for s in response.model_version_status] == [123]


# ----- Errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_args", "code", "message"),
    [
        ({"name": "nope"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        (
            {"name": "half_plus_two", "version": 50},
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(half_plus_two, 50)",
        ),
        (
            {"name": "half_plus_two", "label": "canary"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: canary",
        ),
        ({"name": ""}, grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
        (
            {"name": "half_plus_two", "signature": "nope"},
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
        ),
    ],
)
def test_predict_errors(
    backend: Clients, request_args: dict[str, Any], code: grpc.StatusCode, message: str
) -> None:
    request = predict_request(**request_args, x=tensor([[1.0]]))
    error = rpc_error(lambda: backend.predict.Predict(request, timeout=RPC_TIMEOUT_S))
    assert (error.code(), error.details()) == (code, message)


def test_missing_model_spec_and_bad_inputs(backend: Clients) -> None:
    error = rpc_error(lambda: backend.predict.Predict(predict_pb2.PredictRequest(), timeout=RPC_TIMEOUT_S))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    error = rpc_error(
        lambda: backend.predict.Predict(
            predict_request("half_plus_two", z=tensor([1.0])), timeout=RPC_TIMEOUT_S
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = rpc_error(
        lambda: backend.predict.Predict(
            predict_request("half_plus_two", x=tensor(["a"], dtype=object)), timeout=RPC_TIMEOUT_S
        )
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be float but string is provided",
    )


def test_status_errors(backend: Clients) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    error = rpc_error(lambda: backend.models.GetModelStatus(request, timeout=RPC_TIMEOUT_S))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model nope",
    )
    request.model_spec.name = "half_plus_two"
    request.model_spec.version.value = 7
    error = rpc_error(lambda: backend.models.GetModelStatus(request, timeout=RPC_TIMEOUT_S))
    assert error.details() == "Could not find version 7 of model half_plus_two"


def test_session_service_is_not_served(backend: Clients) -> None:
    request = session_service_pb2.SessionRunRequest()
    request.model_spec.name = "half_plus_two"
    error = rpc_error(lambda: backend.session_run(request, timeout=RPC_TIMEOUT_S))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
