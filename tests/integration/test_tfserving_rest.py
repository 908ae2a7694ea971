"""The bundled backend's REST API over real sockets, with a plain HTTP client (httpx).

Each test runs on the generated equivalents of TF Serving's test models and, when ``../shared/testdata`` is
there, on TF Serving's own files too. Expected texts are TF Serving's, byte for byte where its formatting
matters (rapidjson's pretty printer, ``%g`` numbers, libevent's 404 page). The pure details (every JSON
conversion rule, every path form) are unit-tested in ``tests/unit``; here the point is the whole process:
its HTTP server, dispatch, model manager, TensorFlow sessions and metrics together.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

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
TWO_VERSIONS = "half_plus_two_2_versions"
# Labels in the initial config need --allow_version_labels_for_unavailable_models (nothing is loaded yet).
LABELS = {"stable": 123, "canary": 124}
HTTP_TIMEOUT_S = 30.0
RPC_TIMEOUT_S = 30.0
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
# libevent's evhttp_send_error(req, 404, NULL), which TF Serving answers for paths outside /v1/.
NOT_FOUND_PAGE = (
    "<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"
)


def base_paths(source: str, generated: ModelStoreTree) -> dict[str, Path]:
    if source == "generated":
        return {name: generated.base_path(name) for name in MODELS}
    if not TESTDATA_DIR.is_dir():
        pytest.skip(f"TF Serving's testdata is not at {TESTDATA_DIR}")
    return {name: TESTDATA_DIR / TESTDATA_NAMES[name] for name in MODELS}


def http_client(server: ServingBackend) -> httpx.Client:
    # trust_env=False: no proxy from the environment between the test and the loopback port.
    return httpx.Client(base_url=server.rest_url, timeout=HTTP_TIMEOUT_S, trust_env=False)


@pytest.fixture(scope="module", params=["generated", "testdata"])
def rest(
    request: pytest.FixtureRequest,
    module_processes: ProcessRegistry,
    generated_models: ModelStoreTree,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[httpx.Client]:
    """A backend serving the five test models (labels on the two-version one); an HTTP client for it."""
    paths = base_paths(request.param, generated_models)
    entries = [
        ModelConfigEntry(name, path, AllVersions(), LABELS)
        if name == TWO_VERSIONS
        else ModelConfigEntry(name, path)
        for name, path in paths.items()
    ]
    server = ServingBackend.with_models(
        module_processes,
        tmp_path_factory.mktemp(f"rest-{request.param}"),
        entries,
        extra_flags=["--allow_version_labels_for_unavailable_models=true"],
        name=f"rest-{request.param}",
    ).start()
    with http_client(server) as client:
        yield client
    server.stop()


@pytest.fixture(scope="module")
def monitored(
    module_processes: ProcessRegistry,
    generated_models: ModelStoreTree,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServingBackend]:
    """A backend started with ``--monitoring_config_file`` that enables Prometheus metrics."""
    config_dir = tmp_path_factory.mktemp("rest-monitored")
    monitoring = config_dir / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{\n  enable: true\n  path: "{PROMETHEUS_PATH}"\n}}\n')
    server = ServingBackend.with_models(
        module_processes,
        config_dir,
        [ModelConfigEntry("half_plus_two", generated_models.base_path("half_plus_two"))],
        extra_flags=[f"--monitoring_config_file={monitoring}"],
        name="rest-monitored",
    ).start()
    yield server
    server.stop()


def call(client: httpx.Client, method: str, path: str, body: str | bytes | None = None) -> tuple[int, str]:
    """One API request; every answer of the API, error or not, is JSON (even an empty body)."""
    response = client.request(method, path, content=body)
    assert response.headers["Content-Type"] == "application/json", (method, path)
    return response.status_code, response.text


def post(client: httpx.Client, path: str, body: str | bytes) -> tuple[int, str]:
    return call(client, "POST", path, body)


def error(message: str) -> str:
    """TF Serving's error body: ``{"error": ...}`` through rapidjson's PrettyWriter."""
    return '{\n    "error": ' + json.dumps(message) + "\n}"


def example_b64(**features: float) -> str:
    """A serialized tf.Example with float features, base64-encoded for a ``{"b64": ...}`` value."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    for key, value in features.items():
        example.features.feature[key].float_list.value.append(value)
    return base64.b64encode(example.SerializeToString()).decode()


