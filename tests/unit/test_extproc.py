"""The ext_proc server over grpclib's in-memory channel (no socket), with in-memory routers.

Requests are built as Envoy 1.40 sends them (measured): headers as ``raw_value`` bytes, the gRPC model spec
in the ``envoy.filters.http.grpc_field_extraction`` metadata namespace as lists of strings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from envoy_data_plane.envoy.config.core.v3 import (
    HeaderMap,
    HeaderValue,
    HeaderValueOptionHeaderAppendAction,
    Metadata,
)
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    ExternalProcessorAsyncStub,
    HttpBody,
    HttpHeaders,
    ImmediateResponse,
    ProcessingRequest,
    ProcessingResponse,
)
from envoy_data_plane.google.protobuf import Struct
from grpclib.testing import ChannelFor

from tfscachectl.core.requests import ModelApi, ModelRequest, RequestProtocol
from tfscachectl.daemon.extproc import (
    FIELD_EXTRACTION_NAMESPACE,
    ExtProcOptions,
    ExtProcService,
    InMemoryRouter,
    RouteDecision,
)
from tfscachectl.errors import Code, ServingError

REST = RequestProtocol.REST
GRPC = RequestProtocol.GRPC
NODE_A = {REST: "127.0.0.1:8501", GRPC: "127.0.0.1:8500"}
NODE_B = {REST: "127.0.0.1:9501", GRPC: "127.0.0.1:9500"}
OPTIONS = ExtProcOptions(route_timeout_s=5.0, retry_after_s=2)
PREDICT = "/tensorflow.serving.PredictionService/Predict"


def rest_headers(method: str, path: str, **extra: str) -> ProcessingRequest:
    headers = {":method": method, ":path": path, ":scheme": "http", ":authority": "cache", **extra}
    return _request(headers)


def grpc_headers(path: str, fields: Mapping[str, Sequence[str]] | None = None) -> ProcessingRequest:
    headers = {":method": "POST", ":path": path, "content-type": "application/grpc", "te": "trailers"}
    metadata = None
    if fields is not None:
        metadata = Metadata(
            filter_metadata={
                FIELD_EXTRACTION_NAMESPACE: Struct.from_dict({k: list(v) for k, v in fields.items()})
            }
        )
    return _request(headers, metadata)


def _request(headers: Mapping[str, str], metadata: Metadata | None = None) -> ProcessingRequest:
    header_map = HeaderMap(headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in headers.items()])
    return ProcessingRequest(
        request_headers=HttpHeaders(headers=header_map, end_of_stream=False), metadata_context=metadata
    )


def model_spec(name: str, version: str | None = None, label: str | None = None) -> dict[str, list[str]]:
    return {
        "model_spec.name": [name],
        "model_spec.version.value": [version] if version is not None else [],
        "model_spec.version_label": [label] if label is not None else [],
    }


async def exchange(service: ExtProcService, *messages: ProcessingRequest) -> list[ProcessingResponse]:
    async with ChannelFor([service]) as channel:
        stub = ExternalProcessorAsyncStub(channel)
        return [response async for response in stub.process(list(messages))]


def answer(service: ExtProcService, message: ProcessingRequest) -> ProcessingResponse:
    [response] = asyncio.run(exchange(service, message))
    return response


def set_headers(response: ProcessingResponse) -> dict[str, str]:
    assert response.request_headers is not None
    common = response.request_headers.response
    assert common is not None
    assert common.header_mutation is not None
    values = {}
    for option in common.header_mutation.set_headers:
        assert option.header is not None
        assert option.append_action is HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
        values[option.header.key] = option.header.raw_value.decode()
    return values


def immediate(response: ProcessingResponse) -> tuple[int, dict[str, str], bytes, int | None]:
    reply: ImmediateResponse | None = response.immediate_response
    assert reply is not None
    assert reply.status is not None
    headers = {}
    if reply.headers is not None:
        headers = {o.header.key: o.header.raw_value.decode() for o in reply.headers.set_headers if o.header}
    grpc_status = reply.grpc_status.status if reply.grpc_status is not None else None
    return int(reply.status.code), headers, reply.body, grpc_status


class SlowRouter:
    """Answers after ``delay`` seconds (an asyncio sleep: the model is "loading")."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.deadlines: list[float] = []

    async def route(self, request: ModelRequest, deadline: float) -> RouteDecision:
        self.deadlines.append(deadline)
        await asyncio.sleep(self.delay)
        return RouteDecision(NODE_A[request.protocol])


class BrokenRouter:
    """Fails with something that is not a ServingError."""

    async def route(self, request: ModelRequest, deadline: float) -> RouteDecision:
        raise RuntimeError("the router has a bug")


class FailingRouter:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def route(self, request: ModelRequest, deadline: float) -> RouteDecision:
        raise self.error


def service(router: Any = None, options: ExtProcOptions = OPTIONS) -> ExtProcService:
    return ExtProcService(router or InMemoryRouter({"alpha": NODE_A, "beta": NODE_B}), options)


