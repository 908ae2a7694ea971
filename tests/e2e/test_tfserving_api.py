"""TF Serving's whole API through tfscache, compared with TF Serving itself.

One stack (serving backends, node agents, the daemon, Envoy) per store kind: models in a local directory
and in moto's S3. Beside it, in the same module, a *reference* backend serves the same models directly, as
an operator would run TF Serving without the cache (every version loaded, the labels in its config).
Each request goes to both with unmodified clients (plain HTTP; ``tensorflow_serving.apis`` gRPC stubs) and
the answers must be the same: REST status code, content type and body byte for byte; gRPC status code and
message, or the response field for field. That is what "the cache returns what TF Serving returns" means.

The cache loads versions only when asked for, so where an answer depends on what is loaded (model status
lists the versions a node holds) the versions are asked for first. Where the cache answers otherwise than TF
Serving, the test is marked ``xfail(strict=True)`` with the reason: those are tfscache bugs to fix.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, text_format
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
    session_service_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from tests.harness.model_config import AllVersions, ModelConfigEntry, model_server_config_text
from tests.harness.processes import ProcessRegistry, wait_until
from tests.harness.s3 import MotoServer, S3Bucket, s3_credentials_env, upload_tree
from tests.harness.serving import SERVING_READY_TIMEOUT_S, ServingBackend
from tests.harness.stack import Stack, start_stack
from tfscachectl.errors import Code
from tfscachectl.modelgen.store import ModelStoreTree

pytestmark = pytest.mark.e2e

TWO_VERSIONS = "half_plus_two_2_versions"
# Copies of the two-version model (with the same labels), each used by one test only: the test needs the
# model cold, and asks for its versions in its own order.
LATEST_AFTER_VERSION = "two_versions_latest_after_version"
LABEL_AFTER_VERSION = "two_versions_label_after_version"
LABELLED_MODELS = (TWO_VERSIONS, LATEST_AFTER_VERSION, LABEL_AFTER_VERSION)
# The reference serves these from its start; "broken" cannot be in an initial config (start-up would fail).
SERVED_MODELS = ("half_plus_two", "half_plus_three", "half_plus_two_tf2", "counter", *LABELLED_MODELS)
BROKEN = "broken"
LABELS = {"stable": 123, "canary": 124}
STORE_PREFIX = "models"
# Enough room for every version of the store on one node: no eviction interferes here.
AGENT_SETTINGS: dict[str, Any] = {"max_models": 12}
# A first request waits for a fetch and a load; later ones are quick.
HTTP_TIMEOUT_S = 60.0
RPC_TIMEOUT_S = 60.0
RELOAD_TIMEOUT_S = 60.0
REFERENCE_FLAGS = (
    # Labels in the initial config name versions that are not loaded yet.
    "--allow_version_labels_for_unavailable_models=true",
    # A failed load is final at once (the stack's backends run with the same flag).
    "--max_num_load_retries=0",
)
# libevent's page for paths outside /v1/.
HTML_NOT_FOUND = "<HTML><HEAD>"
PREDICT_BODY = '{"instances": [1.0]}'
EXAMPLES_BODY = '{"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]}'


# ----- the two sides ----------------------------------------------------------------------------------


@dataclass
class Side:
    """One endpoint that speaks TF Serving's API (the cache through Envoy, or the reference backend)."""

    rest: httpx.Client
    channel: grpc.Channel

    @property
    def predictions(self) -> prediction_service_pb2_grpc.PredictionServiceStub:
        return prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    @property
    def models(self) -> model_service_pb2_grpc.ModelServiceStub:
        return model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self) -> None:
        self.rest.close()
        self.channel.close()


@dataclass
class Deployment:
    """A running stack over one store kind, and the reference backend serving the same models."""

    stack: Stack
    cache: Side
    reference: Side


def side(rest_url: str, grpc_target: str) -> Side:
    # trust_env=False: no proxy from the environment between the test and a loopback port.
    return Side(
        httpx.Client(base_url=rest_url, timeout=HTTP_TIMEOUT_S, trust_env=False),
        grpc.insecure_channel(grpc_target),
    )


# ----- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store_tree(generated_models: ModelStoreTree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store's files: the catalog models and ``labels.json`` for the two-version model."""
    root = tmp_path_factory.mktemp("api-store") / STORE_PREFIX
    for name in ("half_plus_two", "half_plus_three", "half_plus_two_tf2", "counter", BROKEN):
        shutil.copytree(generated_models.base_path(name), root / name)
    for name in LABELLED_MODELS:
        shutil.copytree(generated_models.base_path(TWO_VERSIONS), root / name)
        (root / name / "labels.json").write_text(json.dumps(LABELS))
    return root


def reference_entries(root: Path) -> list[ModelConfigEntry]:
    return [
        ModelConfigEntry(name, root / name, AllVersions(), LABELS)
        if name in LABELLED_MODELS
        else ModelConfigEntry(name, root / name)
        for name in SERVED_MODELS
    ]


@pytest.fixture(scope="module")
def reference_backend(
    module_processes: ProcessRegistry, store_tree: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServingBackend]:
    """TF Serving without the cache, serving the store's models; started here, waited for by its user
    (so it starts while the first stack starts)."""
    backend = ServingBackend.with_models(
        module_processes,
        tmp_path_factory.mktemp("api-reference"),
        reference_entries(store_tree),
        extra_flags=list(REFERENCE_FLAGS),
        name="reference",
    )
    backend.process.start()
    yield backend
    backend.stop()