# ----- predict --------------------------------------------------------------------------------------------


def test_predict_row_and_columnar(rest: httpx.Client) -> None:
    assert post(rest, "/v1/models/half_plus_two:predict", '{"instances": [1.0, 2.0, 5.0]}') == (
        200,
        '{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}',
    )
    # Columnar output is fully pretty-printed.
    assert post(rest, "/v1/models/half_plus_two:predict", '{"inputs": {"x": [1.0, 2.0]}}') == (
        200,
        '{\n    "outputs": [\n        2.5,\n        3.0\n    ]\n}',
    )
    # A single input may be given without its name; integers are read as floats.
    assert post(rest, "/v1/models/half_plus_two:predict", '{"inputs": [[1], [3]]}') == (
        200,
        '{\n    "outputs": [\n        [\n            2.5\n        ],\n'
        "        [\n            3.5\n        ]\n    ]\n}",
    )
    assert post(rest, "/v1/models/half_plus_two:predict", '{"instances": [{"x": [1.0]}, {"x": [3.0]}]}') == (
        200,
        '{\n    "predictions": [[2.5], [3.5]\n    ]\n}',
    )


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/half_plus_two_2_versions:predict",
        "/v1/models/half_plus_two_2_versions/versions/123:predict",
        "/v1/models/half_plus_two_2_versions/versions/124:predict",
        "/v1/models/half_plus_two_2_versions/versions/00000123:predict",
        "/v1/models/half_plus_two_2_versions/labels/stable:predict",
        "/v1/models/half_plus_two_2_versions/labels/canary:predict",
        # The pattern is case-insensitive, and the name is percent-decoded.
        "/V1/MODELS/half_plus_two_2_versions/VERSIONS/123:predict",
        "/v1/models/half%5Fplus%5Ftwo%5F2%5Fversions/labels/stable:predict",
    ],
)
def test_predict_url_forms(rest: httpx.Client, path: str) -> None:
    assert post(rest, path, '{"instances": [2.0]}') == (200, '{\n    "predictions": [3.0\n    ]\n}')


def test_predict_tf2_and_scalar_signatures(rest: httpx.Client) -> None:
    assert post(rest, "/v1/models/half_plus_two_tf2:predict", '{"instances": [2.0]}') == (
        200,
        '{\n    "predictions": [3.0\n    ]\n}',
    )
    # half_plus_three declares scalar x and y; TF Serving feeds any shape, a scalar included.
    assert post(rest, "/v1/models/half_plus_three:predict", '{"inputs": {"x": 2.0}}') == (
        200,
        '{\n    "outputs": 4.0\n}',
    )
    assert post(rest, "/v1/models/half_plus_three:predict", '{"instances": [1.0, 2.0, 3.0]}') == (
        200,
        '{\n    "predictions": [3.5, 4.0, 4.5\n    ]\n}',
    )


def test_counter_by_signature_name(rest: httpx.Client) -> None:
    def incr_by(delta: float) -> float:
        status, text = post(
            rest,
            "/v1/models/counter:predict",
            json.dumps({"signature_name": "incr_counter_by", "inputs": delta}),
        )
        assert status == 200, text
        return float(json.loads(text)["outputs"])

    start = incr_by(0.0)
    assert [incr_by(1.0), incr_by(1.0), incr_by(-start - 2.0)] == [start + 1.0, start + 2.0, 0.0]
    assert post(
        rest, "/v1/models/counter:predict", '{"signature_name": "incr_counter_by", "inputs": {"delta": 3}}'
    ) == (200, '{\n    "outputs": 3.0\n}')
    # The signatures without inputs cannot be called over REST.
    assert post(
        rest, "/v1/models/counter:predict", '{"signature_name": "get_counter", "instances": [1]}'
    ) == (
        400,
        error("Failed to get input map for signature: get_counter"),
    )


