"""The REST API of the bundled backend: an aiohttp application that answers as ``tensorflow_model_server``.

Dispatch follows ``http_server.cc``: the Prometheus path (when configured) is matched exactly first; any
other raw path matching ``(?i)/v1/.*`` goes to the API; everything else gets libevent's HTML 404 page.
The API follows ``http_rest_api_handler.cc``, including its order of work, which decides which error a
client sees first:

- predict: parse the JSON, read ``signature_name``, resolve the model (label, version), look the signature
  up, convert the tensors, run;
- classify/regress: parse the JSON and convert every example, then resolve the model, then run;
- GET status: a label in the path is ignored; GET metadata: the label is resolved.

CPU-heavy work (parsing, converting, TensorFlow, writing JSON) runs in the executor given to the factory;
models are acquired and released on the event loop. A request holds its model version until its work in the
executor has finished, even when the client was already answered ``DEADLINE_EXCEEDED``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aiohttp import web

from tfscachectl.errors import Code, ServingError
from tfscachectl.tfserving import json_codec
from tfscachectl.tfserving.json_codec import JsonObject
from tfscachectl.tfserving.manager import ModelSpecQuery
from tfscachectl.tfserving.rest_paths import (
    API_PATH,
    ModelInfo,
    ModelInfoError,
    RestApi,
    RestTarget,
    parse_model_info,
    rest_target,
)
from tfscachectl.tfserving.servable import LoadedModel
from tfscachectl.tfserving.states import VersionStatus
from tfscachectl.tfserving.wire_errors import NOT_FOUND_PAGE

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
DEFAULT_TIMEOUT_MS = 30_000  # --rest_api_timeout_in_ms
# TF Serving reads a request body of any size; aiohttp's default limit is 1 MiB.
MAX_BODY_BYTES = 2**31 - 1
# What TensorFlow's session says when RunOptions.timeout_in_ms expires.
DEADLINE_MESSAGE = "Timed out waiting for notification"
CORS_PREFLIGHT_ERROR = "Origin header is missing in CORS preflight"

_JSON_HEADERS = {"Content-Type": "application/json"}
_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}
_CORS_ORIGIN = re.compile("https?://")

T = TypeVar("T")

OnRequest = Callable[[str, str, Code, float], None]
"""Called once per API request with (model name, API, status code, seconds): TF Serving's request count
and latency metrics. The API is the ``:method`` of a POST as typed (``predict``...), ``""`` for a GET."""


class HeldModel(Protocol):
    """A model version held for one request (``manager.ServableHandle``); released on ``__exit__``."""

    model: LoadedModel

    def __exit__(self, *exc: object) -> None: ...


class ModelProvider(Protocol):
    """What the REST API needs of the serving manager (``manager.ServingManager``)."""

    def acquire(self, query: ModelSpecQuery) -> HeldModel: ...

    def model_status(self, name: str, version: int | None) -> list[VersionStatus]: ...


class InferenceBackend(Protocol):
    """The synchronous inference functions (``tfscachectl.tfserving.inference``), run in the executor."""

    def predict(self, model: LoadedModel, request: Any, timeout_ms: int | None) -> Any: ...

    def classify(self, model: LoadedModel, request: Any, timeout_ms: int | None) -> Any: ...

    def regress(self, model: LoadedModel, request: Any, timeout_ms: int | None) -> Any: ...

    def get_model_metadata(self, model: LoadedModel, request: Any) -> Any: ...


@dataclass(frozen=True)
class PrometheusEndpoint:
    """``--monitoring_config_file`` with Prometheus enabled: the path and the page it serves."""

    path: str
    render: Callable[[], str]


def create_rest_app(
    manager: ModelProvider,
    executor: Executor,
    *,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    enable_cors: bool = False,
    prometheus: PrometheusEndpoint | None = None,
    on_request: OnRequest | None = None,
    backend: InferenceBackend | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> web.Application:
    """The REST API as an aiohttp application.

    ``timeout_ms`` is ``--rest_api_timeout_in_ms`` (<= 0: no limit); ``enable_cors`` is
    ``--rest_api_enable_cors_support``. ``backend`` defaults to ``tfscachectl.tfserving.inference``.
    """
    if backend is None:
        from tfscachectl.tfserving import inference

        backend = inference
    api = _RestApi(manager, executor, backend, timeout_ms, enable_cors, prometheus, on_request)
    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_route("*", "/{tail:.*}", api.dispatch)
    return app


def _json_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, headers=_JSON_HEADERS)


def _not_found() -> web.Response:
    response = web.Response(
        status=404, body=NOT_FOUND_PAGE, headers={"Content-Type": "text/html", "Connection": "close"}
    )
    response.force_close()
    return response


def _query(target: RestTarget) -> ModelSpecQuery:
    return ModelSpecQuery(name=target.model_name, version=target.version, label=target.label)


def _fill_model_spec(spec: Any, target: RestTarget) -> None:
    """``FillModelSpecWithNameVersionAndLabel``: the spec a gRPC client would have sent."""
    spec.name = target.model_name
    if target.version is not None:
        spec.version.value = target.version
    if target.label is not None:
        spec.version_label = target.label


def _release_when_done(held: HeldModel, future: asyncio.Future[Any]) -> None:
    held.__exit__(None, None, None)
    if not future.cancelled():
        future.exception()  # retrieved: a late failure after a deadline is not an unhandled error


class _RestApi:
    def __init__(
        self,
        manager: ModelProvider,
        executor: Executor,
        backend: InferenceBackend,
        timeout_ms: int,
        enable_cors: bool,
        prometheus: PrometheusEndpoint | None,
        on_request: OnRequest | None,
    ) -> None:
        self._manager = manager
        self._executor = executor
        self._backend = backend
        self._timeout_ms = timeout_ms if timeout_ms > 0 else None
        self._cors = enable_cors
        self._prometheus = prometheus
        self._on_request = on_request

    # ----- dispatch -----------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path
        if self._prometheus is not None and raw_path.split("?", 1)[0] == self._prometheus.path:
            return await self._metrics(raw_path)
        if API_PATH.fullmatch(raw_path) is None:
            return _not_found()
        started = time.monotonic()
        info = ModelInfo(matched=False)
        code = Code.UNKNOWN  # unless the API answers (it may be cancelled, or aiohttp may refuse the body)
        try:
            response, code, info = await self._api(request, raw_path)
        finally:
            if self._on_request is not None:
                self._on_request(info.model_name, info.verb, code, time.monotonic() - started)
        if self._cors:
            response.headers.update(_CORS_HEADERS)
        return response

    async def _api(self, request: web.Request, raw_path: str) -> tuple[web.Response, Code, ModelInfo]:
        method = request.method
        if method == "OPTIONS":
            origin = request.headers.get("Origin", "")
            code = Code.OK if _CORS_ORIGIN.search(origin) else Code.FAILED_PRECONDITION
            return web.Response(status=code.http_status), code, ModelInfo(matched=False)
        info = ModelInfo(matched=False)
        try:
            info = parse_model_info(method, raw_path)
            target = rest_target(method, raw_path, info)
            body = await request.read()
            payload = await self._serve(target, body)
        except ModelInfoError as exc:
            return web.Response(status=exc.code.http_status, headers=_JSON_HEADERS), exc.code, info
        except ServingError as exc:
            return _json_response(exc.code.http_status, json_codec.error_json(exc.message)), exc.code, info
        return _json_response(Code.OK.http_status, payload), Code.OK, info

    async def _serve(self, target: RestTarget, body: bytes) -> bytes:
        try:
            if target.api is RestApi.MODEL_STATUS:
                return self._model_status(target)
            if target.api is RestApi.MODEL_METADATA:
                return await self._model_metadata(target)
            if target.api is RestApi.PREDICT:
                return await self._predict(target, body)
            return await self._classify_or_regress(target, body)
        except (ServingError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("rest_request_failed api=%s model=%s", target.api.value, target.model_name)
            raise ServingError(Code.UNKNOWN, f"{type(exc).__name__}: {exc}") from exc

    async def _metrics(self, raw_path: str) -> web.Response:
        assert self._prometheus is not None
        headers = {"Content-Type": "text/plain"}
        if raw_path != self._prometheus.path:
            text = f"Unexpected path: {raw_path}. Should be {self._prometheus.path}"
            return web.Response(status=Code.INVALID_ARGUMENT.http_status, text=text, headers=headers)
        page = await asyncio.get_running_loop().run_in_executor(self._executor, self._prometheus.render)
        return web.Response(status=200, text=page, headers=headers)

    # ----- running work -------------------------------------------------------------------------

    async def _in_executor(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def _holding(self, held: HeldModel, work: Callable[[], T], deadline: float | None) -> T:
        """Run ``work`` in the executor while ``held`` is kept; release it once the work has finished."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, work)
        future.add_done_callback(functools.partial(_release_when_done, held))
        if deadline is None:
            return await asyncio.shield(future)
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise ServingError(Code.DEADLINE_EXCEEDED, DEADLINE_MESSAGE) from None

    def _deadline(self) -> float | None:
        return None if self._timeout_ms is None else time.monotonic() + self._timeout_ms / 1000

    @staticmethod
    def _remaining_ms(deadline: float | None) -> int | None:
        if deadline is None:
            return None
        return max(int((deadline - time.monotonic()) * 1000), 1)

    # ----- the APIs -----------------------------------------------------------------------------

    def _model_status(self, target: RestTarget) -> bytes:
        from tensorflow_serving.apis import get_model_status_pb2

        statuses = self._manager.model_status(target.model_name, target.version)
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in statuses:
            entry = response.model_version_status.add()
            entry.version = status.version
            entry.state = int(status.state)
            entry.status.error_code = int(status.error_code)
            entry.status.error_message = status.error_message
        return json_codec.model_status_json(response)

    async def _model_metadata(self, target: RestTarget) -> bytes:
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.metadata_field.append(json_codec.SIGNATURE_DEF_FIELD)
        _fill_model_spec(request.model_spec, target)
        held = self._manager.acquire(_query(target))
        model = held.model

        def work() -> bytes:
            return json_codec.model_metadata_json(self._backend.get_model_metadata(model, request))

        return await self._holding(held, work, None)

    async def _predict(self, target: RestTarget, body: bytes) -> bytes:
        deadline = self._deadline()

        def read() -> tuple[JsonObject, Any]:
            from tensorflow_serving.apis import predict_pb2

            document = json_codec.parse_document(body)
            request = predict_pb2.PredictRequest()
            _fill_model_spec(request.model_spec, target)
            request.model_spec.signature_name = json_codec.signature_name(document)
            return document, request

        document, request = await self._in_executor(read)
        held = self._manager.acquire(_query(target))
        model = held.model

        def work() -> bytes:
            name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            signature = model.signatures.get(name)
            if signature is None:
                raise ServingError(
                    Code.INVALID_ARGUMENT, f'Serving signature name: "{name}" not found in signature def'
                )
            fmt = json_codec.fill_predict_request(document, signature.inputs, request)
            response = self._backend.predict(model, request, self._remaining_ms(deadline))
            return json_codec.predict_response_json(response.outputs, fmt)

        return await self._holding(held, work, deadline)

    async def _classify_or_regress(self, target: RestTarget, body: bytes) -> bytes:
        deadline = self._deadline()
        classify = target.api is RestApi.CLASSIFY

        def read() -> Any:
            from tensorflow_serving.apis import classification_pb2, regression_pb2

            document = json_codec.parse_document(body)
            request = (
                classification_pb2.ClassificationRequest() if classify else regression_pb2.RegressionRequest()
            )
            _fill_model_spec(request.model_spec, target)
            request.model_spec.signature_name = json_codec.signature_name(document)
            json_codec.fill_examples(document, request.input)
            return request

        request = await self._in_executor(read)
        held = self._manager.acquire(_query(target))
        model = held.model

        def work() -> bytes:
            timeout = self._remaining_ms(deadline)
            if classify:
                return json_codec.classification_json(self._backend.classify(model, request, timeout).result)
            return json_codec.regression_json(self._backend.regress(model, request, timeout).result)

        return await self._holding(held, work, deadline)