@pytest.fixture(scope="module", params=["local", "s3"])
def deployment(
    request: pytest.FixtureRequest,
    module_processes: ProcessRegistry,
    reference_backend: ServingBackend,
    store_tree: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    kind: str = request.param
    work = tmp_path_factory.mktemp(f"api-{kind}")
    if kind == "local":
        store = str(store_tree)
        env: dict[str, str] = {}
        agent_settings = dict(AGENT_SETTINGS)
    else:
        s3: MotoServer = request.getfixturevalue("s3_server")
        bucket = S3Bucket.create(s3.endpoint_url, prefix="api")
        upload_tree(bucket.client, bucket.name, STORE_PREFIX, store_tree)
        store = bucket.url(STORE_PREFIX)
        env = s3_credentials_env(s3.endpoint_url)
        agent_settings = {
            **AGENT_SETTINGS,
            "s3": {"endpoint_url": s3.endpoint_url, "addressing_style": "path"},
        }
    stack = start_stack(module_processes, work, store, agent_settings=agent_settings, env=env)
    wait_until(
        reference_backend.answers,
        SERVING_READY_TIMEOUT_S,
        "the reference backend",
        process=reference_backend.process,
    )
    cache = side(stack.rest_url, stack.grpc_target)
    reference = side(reference_backend.rest_url, reference_backend.grpc_target)
    warm_by_labels(cache)
    yield Deployment(stack, cache, reference)
    cache.close()
    reference.close()
    stack.stop()


# ----- comparing REST answers -------------------------------------------------------------------------


@dataclass(frozen=True)
class RestAnswer:
    status: int
    content_type: str | None
    body: str


def rest_answer(client: httpx.Client, method: str, path: str, body: str | bytes | None) -> RestAnswer:
    response = client.request(method, path, content=body)
    return RestAnswer(response.status_code, response.headers.get("content-type"), response.text)


def same_rest(d: Deployment, method: str, path: str, body: str | bytes | None = None) -> RestAnswer:
    """Ask both sides; the cache must answer exactly what the reference answers."""
    expected = rest_answer(d.reference.rest, method, path, body)
    got = rest_answer(d.cache.rest, method, path, body)
    assert got == expected, f"{method} {path}: the cache answered {got}, TF Serving {expected}"
    return got


def post(d: Deployment, path: str, body: str | bytes) -> RestAnswer:
    return same_rest(d, "POST", path, body)


def get(d: Deployment, path: str) -> RestAnswer:
    return same_rest(d, "GET", path)


def error_body(message: str) -> str:
    """TF Serving's REST error body (rapidjson's PrettyWriter)."""
    return '{\n    "error": ' + json.dumps(message, ensure_ascii=False) + "\n}"


def example_b64(**features: float) -> str:
    example = example_pb2.Example()
    for key, value in features.items():
        example.features.feature[key].float_list.value.append(value)
    return base64.b64encode(example.SerializeToString()).decode()


# ----- comparing gRPC answers -------------------------------------------------------------------------


@dataclass(frozen=True)
class GrpcAnswer:
    """A response as a dict (Any values unpacked: field for field, whatever the map order on the wire),
    or the status code and message of an error."""

    code: grpc.StatusCode
    details: str | None
    response: dict[str, Any] | None


def grpc_answer(call: Callable[[], Any]) -> GrpcAnswer:
    try:
        response = call()
    except grpc.RpcError as exc:
        return GrpcAnswer(exc.code(), exc.details(), None)
    as_dict = json_format.MessageToDict(response, preserving_proto_field_name=True)
    return GrpcAnswer(grpc.StatusCode.OK, None, as_dict)


def stub_method(s: Side, method: str) -> Callable[..., Any]:
    stub: Any = s.models if method in ("GetModelStatus", "HandleReloadConfigRequest") else s.predictions
    return getattr(stub, method)


def same_grpc(d: Deployment, method: str, request: Any) -> GrpcAnswer:
    """Call ``method`` on both sides; the cache must answer exactly what the reference answers."""
    expected = grpc_answer(lambda: stub_method(d.reference, method)(request, timeout=RPC_TIMEOUT_S))
    got = grpc_answer(lambda: stub_method(d.cache, method)(request, timeout=RPC_TIMEOUT_S))
    what = text_format.MessageToString(request, as_one_line=True)[:300]
    assert got == expected, f"{method} {what}: the cache answered {got}, TF Serving {expected}"
    return got


def float_tensor(values: list[float], shape: list[int]) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in shape]
        ),
        float_val=values,
    )


def spec(
    target: Any, name: str, signature: str = "", version: int | None = None, label: str | None = None
) -> Any:
    target.name = name
    target.signature_name = signature
    if version is not None:
        target.version.value = version
    if label is not None:
        target.version_label = label
    return target