@pytest.mark.parametrize("model", ["half_plus_two", "half_plus_two_tf2"])
def test_predict_b64_serialized_examples(rest: httpx.Client, model: str) -> None:
    body = {"signature_name": "regress_x_to_y", "instances": [{"b64": example_b64(x=80.0)}]}
    assert post(rest, f"/v1/models/{model}:predict", json.dumps(body)) == (
        200,
        '{\n    "predictions": [[42.0]\n    ]\n}',
    )
    body = {
        "signature_name": "regress_x_to_y2",
        "inputs": [{"b64": example_b64(x=2.0)}, {"b64": example_b64(x=80.0)}],
    }
    status, text = post(rest, f"/v1/models/{model}:predict", json.dumps(body))
    assert status == 200, text
    assert json.loads(text) == {"outputs": [[4.0], [43.0]]}


# ----- classify and regress -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["half_plus_two", "half_plus_two_tf2"])
def test_regress_and_classify_examples(rest: httpx.Client, model: str) -> None:
    assert post(
        rest,
        f"/v1/models/{model}:regress",
        '{"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}, {"x": 2.0}]}',
    ) == (200, '{\n    "results": [42.0, 3.0]\n}')
    assert post(
        rest,
        f"/v1/models/{model}:regress",
        '{"signature_name": "regress_x_to_y2", "examples": [{"x": [1.0]}]}',
    ) == (200, '{\n    "results": [3.5]\n}')
    # A JSON integer makes an int64 feature, which the float feature x does not accept.
    status, text = post(
        rest, f"/v1/models/{model}:regress", '{"signature_name": "regress_x_to_y2", "examples": [{"x": [1]}]}'
    )
    assert status == 400
    assert "Data types don't match. Data type: int64 but expected type: float" in json.loads(text)["error"]
    assert post(
        rest,
        f"/v1/models/{model}:classify",
        '{"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}, {"x": 2.0}]}',
    ) == (200, '{\n    "results": [[["", 12.0]], [["", 3.0]]\n    ]\n}')


def test_examples_with_context(rest: httpx.Client) -> None:
    # An example's own feature wins over the context's.
    body = '{"signature_name": "regress_x_to_y", "context": {"x": 10.0}, "examples": [{}, {"x": 4.0}]}'
    assert post(rest, "/v1/models/half_plus_two:regress", body) == (200, '{\n    "results": [7.0, 4.0]\n}')
    body = '{"signature_name": "classify_x_to_y", "context": {"x": 80.0}, "examples": [{}]}'
    assert post(rest, "/v1/models/half_plus_two:classify", body) == (
        200,
        '{\n    "results": [[["", 42.0]]\n    ]\n}',
    )


def test_regress_by_version_label_and_legacy_signature(rest: httpx.Client) -> None:
    body = '{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}'
    for path in (
        "/v1/models/half_plus_two_2_versions/versions/124:regress",
        "/v1/models/half_plus_two_2_versions/labels/stable:regress",
    ):
        assert post(rest, path, body) == (200, '{\n    "results": [3.0]\n}')
    assert post(
        rest,
        "/v1/models/half_plus_two_2_versions/labels/canary:classify",
        '{"signature_name": "classify_x_to_y", "examples": [{"x": 4.0}]}',
    ) == (200, '{\n    "results": [[["", 4.0]]\n    ]\n}')
    # half_plus_three's regress signature has the old name "tensorflow/serving/regress".
    assert post(
        rest,
        "/v1/models/half_plus_three:regress",
        '{"signature_name": "tensorflow/serving/regress", "examples": [{"x": 2.0}]}',
    ) == (200, '{\n    "results": [4.0]\n}')


