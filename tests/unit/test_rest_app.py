"""The REST application through aiohttp's test client (a real HTTP server on 127.0.0.1, in process).

The serving manager is an in-memory fake (``InMemoryModels``). Inference is either the real
``tfscachectl.tfserving.inference`` on real SavedModels from ``testdata/`` (exact TF Serving output), or a
fake backend (``FakeInference``) where a test needs to control timing or count calls.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tfscachectl.errors import Code, ServingError
from tfscachectl.tfserving import rest
from tfscachectl.tfserving.manager import ModelSpecQuery
from tfscachectl.tfserving.servable import LoadedModel, ServableId
from tfscachectl.tfserving.states import State, VersionStatus

TESTDATA = Path("/work/shared/testdata")
# How long a test waits for something that should happen at once (never a sleep).
PROMPT_S = 10.0
NOT_FOUND_PAGE = (
    "<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"
)

# ----- fakes -----------------------------------------------------------------------------------------


class FakeHandle:
    """A held model in the fake manager (counts what is held, like the real ServableHandle)."""

    def __init__(self, models: InMemoryModels, model: Any) -> None:
        self.model = model
        self._models = models

    def __enter__(self) -> FakeHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self._models.held[self.model.id] -= 1


@dataclass
class InMemoryModels:
    """A fake of ``ServingManager``: fixed models, labels and states, TF Serving's lookup errors."""

    models: dict[str, dict[int, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    states: dict[str, list[VersionStatus]] = field(default_factory=dict)
    held: dict[ServableId, int] = field(default_factory=dict)
    queries: list[ModelSpecQuery] = field(default_factory=list)

    def acquire(self, query: ModelSpecQuery) -> FakeHandle:
        self.queries.append(query)
        versions = self.models.get(query.name, {})
        version = query.version
        if query.label is not None:
            version = self.labels.get(query.name, {}).get(query.label)
            if version is None:
                raise ServingError(
                    Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {query.label}"
                )
        if version is None and versions:
            version = max(versions)
        if version is None or version not in versions:
            wanted = f"Latest({query.name})" if version is None else f"Specific({query.name}, {version})"
            raise ServingError(Code.NOT_FOUND, f"Servable not found for request: {wanted}")
        model = versions[version]
        self.held[model.id] = self.held.get(model.id, 0) + 1
        return FakeHandle(self, model)

    def model_status(self, name: str, version: int | None) -> list[VersionStatus]:
        known = self.states.get(name, [])
        if version is None:
            if not known:
                raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {name}")
            return known
        found = [s for s in known if s.version == version]
        if not found:
            raise ServingError(Code.NOT_FOUND, f"Could not find version {version} of model {name}")
        return found


@dataclass
class FakeModel:
    """Stands in for a LoadedModel: an id and SignatureDefs, no TensorFlow session."""

    id: ServableId
    signatures: dict[str, Any]


class FakeInference:
    """A fake inference backend: ``y = x`` on float inputs, optionally blocked until the test releases it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.finished = threading.Event()
        self.timeouts: list[int | None] = []

    def predict(self, model: Any, request: Any, timeout_ms: int | None) -> Any:
        from tensorflow_serving.apis import predict_pb2

        self.timeouts.append(timeout_ms)
        self.started.set()
        try:
            assert self.release.wait(PROMPT_S)
            response = predict_pb2.PredictResponse()
            for name, tensor in request.inputs.items():
                response.outputs[f"{name}_out"].CopyFrom(tensor)
            return response
        finally:
            self.finished.set()

    def classify(self, model: Any, request: Any, timeout_ms: int | None) -> Any:
        raise AssertionError("not used")

    def regress(self, model: Any, request: Any, timeout_ms: int | None) -> Any:
        raise AssertionError("not used")

    def get_model_metadata(self, model: Any, request: Any) -> Any:
        raise AssertionError("not used")


def float_signature(*inputs: str) -> Any:
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for name in inputs:
        signature.inputs[name].dtype = types_pb2.DT_FLOAT
        signature.inputs[name].name = f"{name}:0"
    return signature


# ----- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rest-test")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def real_models() -> Iterator[dict[str, dict[int, LoadedModel]]]:
    loaded = {
        "half": {
            123: LoadedModel(ServableId("half", 123), TESTDATA / "saved_model_half_plus_two_cpu" / "00000123")
        },
        "counter": {
            123: LoadedModel(ServableId("counter", 123), TESTDATA / "saved_model_counter" / "00000123")
        },
    }
    yield loaded
    for versions in loaded.values():
        for model in versions.values():
            model.close()


@pytest.fixture
def real(real_models: dict[str, dict[int, LoadedModel]]) -> InMemoryModels:
    available = [VersionStatus(123, State.AVAILABLE)]
    return InMemoryModels(
        models=real_models,
        labels={"half": {"stable": 123, "ghost": 99}},
        states={
            "half": available,
            "counter": available,
            "gone": [VersionStatus(2, State.END), VersionStatus(1, State.END, Code.UNKNOWN, "failed <here>")],
        },
    )


@dataclass
class Served:
    client: TestClient[Any, Any]
    calls: list[tuple[str, str, Code]]


def serve(
    manager: Any, executor: ThreadPoolExecutor, test: Callable[[Served], Awaitable[None]], **options: Any
) -> None:
    """Run ``test`` against the app on a loopback port; every request is recorded through ``on_request``."""
    calls: list[tuple[str, str, Code]] = []

    def record(model: str, api: str, code: Code, seconds: float) -> None:
        assert seconds >= 0
        calls.append((model, api, code))

    async def run() -> None:
        app = rest.create_rest_app(manager, executor, on_request=record, **options)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await test(Served(client, calls))

    asyncio.run(run())


async def call(
    served: Served, method: str, path: str, body: bytes | str = b"", **kw: Any
) -> tuple[int, str, Any]:
    data = io.BytesIO(body.encode() if isinstance(body, str) else body)
    async with served.client.request(
        method, path, data=data, skip_auto_headers=["Content-Type"], **kw
    ) as resp:
        return resp.status, await resp.text(), resp.headers


def error_body(message: str) -> str:
    return '{\n    "error": "' + message.replace("\\", "\\\\").replace('"', '\\"') + '"\n}'


# ----- real models, exact TF Serving output ------------------------------------------------------------


def test_predict_regress_classify_on_real_models(real: InMemoryModels, executor: ThreadPoolExecutor) -> None:
    async def test(s: Served) -> None:
        status, text, headers = await call(
            s, "POST", "/v1/models/half:predict", '{"instances": [1.0, 2.0, 5.0]}'
        )
        assert (status, text) == (200, '{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}')
        assert headers["Content-Type"] == "application/json"
        status, text, _ = await call(
            s, "POST", "/v1/models/half/versions/123:predict", '{"inputs": {"x": [[1.0], [2.0]]}}'
        )
        assert (status, text) == (
            200,
            '{\n    "outputs": [\n        [\n            2.5\n        ],\n'
            "        [\n            3.0\n        ]\n    ]\n}",
        )
        status, text, _ = await call(
            s,
            "POST",
            "/v1/models/half/labels/stable:regress",
            '{"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}, {"x": 2.0}]}',
        )
        assert (status, text) == (200, '{\n    "results": [42.0, 3.0]\n}')
        status, text, _ = await call(
            s,
            "POST",
            "/v1/models/half:classify",
            '{"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}',
        )
        assert (status, text) == (200, '{\n    "results": [[["", 12.0]]\n    ]\n}')
        assert s.calls == [
            ("half", "predict", Code.OK),
            ("half", "predict", Code.OK),
            ("half", "regress", Code.OK),
            ("half", "classify", Code.OK),
        ]
        assert real.queries[-2] == ModelSpecQuery("half", label="stable")

    serve(real, executor, test)
    assert all(count == 0 for count in real.held.values())


def test_status_and_metadata(real: InMemoryModels, executor: ThreadPoolExecutor) -> None:
    available = (
        '{\n "model_version_status": [\n  {\n   "version": "123",\n   "state": "AVAILABLE",\n'
        '   "status": {\n    "error_code": "OK",\n    "error_message": ""\n   }\n  }\n ]\n}\n'
    )

    async def test(s: Served) -> None:
        status, text, headers = await call(s, "GET", "/v1/models/half")
        assert (status, text) == (200, available)
        assert headers["Content-Type"] == "application/json"
        # A label is ignored by the status API, even one that names nothing.
        status, text, _ = await call(s, "GET", "/v1/models/half/labels/anything")
        assert (status, text) == (200, available)
        status, text, _ = await call(s, "GET", "/v1/models/half/versions/0123")
        assert (status, text) == (200, available)
        status, text, _ = await call(s, "GET", "/v1/models/gone")
        assert status == 200
        assert '"state": "END"' in text
        assert '"error_message": "failed \\u003chere\\u003e"' in text
        status, text, _ = await call(s, "GET", "/v1/models/nope")
        assert (status, text) == (404, error_body("Could not find any versions of model nope"))
        status, text, _ = await call(s, "GET", "/v1/models/half/versions/7")
        assert (status, text) == (404, error_body("Could not find version 7 of model half"))

        status, text, headers = await call(s, "GET", "/v1/models/half/labels/stable/metadata")
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert text.startswith(
            '{\n"model_spec":{\n "name": "half",\n "version": "123",\n "signature_name": ""\n}\n,\n'
            '"metadata": {"signature_def": {\n "signature_def": {\n  "classify_x_to_y": {\n'
        )
        assert text.endswith("\n }\n}\n}\n}\n")
        # The metadata API resolves the label.
        status, text, _ = await call(s, "GET", "/v1/models/half/labels/ghost/metadata")
        assert (status, text) == (404, error_body("Servable not found for request: Specific(half, 99)"))
        status, text, _ = await call(s, "GET", "/v1/models/half/labels/nope/metadata")
        assert (status, text) == (400, error_body("Unrecognized servable version label: nope"))

    serve(real, executor, test)


def test_order_of_errors(real: InMemoryModels, executor: ThreadPoolExecutor) -> None:
    async def test(s: Served) -> None:
        # A body that is not JSON beats an unknown model.
        assert (await call(s, "POST", "/v1/models/foo:predict"))[:2] == (
            400,
            error_body("JSON Parse error: The document is empty"),
        )
        assert (await call(s, "POST", "/v1/models/half:predict", "instances = [1, 2]"))[:2] == (
            400,
            error_body("JSON Parse error: Invalid value. at offset: 0"),
        )
        # A bad signature_name beats an unknown model too.
        status, text, _ = await call(s, "POST", "/v1/models/foo:predict", '{"signature_name": 100}')
        assert status == 400
        assert text.endswith("'signature_name' key must be a string value.\"\n}")
        # An unknown model or label beats bad tensor values.
        assert (await call(s, "POST", "/v1/models/foo:predict", '{"instances": ["x"]}'))[:2] == (
            404,
            error_body("Servable not found for request: Latest(foo)"),
        )
        assert (await call(s, "POST", "/v1/models/foo/versions/50:predict", '{"instances": [1]}'))[:2] == (
            404,
            error_body("Servable not found for request: Specific(foo, 50)"),
        )
        assert (
            await call(
                s, "POST", "/v1/models/half/labels/Version_Nonexistent:predict", '{"instances": ["x", "y"]}'
            )
        )[:2] == (400, error_body("Unrecognized servable version label: Version_Nonexistent"))
        # Then the signature, then the values.
        assert (
            await call(s, "POST", "/v1/models/half:predict", '{"signature_name": "nope", "instances": [1]}')
        )[:2] == (400, error_body('Serving signature name: "nope" not found in signature def'))
        assert (await call(s, "POST", "/v1/models/half:predict", '{"instances": ["x", "y"]}'))[:2] == (
            400,
            error_body(
                "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
                'JSON Value: "x" Type: String is not of expected type: float'
            ),
        )
        # A signature without inputs cannot be called over REST.
        assert (
            await call(
                s, "POST", "/v1/models/counter:predict", '{"signature_name": "get_counter", "instances": [1]}'
            )
        )[:2] == (400, error_body("Failed to get input map for signature: get_counter"))
        # Classify and regress convert every example before they look the model up.
        queries = len(real.queries)
        assert (await call(s, "POST", "/v1/models/foo:regress", '{"examples": [{"x": null}]}'))[:2] == (
            400,
            error_body("Feature: x has element with unexpected JSON type: Null"),
        )
        assert len(real.queries) == queries
        assert (await call(s, "POST", "/v1/models/foo:regress", '{"examples": [{"x": 1.0}]}'))[:2] == (
            404,
            error_body("Servable not found for request: Latest(foo)"),
        )
        assert (
            await call(s, "POST", "/v1/models/half:classify", '{"signature_name": "s", "examples": [{}]}')
        )[:2] == (
            400,
            error_body("No signature was found with the name: s"),
        )

    serve(real, executor, test)
    assert all(count == 0 for count in real.held.values())


# ----- dispatch, paths and HTTP details ----------------------------------------------------------------


def test_paths_outside_the_api_get_libevent_s_404(executor: ThreadPoolExecutor) -> None:
    async def test(s: Served) -> None:
        for path in ("/", "/statuspage", "/v2/models/x", "/v1"):
            status, text, headers = await call(s, "GET", path)
            assert status == 404
            assert text == NOT_FOUND_PAGE
            assert headers["Content-Type"] == "text/html"
        assert s.calls == []

    serve(InMemoryModels(), executor, test)


def test_malformed_requests(executor: ThreadPoolExecutor) -> None:
    async def test(s: Served) -> None:
        for method, path in [
            ("GET", "/v1/foo"),
            ("POST", "/v1/models/foo:PREDICT"),
            ("POST", "/v1/models/foo/versions/50/labels/x:predict"),
            ("PUT", "/v1/models/foo:predict"),
            ("DELETE", "/v1/models/foo"),
            ("POST", "/v1/models/foo:predict?debug=1"),
        ]:
            status, text, headers = await call(s, method, path, '{"instances": [1]}')
            assert (status, text) == (400, error_body(f"Malformed request: {method} {path}"))
            assert headers["Content-Type"] == "application/json"
        assert (await call(s, "GET", "/v1/models"))[:2] == (400, error_body("Missing model name in request."))
        # The raw path is what is matched and quoted.
        status, text, _ = await call(s, "GET", "/v1/models/a%2Fb/versions/x")
        assert (status, text) == (400, error_body("Malformed request: GET /v1/models/a%2Fb/versions/x"))
        assert s.calls[1] == ("foo", "PREDICT", Code.INVALID_ARGUMENT)

    serve(InMemoryModels(), executor, test)


def test_version_overflow_has_an_empty_body(executor: ThreadPoolExecutor) -> None:
    async def test(s: Served) -> None:
        status, text, headers = await call(
            s, "POST", "/v1/models/foo/versions/18446744073709551615:predict", "{}"
        )
        assert (status, text) == (400, "")
        assert headers["Content-Type"] == "application/json"

    serve(InMemoryModels(), executor, test)


def test_percent_encoded_names(executor: ThreadPoolExecutor) -> None:
    manager = InMemoryModels()

    async def test(s: Served) -> None:
        status, text, _ = await call(
            s, "POST", "/v1/models/my%20model/labels/a%2Fb:predict", '{"instances": [1]}'
        )
        assert (status, text) == (400, error_body("Unrecognized servable version label: a/b"))
        assert manager.queries == [ModelSpecQuery("my model", label="a/b")]

    serve(manager, executor, test)


def test_cors(executor: ThreadPoolExecutor) -> None:
    async def plain(s: Served) -> None:
        status, text, headers = await call(
            s, "OPTIONS", "/v1/models/x:predict", headers={"Origin": "http://a.b"}
        )
        assert (status, text) == (200, "")
        assert "Access-Control-Allow-Origin" not in headers
        status, text, _ = await call(s, "OPTIONS", "/v1/models/x:predict")
        assert (status, text) == (400, "")
        status, _, headers = await call(s, "GET", "/v1/models/x")
        assert "Access-Control-Allow-Origin" not in headers

    async def enabled(s: Served) -> None:
        status, _, headers = await call(
            s, "OPTIONS", "/v1/models/x:predict", headers={"Origin": "https://a.b"}
        )
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Access-Control-Allow-Methods"] == "POST, GET"
        assert headers["Access-Control-Allow-Headers"] == "Content-Type"
        status, _, headers = await call(s, "GET", "/v1/models/x")
        assert status == 404
        assert headers["Access-Control-Allow-Origin"] == "*"

    serve(InMemoryModels(), executor, plain)
    serve(InMemoryModels(), executor, enabled, enable_cors=True)


def test_prometheus_path(executor: ThreadPoolExecutor) -> None:
    page = rest.PrometheusEndpoint("/monitoring/prometheus/metrics", lambda: "# metrics\n")

    async def test(s: Served) -> None:
        status, text, headers = await call(s, "GET", "/monitoring/prometheus/metrics")
        assert (status, text) == (200, "# metrics\n")
        assert headers["Content-Type"].startswith("text/plain")
        status, text, _ = await call(s, "GET", "/monitoring/prometheus/metrics?x=1")
        assert (status, text) == (
            400,
            "Unexpected path: /monitoring/prometheus/metrics?x=1. Should be /monitoring/prometheus/metrics",
        )
        assert (await call(s, "GET", "/monitoring/prometheus"))[0] == 404

    serve(InMemoryModels(), executor, test, prometheus=page)


# ----- fake inference: bodies, deadlines, holding models -------------------------------------------------


def fake_manager() -> InMemoryModels:
    model = FakeModel(ServableId("m", 1), {"serving_default": float_signature("x")})
    two = FakeModel(ServableId("two", 1), {"serving_default": float_signature("a", "b")})
    return InMemoryModels(models={"m": {1: model}, "two": {1: two}})


def test_large_bodies_are_accepted(executor: ThreadPoolExecutor) -> None:
    manager = fake_manager()
    rows = 100_000
    body = '{"instances": [' + ", ".join(["[1.5, 2.5]"] * rows) + "]}"
    assert len(body) > 2**20

    async def test(s: Served) -> None:
        status, text, _ = await call(s, "POST", "/v1/models/m:predict", body)
        assert status == 200
        assert text.startswith('{\n    "predictions": [[1.5, 2.5], [1.5, 2.5], ')
        assert text.count("[1.5, 2.5]") == rows

    serve(manager, executor, test, backend=FakeInference())


def test_several_outputs_row_and_columnar(executor: ThreadPoolExecutor) -> None:
    async def test(s: Served) -> None:
        status, text, _ = await call(
            s, "POST", "/v1/models/two:predict", '{"instances": [{"a": 1, "b": [2, 3]}]}'
        )
        assert (status, text) == (
            200,
            '{\n    "predictions": [\n        {\n            "a_out": 1.0,\n            "b_out": [2.0, 3.0]\n'
            "        }\n    ]\n}",
        )
        status, text, _ = await call(s, "POST", "/v1/models/two:predict", '{"inputs": {"a": 1, "b": 2}}')
        assert (status, text) == (
            200,
            '{\n    "outputs": {\n        "a_out": 1.0,\n        "b_out": 2.0\n    }\n}',
        )

    serve(fake_manager(), executor, test, backend=FakeInference())


def test_deadline_answers_504_and_holds_the_model_until_the_work_ends(executor: ThreadPoolExecutor) -> None:
    manager = fake_manager()
    backend = FakeInference()
    backend.release.clear()
    model_id = ServableId("m", 1)

    async def test(s: Served) -> None:
        status, text, _ = await call(s, "POST", "/v1/models/m:predict", '{"instances": [1]}')
        assert (status, text) == (504, error_body(rest.DEADLINE_MESSAGE))
        assert backend.started.is_set()
        assert manager.held[model_id] == 1  # the work is still running: the model is still held
        backend.release.set()
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, backend.finished.wait, PROMPT_S)
        for _ in range(1000):  # the release is scheduled on the loop right after the work ends
            if manager.held[model_id] == 0:
                break
            await asyncio.sleep(0)
        assert manager.held[model_id] == 0
        assert s.calls == [("m", "predict", Code.DEADLINE_EXCEEDED)]

    serve(manager, executor, test, backend=backend, timeout_ms=200)
    assert backend.timeouts[0] is not None
    assert 0 < backend.timeouts[0] <= 200


def test_no_timeout_when_disabled(executor: ThreadPoolExecutor) -> None:
    backend = FakeInference()

    async def test(s: Served) -> None:
        assert (await call(s, "POST", "/v1/models/m:predict", '{"instances": [1]}'))[0] == 200

    serve(fake_manager(), executor, test, backend=backend, timeout_ms=0)
    assert backend.timeouts == [None]


def test_unexpected_backend_failures_are_unknown(executor: ThreadPoolExecutor) -> None:
    class Broken(FakeInference):
        def predict(self, model: Any, request: Any, timeout_ms: int | None) -> Any:
            raise RuntimeError("boom")

    async def test(s: Served) -> None:
        assert (await call(s, "POST", "/v1/models/m:predict", '{"instances": [1]}'))[:2] == (
            500,
            error_body("RuntimeError: boom"),
        )

    manager = fake_manager()
    serve(manager, executor, test, backend=Broken())
    assert manager.held[ServableId("m", 1)] == 0