def predict_request(
    name: str,
    signature: str = "",
    version: int | None = None,
    label: str | None = None,
    **inputs: tensor_pb2.TensorProto,
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    spec(request.model_spec, name, signature, version, label)
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(value)
    return request


def add_example(examples: Any, **features: float) -> None:
    example = examples.add()
    for key, value in features.items():
        example.features.feature[key].float_list.value.append(value)


def regression_request(
    name: str, signature: str, *xs: float, version: int | None = None, label: str | None = None
) -> regression_pb2.RegressionRequest:
    request = regression_pb2.RegressionRequest()
    spec(request.model_spec, name, signature, version, label)
    for x in xs:
        add_example(request.input.example_list.examples, x=x)
    return request


def classification_request(
    name: str, signature: str, *xs: float, version: int | None = None, label: str | None = None
) -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    spec(request.model_spec, name, signature, version, label)
    for x in xs:
        add_example(request.input.example_list.examples, x=x)
    return request


def status_request(
    name: str, version: int | None = None, label: str | None = None
) -> get_model_status_pb2.GetModelStatusRequest:
    request = get_model_status_pb2.GetModelStatusRequest()
    spec(request.model_spec, name, "", version, label)
    return request


def metadata_request(
    name: str,
    version: int | None = None,
    label: str | None = None,
    fields: tuple[str, ...] = ("signature_def",),
) -> get_model_metadata_pb2.GetModelMetadataRequest:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    spec(request.model_spec, name, "", version, label)
    request.metadata_field.extend(fields)
    return request


def warm_by_labels(cache: Side) -> None:
    """Load both versions of the two-version model in the cache, by label.

    Its node then holds both, as the reference does (status lists the versions a server holds), and TF
    Serving there knows both labels. Asking by label first matters: a label is handed to TF Serving only
    when a request by label loads a version (``test_label_after_its_version_was_loaded_by_number``).
    """
    for label in LABELS:
        response = cache.rest.post(f"/v1/models/{TWO_VERSIONS}/labels/{label}:predict", content=PREDICT_BODY)
        assert response.status_code == 200, response.text


# ----- REST: predict, classify, regress ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/models/half_plus_two:predict", '{"instances": [1.0, 2.0, 5.0]}'),
        ("/v1/models/half_plus_two:predict", '{"inputs": {"x": [1.0, 2.0]}}'),
        ("/v1/models/half_plus_two:predict", '{"inputs": [[1], [3]]}'),
        ("/v1/models/half_plus_two:predict", '{"instances": [{"x": [1.0]}, {"x": [3.0]}]}'),
        ("/v1/models/half_plus_two:predict", '{"instances": [1e10, 0.1, -7, 3.0e-9]}'),
        ("/v1/models/half_plus_two/versions/123:predict", '{"instances": [2.0]}'),
        (f"/v1/models/{TWO_VERSIONS}:predict", '{"instances": [2.0]}'),
        (f"/v1/models/{TWO_VERSIONS}/versions/123:predict", '{"instances": [2.0]}'),
        (f"/v1/models/{TWO_VERSIONS}/versions/124:predict", '{"instances": [2.0]}'),
        (f"/v1/models/{TWO_VERSIONS}/versions/00000123:predict", '{"instances": [2.0]}'),
        (f"/v1/models/{TWO_VERSIONS}/labels/stable:predict", '{"instances": [2.0]}'),
        (f"/v1/models/{TWO_VERSIONS}/labels/canary:predict", '{"instances": [2.0]}'),
        # TF Serving's URL pattern is case-insensitive, and the model name is percent-decoded.
        (f"/V1/MODELS/{TWO_VERSIONS}/VERSIONS/123:predict", '{"instances": [2.0]}'),
        ("/v1/models/half%5Fplus%5Ftwo%5F2%5Fversions/labels/stable:predict", '{"instances": [2.0]}'),
        ("/v1/models/half_plus_two_tf2:predict", '{"instances": [2.0]}'),
        ("/v1/models/half_plus_three:predict", '{"inputs": {"x": 2.0}}'),
        ("/v1/models/half_plus_three:predict", '{"instances": [1.0, 2.0, 3.0]}'),
    ],
)
def test_rest_predict(deployment: Deployment, path: str, body: str) -> None:
    assert post(deployment, path, body).status == 200


@pytest.mark.parametrize("model", ["half_plus_two", "half_plus_two_tf2"])
def test_rest_predict_on_serialized_examples(deployment: Deployment, model: str) -> None:
    body = {"signature_name": "regress_x_to_y", "instances": [{"b64": example_b64(x=80.0)}]}
    assert post(deployment, f"/v1/models/{model}:predict", json.dumps(body)).status == 200
    body = {
        "signature_name": "regress_x_to_y2",
        "inputs": [{"b64": example_b64(x=2.0)}, {"b64": example_b64(x=80.0)}],
    }
    assert post(deployment, f"/v1/models/{model}:predict", json.dumps(body)).status == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/models/half_plus_two:regress",
            '{"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}',
        ),
        (
            "/v1/models/half_plus_two:regress",
            '{"signature_name": "regress_x_to_y2", "examples": [{"x": [1.0]}]}',
        ),
        (
            "/v1/models/half_plus_two_tf2:regress",
            '{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}',
        ),
        (
            "/v1/models/half_plus_two:regress",
            '{"signature_name": "regress_x_to_y", "context": {"x": 10.0}, "examples": [{}, {"x": 4.0}]}',
        ),
        (
            "/v1/models/half_plus_two:classify",
            '{"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}, {"x": 2.0}]}',
        ),
        (
            "/v1/models/half_plus_two_tf2:classify",
            '{"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}',
        ),
        (
            f"/v1/models/{TWO_VERSIONS}/versions/124:regress",
            '{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}',
        ),
        (
            f"/v1/models/{TWO_VERSIONS}/labels/stable:regress",
            '{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}',
        ),
        (
            f"/v1/models/{TWO_VERSIONS}/labels/canary:classify",
            '{"signature_name": "classify_x_to_y", "examples": [{"x": 4.0}]}',
        ),
        # half_plus_three's regression signature has the old name.
        (
            "/v1/models/half_plus_three:regress",
            '{"signature_name": "tensorflow/serving/regress", "examples": [{"x": 2.0}]}',
        ),
    ],
)
def test_rest_classify_and_regress(deployment: Deployment, path: str, body: str) -> None:
    assert post(deployment, path, body).status == 200