# ----- status and metadata --------------------------------------------------------------------------------


def status_json(*versions: int) -> str:
    """GetModelStatus as TF Serving's REST API prints it (protobuf's JSON printer, AVAILABLE versions)."""
    entries = ",\n".join(
        f'  {{\n   "version": "{version}",\n   "state": "AVAILABLE",\n'
        '   "status": {\n    "error_code": "OK",\n    "error_message": ""\n   }\n  }'
        for version in versions
    )
    return '{\n "model_version_status": [\n' + entries + "\n ]\n}\n"


def test_model_status(rest: httpx.Client) -> None:
    assert call(rest, "GET", "/v1/models/half_plus_two") == (200, status_json(123))
    assert call(rest, "GET", "/v1/models/half_plus_two_2_versions") == (200, status_json(124, 123))
    assert call(rest, "GET", "/v1/models/half_plus_two_2_versions/versions/0123") == (200, status_json(123))
    # The status API ignores a label, even one that names nothing: every version is listed.
    for label in ("stable", "anything"):
        assert call(rest, "GET", f"/v1/models/half_plus_two_2_versions/labels/{label}") == (
            200,
            status_json(124, 123),
        )
    assert call(rest, "GET", "/v1/models/nope") == (404, error("Could not find any versions of model nope"))
    assert call(rest, "GET", "/v1/models/half_plus_two/versions/7") == (
        404,
        error("Could not find version 7 of model half_plus_two"),
    )


@pytest.mark.parametrize(
    ("path", "version"),
    [
        ("/v1/models/half_plus_two_2_versions/metadata", "124"),
        ("/v1/models/half_plus_two_2_versions/versions/123/metadata", "123"),
        ("/v1/models/half_plus_two_2_versions/labels/stable/metadata", "123"),
        ("/v1/models/half_plus_two_2_versions/labels/canary/metadata", "124"),
    ],
)
def test_model_metadata_resolves_version_and_label(rest: httpx.Client, path: str, version: str) -> None:
    status, text = call(rest, "GET", path)
    assert status == 200
    assert text.startswith(
        '{\n"model_spec":{\n "name": "half_plus_two_2_versions",\n'
        f' "version": "{version}",\n "signature_name": ""\n}}\n,\n'
        '"metadata": {"signature_def": {\n "signature_def": {\n'
    )
    metadata = json.loads(text)
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {
        "serving_default",
        "regress_x_to_y",
        "regress_x_to_y2",
        "regress_x2_to_y3",
        "classify_x_to_y",
        "classify_x2_to_y3",
    }
    x = signatures["serving_default"]["inputs"]["x"]
    assert (x["dtype"], x["name"]) == ("DT_FLOAT", "x:0")
    assert signatures["classify_x_to_y"]["method_name"] == "tensorflow/serving/classify"


def test_metadata_errors(rest: httpx.Client) -> None:
    assert call(rest, "GET", "/v1/models/half_plus_two_2_versions/labels/nope/metadata") == (
        400,
        error("Unrecognized servable version label: nope"),
    )
    assert call(rest, "GET", "/v1/models/half_plus_two/versions/7/metadata") == (
        404,
        error("Servable not found for request: Specific(half_plus_two, 7)"),
    )
    assert call(rest, "GET", "/v1/models/nope/metadata") == (
        404,
        error("Servable not found for request: Latest(nope)"),
    )


# ----- errors ---------------------------------------------------------------------------------------------