# ----- routed requests ------------------------------------------------------------------------------------


def test_a_rest_request_goes_to_the_node_the_router_chose() -> None:
    router = InMemoryRouter({"alpha": NODE_A, "beta": NODE_B})
    server = service(router)
    response = answer(server, rest_headers("POST", "/v1/models/beta/versions/3:predict"))
    assert set_headers(response) == {"x-tfscache-node": "127.0.0.1:9501", "x-tfscache-model": "beta"}
    assert response.request_headers is not None
    assert response.request_headers.response is not None
    assert response.request_headers.response.clear_route_cache
    assert router.requests == [ModelRequest("beta", 3, None, ModelApi.PREDICT, REST)]
    assert server.counters.requests[REST] == 1
    assert server.counters.routed[REST, "127.0.0.1:9501"] == 1


def test_a_grpc_request_is_read_from_the_extracted_fields() -> None:
    router = InMemoryRouter({"alpha": NODE_A})
    response = answer(service(router), grpc_headers(PREDICT, model_spec("alpha", label="stable")))
    assert set_headers(response) == {"x-tfscache-node": "127.0.0.1:8500", "x-tfscache-model": "alpha"}
    assert router.requests == [ModelRequest("alpha", None, "stable", ModelApi.PREDICT, GRPC)]


def test_the_model_header_is_encoded_when_the_name_needs_it() -> None:
    router = InMemoryRouter({"my model%": NODE_A})
    response = answer(service(router), rest_headers("GET", "/v1/models/my%20model%25"))
    assert set_headers(response)["x-tfscache-model"] == "my%20model%25"


def test_a_slow_router_gets_the_configured_deadline() -> None:
    router = SlowRouter(0.05)
    server = service(router, ExtProcOptions(route_timeout_s=30.0))

    async def scenario() -> tuple[float, list[ProcessingResponse]]:
        started = asyncio.get_running_loop().time()
        return started, await exchange(server, rest_headers("GET", "/v1/models/alpha"))

    started, [response] = asyncio.run(scenario())
    assert set_headers(response)["x-tfscache-node"] == NODE_A[REST]
    [deadline] = router.deadlines
    assert started + 30.0 <= deadline <= started + 31.0


# ----- errors in TF Serving's shape -----------------------------------------------------------------------


def test_an_unknown_model_is_tf_serving_s_404_json() -> None:
    server = service()
    status, headers, body, grpc_status = immediate(
        answer(server, rest_headers("POST", "/v1/models/nope:predict"))
    )
    assert (status, grpc_status) == (404, None)
    assert headers == {"content-type": "application/json"}
    assert body == b'{\n    "error": "Servable not found for request: Latest(nope)"\n}'
    assert json.loads(body) == {"error": "Servable not found for request: Latest(nope)"}
    assert server.counters.errors[REST, Code.NOT_FOUND] == 1


def test_an_unknown_model_over_grpc_is_a_not_found_status() -> None:
    status, headers, body, grpc_status = immediate(
        answer(service(), grpc_headers(PREDICT, model_spec("nope", "7")))
    )
    assert (status, grpc_status) == (200, Code.NOT_FOUND)
    assert body == b"Servable not found for request: Specific(nope, 7)"
    assert "content-type" not in headers


def test_a_malformed_path_is_answered_without_asking_the_router() -> None:
    router = InMemoryRouter({"alpha": NODE_A})
    status, _, body, _ = immediate(answer(service(router), rest_headers("POST", "/v1/models/alpha:explain")))
    assert status == 400
    assert json.loads(body) == {"error": "Malformed request: POST /v1/models/alpha:explain"}
    assert router.requests == []


def test_a_version_that_is_not_int64_gets_an_empty_body() -> None:
    path = "/v1/models/alpha/versions/99999999999999999999:predict"
    status, headers, body, _ = immediate(answer(service(), rest_headers("POST", path)))
    assert (status, body) == (400, b"")
    assert headers == {"content-type": "application/json"}