COUNTER_PREDICT = "/v1/models/counter:predict"


def incr_counter_by(delta: float) -> str:
    return json.dumps({"signature_name": "incr_counter_by", "inputs": {"delta": delta}})


def test_rest_stateful_counter(deployment: Deployment) -> None:
    """The counter model keeps state in its session: the same calls give the same values on both sides."""
    # bring both counters to 0: read each one (add 0) and subtract it
    for s in (deployment.cache, deployment.reference):
        current = s.rest.post(COUNTER_PREDICT, content=incr_counter_by(0.0)).json()["outputs"]
        assert s.rest.post(COUNTER_PREDICT, content=incr_counter_by(-current)).json() == {"outputs": 0.0}
    for delta in (1.0, 1.0, 3.0, -5.0):
        assert post(deployment, COUNTER_PREDICT, incr_counter_by(delta)).status == 200
    # a signature without inputs cannot be called over REST
    body = '{"signature_name": "get_counter", "instances": [1]}'
    assert post(deployment, COUNTER_PREDICT, body).status == 400


# ----- REST: status and metadata ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/half_plus_two",
        f"/v1/models/{TWO_VERSIONS}",
        f"/v1/models/{TWO_VERSIONS}/versions/0123",
        f"/v1/models/{TWO_VERSIONS}/versions/124",
        # the status API ignores a label: every version is listed
        f"/v1/models/{TWO_VERSIONS}/labels/stable",
    ],
)
def test_rest_model_status(deployment: Deployment, path: str) -> None:
    assert get(deployment, path).status == 200


def test_rest_model_status_ignores_an_unknown_label(deployment: Deployment) -> None:
    assert get(deployment, f"/v1/models/{TWO_VERSIONS}/labels/anything").status == 200


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/models/half_plus_two/metadata", 200),
        (f"/v1/models/{TWO_VERSIONS}/metadata", 200),
        (f"/v1/models/{TWO_VERSIONS}/versions/123/metadata", 200),
        (f"/v1/models/{TWO_VERSIONS}/labels/stable/metadata", 200),
        (f"/v1/models/{TWO_VERSIONS}/labels/canary/metadata", 200),
        ("/v1/models/half_plus_three/metadata", 200),
        ("/v1/models/half_plus_two_tf2/metadata", 200),
        ("/v1/models/counter/metadata", 200),
        (f"/v1/models/{TWO_VERSIONS}/labels/nope/metadata", 400),
        ("/v1/models/half_plus_two/versions/7/metadata", 404),
        ("/v1/models/nope/metadata", 404),
    ],
)
def test_rest_model_metadata(deployment: Deployment, path: str, status: int) -> None:
    assert get(deployment, path).status == status


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/v1/models/nope", id="unknown-model"),
        pytest.param("/v1/models/half_plus_two/versions/7", id="unknown-version"),
    ],
)
def test_rest_model_status_not_found(deployment: Deployment, path: str) -> None:
    assert get(deployment, path).status == 404


# ----- REST: errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/models/foo:predict", PREDICT_BODY),
        ("/v1/models/foo:classify", EXAMPLES_BODY),
        ("/v1/models/foo:regress", EXAMPLES_BODY),
        ("/v1/models/half_plus_two/versions/50:predict", PREDICT_BODY),
        ("/v1/models/half_plus_two/versions/9223372036854775807:regress", EXAMPLES_BODY),
        ("/v1/models/half_plus_two/labels/stable:predict", PREDICT_BODY),
        (f"/v1/models/{TWO_VERSIONS}/labels/Version_Nonexistent:regress", EXAMPLES_BODY),
        # an unknown label wins over a bad value
        (f"/v1/models/{TWO_VERSIONS}/labels/nope:predict", '{"instances": ["x"]}'),
        # the model is known: the body's errors come from the backend
        ("/v1/models/half_plus_two:predict", b""),
        ("/v1/models/half_plus_two:predict", '{"instances": [1.0, 2.0}'),
        ("/v1/models/half_plus_two:classify", '{"examples": [{"x": 1.0}], }'),
        ("/v1/models/half_plus_two:predict", '{"instances": [1.0], "inputs": [1.0]}'),
        ("/v1/models/half_plus_two:predict", '{"instances": ["x"]}'),
        ("/v1/models/half_plus_two:predict", '{"signature_name": "nope", "instances": [1.0]}'),
        ("/v1/models/half_plus_two:classify", '{"signature_name": "nope", "examples": [{"x": 1.0}]}'),
        (
            "/v1/models/half_plus_two:regress",
            '{"signature_name": "regress_x_to_y2", "examples": [{"x": [1]}]}',
        ),
    ],
)
def test_rest_errors(deployment: Deployment, path: str, body: str | bytes) -> None:
    assert post(deployment, path, body).status in (400, 404)