PREDICT_BODY = '{"instances": [1.0]}'
EXAMPLES_BODY = '{"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]}'


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/models/foo:predict", PREDICT_BODY, 404, "Servable not found for request: Latest(foo)"),
        ("/v1/models/foo:classify", EXAMPLES_BODY, 404, "Servable not found for request: Latest(foo)"),
        (
            "/v1/models/half_plus_two/versions/50:predict",
            PREDICT_BODY,
            404,
            "Servable not found for request: Specific(half_plus_two, 50)",
        ),
        (
            "/v1/models/half_plus_two/versions/9223372036854775807:regress",
            EXAMPLES_BODY,
            404,
            "Servable not found for request: Specific(half_plus_two, 9223372036854775807)",
        ),
        (
            "/v1/models/half_plus_two/labels/stable:predict",
            PREDICT_BODY,
            400,
            "Unrecognized servable version label: stable",
        ),
        (
            "/v1/models/half_plus_two_2_versions/labels/Version_Nonexistent:regress",
            EXAMPLES_BODY,
            400,
            "Unrecognized servable version label: Version_Nonexistent",
        ),
    ],
)
def test_unknown_model_version_and_label(
    rest: httpx.Client, path: str, body: str, status: int, message: str
) -> None:
    assert post(rest, path, body) == (status, error(message))


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
    ],
)
def test_malformed_requests(rest: httpx.Client, method: str, path: str) -> None:
    assert call(rest, method, path, '{"instances": [1.0]}') == (
        400,
        error(f"Malformed request: {method} {path}"),
    )


def test_missing_model_name_and_head(rest: httpx.Client) -> None:
    assert call(rest, "GET", "/v1/models") == (400, error("Missing model name in request."))
    response = rest.head("/v1/models/half_plus_two")
    assert (response.status_code, response.text) == (400, "")  # the error body is not sent for a HEAD


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/models/half_plus_two/versions/9223372036854775808:predict"),
        ("POST", "/v1/models/half_plus_two/versions/99999999999999999999999:classify"),
        ("GET", "/v1/models/half_plus_two/versions/18446744073709551616"),
        ("GET", "/v1/models/half_plus_two/versions/18446744073709551616/metadata"),
    ],
)
def test_version_overflow_is_a_400_with_an_empty_body(rest: httpx.Client, method: str, path: str) -> None:
    assert call(rest, method, path, '{"instances": [1.0]}') == (400, "")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/v1"),
        ("GET", "/v2/models/half_plus_two"),
        ("POST", "/v2/models/half_plus_two:predict"),
        ("POST", "/models/half_plus_two:predict"),
        ("GET", PROMETHEUS_PATH),  # not enabled on this backend
    ],
)
def test_paths_outside_v1_get_libevent_s_html_404(rest: httpx.Client, method: str, path: str) -> None:
    response = rest.request(method, path, content='{"instances": [1.0]}')
    assert (response.status_code, response.text) == (404, NOT_FOUND_PAGE)
    assert response.headers["Content-Type"].startswith("text/html")


def test_bad_json(rest: httpx.Client) -> None:
    # The body is parsed before the model is looked up: an empty body beats an unknown model.
    for path in ("/v1/models/half_plus_two:predict", "/v1/models/foo:predict", "/v1/models/foo:regress"):
        assert post(rest, path, b"") == (400, error("JSON Parse error: The document is empty"))
    assert post(rest, "/v1/models/half_plus_two:predict", '{"instances": [1.0, 2.0}') == (
        400,
        error("JSON Parse error: Missing a comma or ']' after an array element. at offset: 23"),
    )
    assert post(rest, "/v1/models/half_plus_two:classify", '{"examples": [{"x": 1.0}], }') == (
        400,
        error("JSON Parse error: Missing a name for object member. at offset: 27"),
    )
    # Errors about the document quote it (rapidjson's pretty printer, arrays on one line).
    assert post(rest, "/v1/models/half_plus_two:predict", '{"instances": [1.0], "inputs": [1.0]}') == (
        400,
        error(
            'JSON Value: {\n    "instances": [1.0],\n    "inputs": [1.0]\n} Not formatted correctly '
            "expecting only one of 'inputs' or 'instances' keys to exist "
        ),
    )