def test_a_path_outside_the_api_gets_libevent_s_404_page() -> None:
    status, headers, body, _ = immediate(answer(service(), rest_headers("GET", "/index.html")))
    assert status == 404
    assert headers == {"content-type": "text/html"}
    assert body.startswith(b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>")


def test_a_grpc_request_without_a_model_spec() -> None:
    fields = {"model_spec.name": [], "model_spec.version.value": [], "model_spec.version_label": []}
    _, _, body, grpc_status = immediate(answer(service(), grpc_headers(PREDICT, fields)))
    assert (grpc_status, body) == (Code.INVALID_ARGUMENT, b"Missing ModelSpec")


def test_a_grpc_request_without_extraction_metadata_has_no_model_spec() -> None:
    _, _, body, grpc_status = immediate(answer(service(), grpc_headers(PREDICT)))
    assert (grpc_status, body) == (Code.INVALID_ARGUMENT, b"Missing ModelSpec")


@pytest.mark.parametrize(
    ("error", "http_status"),
    [
        (ServingError(Code.FAILED_PRECONDITION, "load failed"), 400),
        (ServingError(Code.RESOURCE_EXHAUSTED, "full"), 429),
        (ServingError(Code.CANCELLED, "gone"), 499),
        (ServingError(Code.UNKNOWN, "1 model(s) did not become available"), 500),
        (ServingError(Code.DEADLINE_EXCEEDED, "late"), 504),
    ],
)
def test_router_errors_keep_tf_serving_s_http_status(error: ServingError, http_status: int) -> None:
    status, headers, body, _ = immediate(
        answer(service(FailingRouter(error)), rest_headers("GET", "/v1/models/a"))
    )
    assert status == http_status
    assert json.loads(body) == {"error": error.message}
    assert "retry-after" not in headers


def test_unavailable_tells_rest_clients_when_to_retry() -> None:
    router = FailingRouter(ServingError(Code.UNAVAILABLE, "Model a is still loading"))
    status, headers, _, _ = immediate(answer(service(router), rest_headers("POST", "/v1/models/a:predict")))
    assert status == 503
    assert headers == {"content-type": "application/json", "retry-after": "2"}


def test_grpc_messages_are_truncated_as_tf_serving_does() -> None:
    router = FailingRouter(ServingError(Code.INTERNAL, "x" * 2000))
    _, _, body, grpc_status = immediate(answer(service(router), grpc_headers(PREDICT, model_spec("a"))))
    assert grpc_status == Code.INTERNAL
    assert body == b"x" * 1024 + b"...TRUNCATED"


def test_a_router_that_breaks_is_answered_internal_and_the_server_goes_on() -> None:
    server = service(BrokenRouter())
    first = answer(server, rest_headers("POST", "/v1/models/a:predict"))
    status, _, body, _ = immediate(first)
    assert status == 500
    assert json.loads(body) == {"error": "tfscache could not route the request"}
    _, _, _, grpc_status = immediate(answer(server, grpc_headers(PREDICT, model_spec("a"))))
    assert grpc_status == Code.INTERNAL
    assert server.counters.router_failures == 2


def test_a_router_past_its_deadline_is_answered_unavailable() -> None:
    server = service(SlowRouter(10.0), ExtProcOptions(route_timeout_s=0.05))
    status, headers, body, _ = immediate(answer(server, rest_headers("GET", "/v1/models/alpha")))
    assert status == 503
    assert headers["retry-after"] == "1"
    assert json.loads(body) == {"error": "Timed out after 0.05 s waiting for model alpha to be ready"}
    assert server.counters.router_timeouts == 1


def test_a_router_s_own_timeout_error_is_a_failure_not_a_deadline() -> None:
    server = service(FailingRouter(TimeoutError("socket timeout")))
    status, _, _, _ = immediate(answer(server, rest_headers("GET", "/v1/models/alpha")))
    assert status == 500
    assert server.counters.router_timeouts == 0
    assert server.counters.router_failures == 1


# ----- the stream -----------------------------------------------------------------------------------------


def test_phases_the_filter_should_not_send_are_continued() -> None:
    body = ProcessingRequest(request_body=HttpBody(body=b"{}", end_of_stream=True))
    headers_response, body_response = asyncio.run(
        exchange(service(), rest_headers("GET", "/v1/models/alpha"), body)
    )
    assert headers_response.request_headers is not None
    assert body_response.request_body is not None
    assert body_response.immediate_response is None


def test_requests_on_many_streams_are_answered_concurrently() -> None:
    router = SlowRouter(0.2)
    server = service(router)

    async def scenario() -> tuple[float, list[list[ProcessingResponse]]]:
        loop = asyncio.get_running_loop()
        async with ChannelFor([server]) as channel:
            stub = ExternalProcessorAsyncStub(channel)

            async def one(name: str) -> list[ProcessingResponse]:
                return [r async for r in stub.process([rest_headers("GET", f"/v1/models/{name}")])]

            started = loop.time()
            answers = await asyncio.gather(*(one(f"m{i}") for i in range(20)))
            return loop.time() - started, answers

    elapsed, answers = asyncio.run(scenario())
    assert all(set_headers(a[0])["x-tfscache-node"] == NODE_A[REST] for a in answers)
    assert elapsed < 2.0  # 20 requests of 0.2 s each, not one after another
    assert server.counters.requests[REST] == 20


def test_route_decisions_must_be_addresses() -> None:
    with pytest.raises(ValueError, match="not a node address"):
        RouteDecision("")
    with pytest.raises(ValueError, match="not a node address"):
        RouteDecision("127.0.0.1:1\r\nx: y")


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="route_timeout_s"):
        ExtProcOptions(route_timeout_s=0)
    with pytest.raises(ValueError, match="retry_after_s"):
        ExtProcOptions(route_timeout_s=1, retry_after_s=-1)