def test_rest_unknown_model_messages(deployment: Deployment) -> None:
    """TF Serving's own words and codes, as the issue lists them."""
    assert post(deployment, "/v1/models/foo:predict", PREDICT_BODY) == RestAnswer(
        404, "application/json", error_body("Servable not found for request: Latest(foo)")
    )
    assert post(deployment, "/v1/models/half_plus_two/versions/50:predict", PREDICT_BODY) == RestAnswer(
        404, "application/json", error_body("Servable not found for request: Specific(half_plus_two, 50)")
    )
    assert post(deployment, f"/v1/models/{TWO_VERSIONS}/labels/nope:predict", PREDICT_BODY) == RestAnswer(
        400, "application/json", error_body("Unrecognized servable version label: nope")
    )


@pytest.mark.parametrize("path", ["/v1/models/foo:predict", "/v1/models/foo:regress"])
def test_rest_bad_body_beats_unknown_model(deployment: Deployment, path: str) -> None:
    assert post(deployment, path, b"").status == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/models/half_plus_two/versions/123/labels/stable:predict"),
        ("POST", "/v1/models/half_plus_two:PREDICT"),
        ("POST", "/v1/models/half_plus_two:infer"),
        ("POST", "/v1/models/half_plus_two"),
        ("GET", "/v1/models/half_plus_two:predict"),
        ("GET", "/v1/models/half_plus_two/versions/latest"),
        ("PUT", "/v1/models/half_plus_two:predict"),
        ("DELETE", "/v1/models/half_plus_two"),
        ("PATCH", "/v1/models/half_plus_two/metadata"),
        ("GET", "/v1/models"),
    ],
)
def test_rest_malformed_requests(deployment: Deployment, method: str, path: str) -> None:
    assert same_rest(deployment, method, path, PREDICT_BODY).status == 400


VERSION_OVERFLOWS = [
    ("POST", "/v1/models/half_plus_two/versions/9223372036854775808:predict"),
    ("POST", "/v1/models/half_plus_two/versions/99999999999999999999999:classify"),
    ("GET", "/v1/models/half_plus_two/versions/18446744073709551616"),
    ("GET", "/v1/models/half_plus_two/versions/18446744073709551616/metadata"),
]


@pytest.mark.parametrize(("method", "path"), VERSION_OVERFLOWS)
def test_rest_version_overflow(deployment: Deployment, method: str, path: str) -> None:
    """TF Serving answers 400 with an empty body: the status code and the body are the same."""
    expected = rest_answer(deployment.reference.rest, method, path, PREDICT_BODY)
    got = rest_answer(deployment.cache.rest, method, path, PREDICT_BODY)
    assert (got.status, got.body) == (expected.status, expected.body) == (400, "")


@pytest.mark.parametrize(("method", "path"), VERSION_OVERFLOWS[:1])
def test_rest_version_overflow_content_type(deployment: Deployment, method: str, path: str) -> None:
    same_rest(deployment, method, path, PREDICT_BODY)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/v1"),
        ("GET", "/v2/models/half_plus_two"),
        ("POST", "/v2/models/half_plus_two:predict"),
        ("POST", "/models/half_plus_two:predict"),
    ],
)
def test_rest_paths_outside_the_api(deployment: Deployment, method: str, path: str) -> None:
    answer = same_rest(deployment, method, path, PREDICT_BODY)
    assert (answer.status, answer.body[: len(HTML_NOT_FOUND)]) == (404, HTML_NOT_FOUND)


def test_rest_head(deployment: Deployment) -> None:
    answer = same_rest(deployment, "HEAD", "/v1/models/half_plus_two")
    assert (answer.status, answer.body) == (400, "")


# ----- gRPC: PredictionService ------------------------------------------------------------------------

OK = grpc.StatusCode.OK


def case_id(value: Any) -> str:
    """A readable test id for a request (its model spec) or an expected status code."""
    if isinstance(value, grpc.StatusCode):
        return value.name
    model_spec = getattr(value, "model_spec", None)
    if model_spec is None:
        return type(value).__name__
    text = model_spec.name or "<no name>"
    if model_spec.HasField("version"):
        text += f"@{model_spec.version.value}"
    if model_spec.HasField("version_label"):
        text += f"#{model_spec.version_label}"
    if model_spec.signature_name:
        text += f"/{model_spec.signature_name}"
    fields = getattr(value, "metadata_field", None)
    if fields is not None:
        text += f"[{','.join(fields)}]"
    return text