def test_type_errors(rest: httpx.Client) -> None:
    assert post(rest, "/v1/models/half_plus_two:predict", '{"instances": ["x"]}') == (
        400,
        error(
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            'JSON Value: "x" Type: String is not of expected type: float'
        ),
    )
    # A label is resolved before the values are converted: an unknown one wins over a bad value.
    assert post(rest, "/v1/models/half_plus_two_2_versions/labels/nope:predict", '{"instances": ["x"]}') == (
        400,
        error("Unrecognized servable version label: nope"),
    )


def test_unknown_signature(rest: httpx.Client) -> None:
    assert post(
        rest, "/v1/models/half_plus_two:predict", '{"signature_name": "nope", "instances": [1.0]}'
    ) == (
        400,
        error('Serving signature name: "nope" not found in signature def'),
    )
    for api in ("classify", "regress"):
        assert post(
            rest, f"/v1/models/half_plus_two:{api}", '{"signature_name": "nope", "examples": [{"x": 1.0}]}'
        ) == (400, error("No signature was found with the name: nope"))


# ----- Prometheus -----------------------------------------------------------------------------------------


def metrics_page(server: ServingBackend) -> str:
    with http_client(server) as client:
        response = client.get(PROMETHEUS_PATH)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def counter_value(page: str, sample: str) -> float:
    """The value of one sample line (``name{labels}``) of a Prometheus page; 0 when absent."""
    for line in page.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


def request_count(model: str, status: str) -> str:
    return f':tensorflow:serving:request_count{{model_name="{model}",status="{status}"}}'


def test_prometheus_metrics(monitored: ServingBackend) -> None:
    before = metrics_page(monitored)
    assert "# TYPE :tensorflow:serving:request_count counter" in before
    with http_client(monitored) as client:
        assert post(client, "/v1/models/half_plus_two:predict", '{"instances": [1.0]}')[0] == 200
        assert call(client, "GET", "/v1/models/half_plus_two")[0] == 200
        assert post(client, "/v1/models/prom_missing:predict", '{"instances": [1.0]}')[0] == 404
        # A query string is not the metrics path.
        response = client.get(f"{PROMETHEUS_PATH}?x=1")
        assert (response.status_code, response.text) == (
            400,
            f"Unexpected path: {PROMETHEUS_PATH}?x=1. Should be {PROMETHEUS_PATH}",
        )
    after = metrics_page(monitored)
    ok = request_count("half_plus_two", "OK")
    assert counter_value(after, ok) == counter_value(before, ok) + 2
    assert counter_value(after, request_count("prom_missing", "NOT_FOUND")) == 1
    loads = re.findall(
        r':tensorflow:cc:saved_model:load_attempt_count\{model_path="[^"]*",status="success"\} 1', after
    )
    assert len(loads) == 1


def test_rest_request_latency_labels(monitored: ServingBackend) -> None:
    with http_client(monitored) as client:
        assert post(client, "/v1/models/half_plus_two:predict", '{"instances": [1.0]}')[0] == 200
        assert call(client, "GET", "/v1/models/half_plus_two")[0] == 200
    page = metrics_page(monitored)
    for api in ("predict", ""):
        labels = f'model_name="half_plus_two",API="{api}",entrypoint="REST"'
        assert counter_value(page, f":tensorflow:serving:request_latency_count{{{labels}}}") >= 1, page


def test_grpc_request_latency_labels(monitored: ServingBackend) -> None:
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray([1.0], dtype=np.float32)))
    with grpc.insecure_channel(monitored.grpc_target) as channel:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=RPC_TIMEOUT_S)
    page = metrics_page(monitored)
    labels = 'model_name="half_plus_two",API="Predict",entrypoint="GRPC"'
    assert counter_value(page, f":tensorflow:serving:request_latency_count{{{labels}}}") >= 1, page