def serialized_examples(**features: float) -> tensor_pb2.TensorProto:
    """A string tensor with one serialized tf.Example, as the regression signatures take."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]),
        string_val=[base64.b64decode(example_b64(**features))],
    )


@pytest.mark.parametrize(
    "request_message",
    [
        predict_request("half_plus_two", x=float_tensor([1.0, 2.0, 3.0], [3, 1])),
        predict_request("half_plus_two", version=123, x=float_tensor([1.0], [1, 1])),
        predict_request(TWO_VERSIONS, x=float_tensor([2.0], [1, 1])),
        predict_request(TWO_VERSIONS, version=123, x=float_tensor([2.0], [1, 1])),
        predict_request(TWO_VERSIONS, version=124, x=float_tensor([2.0], [1, 1])),
        predict_request(TWO_VERSIONS, label="stable", x=float_tensor([2.0], [1, 1])),
        predict_request(TWO_VERSIONS, label="canary", x=float_tensor([2.0], [1, 1])),
        predict_request("half_plus_two_tf2", x=float_tensor([2.0], [1])),
        predict_request("half_plus_three", x=float_tensor([2.0], [])),
        predict_request("half_plus_three", x=float_tensor([1.0, 2.0, 3.0], [3])),
        predict_request("half_plus_two", "regress_x_to_y", inputs=serialized_examples(x=80.0)),
    ],
    ids=case_id,
)
def test_grpc_predict(deployment: Deployment, request_message: predict_pb2.PredictRequest) -> None:
    assert same_grpc(deployment, "Predict", request_message).code == OK


def test_grpc_stateful_counter(deployment: Deployment) -> None:
    """The counter model keeps state in its session: the same calls give the same values on both sides."""
    for s in (deployment.cache, deployment.reference):
        s.predictions.Predict(predict_request("counter", "reset_counter"), timeout=RPC_TIMEOUT_S)
    for signature, inputs in (
        ("get_counter", {}),
        ("incr_counter", {}),
        ("incr_counter", {}),
        ("incr_counter_by", {"delta": float_tensor([3.0], [])}),
        ("reset_counter", {}),
        ("get_counter", {}),
    ):
        assert same_grpc(deployment, "Predict", predict_request("counter", signature, **inputs)).code == OK


@pytest.mark.parametrize(
    ("request_message", "code"),
    [
        (regression_request("half_plus_two", "regress_x_to_y", 80.0, 2.0), OK),
        (regression_request("half_plus_two", "regress_x_to_y2", 80.0, 2.0), OK),
        (regression_request("half_plus_two_tf2", "regress_x_to_y", 80.0), OK),
        (regression_request(TWO_VERSIONS, "regress_x_to_y", 2.0, version=123), OK),
        (regression_request(TWO_VERSIONS, "regress_x_to_y", 2.0, label="canary"), OK),
        (regression_request("half_plus_three", "tensorflow/serving/regress", 2.0), OK),
        (regression_request("half_plus_two", "nope", 2.0), grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=case_id,
)
def test_grpc_regress(
    deployment: Deployment, request_message: regression_pb2.RegressionRequest, code: grpc.StatusCode
) -> None:
    assert same_grpc(deployment, "Regress", request_message).code == code


def test_grpc_regress_with_context(deployment: Deployment) -> None:
    request = regression_pb2.RegressionRequest()
    spec(request.model_spec, "half_plus_two", "regress_x_to_y")
    request.input.example_list_with_context.context.features.feature["x"].float_list.value.append(10.0)
    request.input.example_list_with_context.examples.add()
    add_example(request.input.example_list_with_context.examples, x=4.0)
    assert same_grpc(deployment, "Regress", request).code == OK


@pytest.mark.parametrize(
    ("request_message", "code"),
    [
        (classification_request("half_plus_two", "classify_x_to_y", 2.0, 20.0), OK),
        (classification_request("half_plus_two_tf2", "classify_x_to_y", 2.0), OK),
        (classification_request(TWO_VERSIONS, "classify_x_to_y", 4.0, label="stable"), OK),
        (classification_request(TWO_VERSIONS, "classify_x_to_y", 4.0, version=124), OK),
        (classification_request("half_plus_two", "nope", 2.0), grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=case_id,
)
def test_grpc_classify(
    deployment: Deployment, request_message: classification_pb2.ClassificationRequest, code: grpc.StatusCode
) -> None:
    assert same_grpc(deployment, "Classify", request_message).code == code


def multi_inference_request(*tasks: tuple[str, str, str]) -> inference_pb2.MultiInferenceRequest:
    request = inference_pb2.MultiInferenceRequest()
    for name, signature, method in tasks:
        task = request.tasks.add()
        spec(task.model_spec, name, signature)
        task.method_name = method
    add_example(request.input.example_list.examples, x=80.0)
    add_example(request.input.example_list.examples, x=2.0)
    return request


REGRESS_METHOD = "tensorflow/serving/regress"
CLASSIFY_METHOD = "tensorflow/serving/classify"


@pytest.mark.parametrize(
    ("tasks", "code"),
    [
        pytest.param(
            [
                ("half_plus_two", "regress_x_to_y", REGRESS_METHOD),
                ("half_plus_two", "classify_x_to_y", CLASSIFY_METHOD),
            ],
            OK,
            id="regress-and-classify",
        ),
        pytest.param([("half_plus_two_tf2", "regress_x_to_y2", REGRESS_METHOD)], OK, id="tf2"),
        pytest.param(
            [
                ("half_plus_two", "regress_x_to_y", REGRESS_METHOD),
                ("half_plus_three", "regress_x_to_y", REGRESS_METHOD),
            ],
            grpc.StatusCode.INVALID_ARGUMENT,
            id="two-models",
        ),
        pytest.param([], grpc.StatusCode.INVALID_ARGUMENT, id="no-task"),
    ],
)
def test_grpc_multi_inference(
    deployment: Deployment, tasks: list[tuple[str, str, str]], code: grpc.StatusCode
) -> None:
    assert same_grpc(deployment, "MultiInference", multi_inference_request(*tasks)).code == code


@pytest.mark.parametrize(
    ("request_message", "code"),
    [
        (metadata_request("half_plus_two"), OK),
        (metadata_request(TWO_VERSIONS), OK),
        (metadata_request(TWO_VERSIONS, version=123), OK),
        (metadata_request(TWO_VERSIONS, label="stable"), OK),
        (metadata_request(TWO_VERSIONS, label="canary"), OK),
        (metadata_request("half_plus_three"), OK),
        (metadata_request("half_plus_two_tf2"), OK),
        (metadata_request("counter"), OK),
        (metadata_request("half_plus_two", fields=()), grpc.StatusCode.INVALID_ARGUMENT),
        (metadata_request("half_plus_two", fields=("graph",)), grpc.StatusCode.INVALID_ARGUMENT),
        (metadata_request(TWO_VERSIONS, label="nope"), grpc.StatusCode.INVALID_ARGUMENT),
        (metadata_request("half_plus_two", version=7), grpc.StatusCode.NOT_FOUND),
        (metadata_request("nope"), grpc.StatusCode.NOT_FOUND),
    ],
    ids=case_id,
)
def test_grpc_model_metadata(
    deployment: Deployment,
    request_message: get_model_metadata_pb2.GetModelMetadataRequest,
    code: grpc.StatusCode,
) -> None:
    assert same_grpc(deployment, "GetModelMetadata", request_message).code == code


# ----- gRPC: ModelService -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_message", "code"),
    [
        (status_request("half_plus_two"), OK),
        (status_request(TWO_VERSIONS), OK),
        (status_request(TWO_VERSIONS, version=123), OK),
        # GetModelStatus ignores a label: every version is listed
        (status_request(TWO_VERSIONS, label="canary"), OK),
        (get_model_status_pb2.GetModelStatusRequest(), grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=case_id,
)
def test_grpc_model_status(
    deployment: Deployment, request_message: get_model_status_pb2.GetModelStatusRequest, code: grpc.StatusCode
) -> None:
    assert same_grpc(deployment, "GetModelStatus", request_message).code == code


@pytest.mark.parametrize(
    "request_message", [status_request("nope"), status_request("half_plus_two", version=7)], ids=case_id
)
def test_grpc_model_status_not_found(
    deployment: Deployment, request_message: get_model_status_pb2.GetModelStatusRequest
) -> None:
    same_grpc(deployment, "GetModelStatus", request_message)


def test_reload_config_through_the_cache_is_refused(deployment: Deployment) -> None:
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.SetInParent()  # an empty list would unload every model of a node
    request = model_management_pb2.ReloadConfigRequest(config=config)
    answer = grpc_answer(
        lambda: deployment.cache.models.HandleReloadConfigRequest(request, timeout=RPC_TIMEOUT_S)
    )
    assert answer.code == grpc.StatusCode.PERMISSION_DENIED
    # nothing was unloaded: the cache still serves as TF Serving does
    same_grpc(deployment, "Predict", predict_request("half_plus_two", x=float_tensor([1.0], [1, 1])))


def test_session_service_is_not_served(deployment: Deployment) -> None:
    request = session_service_pb2.SessionRunRequest()
    request.model_spec.name = "half_plus_two"
    codes = []
    for s in (deployment.reference, deployment.cache):
        session_run = s.channel.unary_unary(
            "/tensorflow.serving.SessionService/SessionRun",
            request_serializer=session_service_pb2.SessionRunRequest.SerializeToString,
            response_deserializer=session_service_pb2.SessionRunResponse.FromString,
        )
        codes.append(
            grpc_answer(lambda session_run=session_run: session_run(request, timeout=RPC_TIMEOUT_S)).code
        )
    assert codes == [grpc.StatusCode.UNIMPLEMENTED] * 2


# ----- gRPC: errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_args",
    [
        {"name": "nope"},
        {"name": "half_plus_two", "version": 50},
        {"name": "half_plus_two", "label": "canary"},
        {"name": TWO_VERSIONS, "label": "nope"},
        {"name": TWO_VERSIONS, "label": ""},
        {"name": "half_plus_two", "version": 0},
        {"name": "", "version": 3},
        {"name": "half_plus_two", "signature": "nope"},
    ],
    ids=lambda args: "-".join(f"{k}={v!r}" for k, v in args.items()),
)
def test_grpc_predict_errors(deployment: Deployment, request_args: dict[str, Any]) -> None:
    request = predict_request(**request_args, x=float_tensor([1.0], [1, 1]))
    assert same_grpc(deployment, "Predict", request).code != grpc.StatusCode.OK


def test_grpc_missing_model_spec_and_bad_inputs(deployment: Deployment) -> None:
    assert same_grpc(deployment, "Predict", predict_pb2.PredictRequest()).details == "Missing ModelSpec"
    assert same_grpc(
        deployment, "Predict", predict_request("half_plus_two", z=float_tensor([1.0], [1]))
    ).code == (grpc.StatusCode.INVALID_ARGUMENT)
    text = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]),
        string_val=[b"a"],
    )
    assert same_grpc(deployment, "Predict", predict_request("half_plus_two", x=text)).code == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert same_grpc(deployment, "Regress", regression_pb2.RegressionRequest()).details == "Missing ModelSpec"
    assert same_grpc(deployment, "Classify", classification_pb2.ClassificationRequest()).details == (
        "Missing ModelSpec"
    )


def test_grpc_empty_model_spec(deployment: Deployment) -> None:
    same_grpc(deployment, "Predict", predict_request("", x=float_tensor([1.0], [1, 1])))


def test_grpc_model_spec_with_only_a_signature_name(deployment: Deployment) -> None:
    same_grpc(deployment, "Predict", predict_request("", "serving_default", x=float_tensor([1.0], [1, 1])))


def test_grpc_unknown_model_messages(deployment: Deployment) -> None:
    """TF Serving's own words and codes, as the issue lists them."""
    x = float_tensor([1.0], [1, 1])
    assert same_grpc(deployment, "Predict", predict_request("nope", x=x)) == GrpcAnswer(
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)", None
    )
    assert same_grpc(deployment, "Predict", predict_request(TWO_VERSIONS, label="nope", x=x)) == GrpcAnswer(
        grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nope", None
    )


# ----- a model that cannot be loaded ------------------------------------------------------------------


@dataclass(frozen=True)
class LoadFailure:
    """TF Serving's error for a failed load, with the version's directory replaced by ``<version dir>``
    (TF Serving names the file it could not read: the store for the reference, a node's cache here)."""

    code: Code
    message: str


VERSION_DIR = "<version dir>"


def without_version_dir(message: str, base_paths: list[Path]) -> str:
    for base_path in base_paths:
        message = message.replace(str(base_path / BROKEN / "1"), VERSION_DIR)
    return message


def node_cache_dirs(d: Deployment) -> list[Path]:
    return [node.cache_dir for node in d.stack.nodes]


@pytest.fixture(scope="module")
def broken_load_failure(reference_backend: ServingBackend, store_tree: Path) -> LoadFailure:
    """What TF Serving says when the broken model's load fails: add it to the reference's config and read
    the version's status (END, with the load's error)."""
    wait_until(reference_backend.answers, SERVING_READY_TIMEOUT_S, "the reference backend")
    entries = [*reference_entries(store_tree), ModelConfigEntry(BROKEN, store_tree / BROKEN)]
    config = text_format.Parse(model_server_config_text(entries), model_server_config_pb2.ModelServerConfig())
    with grpc.insecure_channel(reference_backend.grpc_target) as channel:
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        reload = grpc_answer(
            lambda: models.HandleReloadConfigRequest(
                model_management_pb2.ReloadConfigRequest(config=config), timeout=RELOAD_TIMEOUT_S
            )
        )
        assert reload.code != grpc.StatusCode.OK, "the broken model loaded"
        status = models.GetModelStatus(status_request(BROKEN), timeout=RPC_TIMEOUT_S)
    (version,) = status.model_version_status
    assert version.state == get_model_status_pb2.ModelVersionStatus.END
    assert version.status.error_code != 0
    message = without_version_dir(version.status.error_message, [store_tree])
    assert VERSION_DIR in message, message
    return LoadFailure(Code(version.status.error_code), message)


def test_rest_broken_model_passes_the_load_error_through(
    deployment: Deployment, broken_load_failure: LoadFailure
) -> None:
    answer = rest_answer(deployment.cache.rest, "POST", f"/v1/models/{BROKEN}:predict", PREDICT_BODY)
    body = without_version_dir(answer.body, node_cache_dirs(deployment))
    assert (answer.status, answer.content_type, body) == (
        broken_load_failure.code.http_status,
        "application/json",
        error_body(broken_load_failure.message),
    )


def test_grpc_broken_model_passes_the_load_error_through(
    deployment: Deployment, broken_load_failure: LoadFailure
) -> None:
    request = predict_request(BROKEN, x=float_tensor([1.0], [1, 1]))
    answer = grpc_answer(lambda: deployment.cache.predictions.Predict(request, timeout=RPC_TIMEOUT_S))
    details = without_version_dir(answer.details or "", node_cache_dirs(deployment))
    assert (answer.code.value[0], details) == (int(broken_load_failure.code), broken_load_failure.message)


# ----- the order in which versions are asked for ------------------------------------------------------


def test_label_after_its_version_was_loaded_by_number(deployment: Deployment) -> None:
    name = LABEL_AFTER_VERSION
    assert post(deployment, f"/v1/models/{name}/versions/123:predict", PREDICT_BODY).status == 200
    assert post(deployment, f"/v1/models/{name}/labels/stable:predict", PREDICT_BODY).status == 200


def test_latest_after_an_older_version_was_loaded(deployment: Deployment) -> None:
    name = LATEST_AFTER_VERSION
    x = float_tensor([2.0], [1, 1])
    assert (
        same_grpc(deployment, "Predict", predict_request(name, version=123, x=x)).code == grpc.StatusCode.OK
    )
    same_grpc(deployment, "Predict", predict_request(name, x=x))
