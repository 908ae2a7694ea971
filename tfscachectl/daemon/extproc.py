"""The daemon's ext_proc server: Envoy asks it where each request on the slow path should go.

One gRPC stream per HTTP request (``envoy.service.ext_proc.v3.ExternalProcessor/Process``). Envoy sends
the request headers only; for gRPC they come with the dynamic metadata of the ``grpc_field_extraction``
filter (namespace :data:`FIELD_EXTRACTION_NAMESPACE`, forwarded by the filter's ``metadata_options``),
which holds the request's ``model_spec`` fields. The server

1. reads the model the request names (:mod:`tfscachectl.core.requests`; REST from ``:method``/``:path``,
   gRPC from ``:path`` and the extracted fields; gRPC is told from REST by its content type, as Envoy does);
2. asks the :class:`RequestRouter` for a node, under a deadline (:attr:`ExtProcOptions.route_timeout_s`);
3. answers CONTINUE with the headers ``x-tfscache-node: <host:port>`` and ``x-tfscache-model: <name>``
   (overwriting any a client sent) and ``clear_route_cache``, or an immediate response in TF Serving's
   shape: REST ``{"error": "..."}`` with TF Serving's HTTP status (``Retry-After`` on 503), gRPC a
   trailers-only response with the status code and message (Envoy puts the body in ``grpc-message``).

A router failure that is not a ServingError is logged and answered INTERNAL: a stream never fails because of
the router, so Envoy never turns it into its own 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from envoy_data_plane.envoy.config.core.v3 import (
    HeaderMap,
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
    Metadata,
)
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    BodyResponse,
    CommonResponse,
    ExternalProcessorBase,
    GrpcStatus,
    HeaderMutation,
    HeadersResponse,
    ImmediateResponse,
    ProcessingRequest,
    ProcessingResponse,
    TrailersResponse,
)
from envoy_data_plane.envoy.type.v3 import HttpStatus, StatusCode
from envoy_data_plane.google.protobuf import Struct

from tfscachectl.core.requests import (
    MODEL_HEADER,
    NODE_HEADER,
    ModelRequest,
    NotAnApiPath,
    RequestProtocol,
    is_grpc,
    model_header_value,
    model_not_found,
    parse_grpc_request,
    parse_rest_request,
)
from tfscachectl.errors import Code, ServingError
from tfscachectl.tfserving.json_codec import error_json
from tfscachectl.tfserving.rest_paths import ModelInfoError
from tfscachectl.tfserving.wire_errors import NOT_FOUND_PAGE, grpc_status_message

log = logging.getLogger(__name__)

#: Where ``grpc_field_extraction`` writes what it extracted (the only namespace it supports).
FIELD_EXTRACTION_NAMESPACE = "envoy.filters.http.grpc_field_extraction"
#: Seconds a client is told to wait before retrying an UNAVAILABLE request, unless configured otherwise.
DEFAULT_RETRY_AFTER_S = 1
_JSON = b"application/json"
_HTML = b"text/html"


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where a request goes: the ``host:port`` of the node's port for the request's protocol (an address
    of the Envoy cluster's endpoints, as the ``override_host`` policy matches it)."""

    node_address: str

    def __post_init__(self) -> None:
        if not self.node_address or not self.node_address.isprintable() or " " in self.node_address:
            raise ValueError(f"not a node address: {self.node_address!r}")


class RequestRouter(Protocol):
    """Chooses the node for a request and makes sure it can serve it (the model is loaded) by ``deadline``.

    ``deadline`` is an absolute time on the event loop's clock (``loop.time()``, i.e. ``time.monotonic()``).
    Raises :class:`~tfscachectl.errors.ServingError` with what the client should see (TF Serving's error
    for an unknown model, a failed load's error, UNAVAILABLE for a load that did not finish in time).
    """

    async def route(self, request: ModelRequest, deadline: float) -> RouteDecision: ...

    def any_node(self, protocol: RequestProtocol) -> RouteDecision | None:
        """A node to send a request that names no model it could load (malformed, no model spec...), so
        that TF Serving answers it in its own words; None to have ext_proc answer it instead."""
        ...


class InMemoryRouter:
    """A :class:`RequestRouter` over a fixed table: model name -> the node's address for each protocol.

    A model not in the table gets TF Serving's answer for an unknown model. Every request it is asked about
    is kept in :attr:`requests`, in order.
    """

    def __init__(self, routes: Mapping[str, Mapping[RequestProtocol, str]]) -> None:
        self._routes = {name: dict(addresses) for name, addresses in routes.items()}
        self.requests: list[ModelRequest] = []

    async def route(self, request: ModelRequest, deadline: float) -> RouteDecision:
        self.requests.append(request)
        addresses = self._routes.get(request.name)
        if addresses is None or request.protocol not in addresses:
            raise model_not_found(request)
        return RouteDecision(addresses[request.protocol])

    def any_node(self, protocol: RequestProtocol) -> RouteDecision | None:
        return None


@dataclass(frozen=True, slots=True)
class ExtProcOptions:
    """How long a request may wait for its node, and what a client is told to wait after a 503."""

    route_timeout_s: float
    retry_after_s: int = DEFAULT_RETRY_AFTER_S

    def __post_init__(self) -> None:
        if not self.route_timeout_s > 0:
            raise ValueError(f"route_timeout_s must be positive, not {self.route_timeout_s!r}")
        if self.retry_after_s < 0:
            raise ValueError(f"retry_after_s must not be negative, not {self.retry_after_s!r}")


@dataclass
class ExtProcCounters:
    """What the server did, for metrics: requests by protocol, routed requests by (protocol, node),
    error answers by (protocol, code), router failures (answered INTERNAL) and router timeouts."""

    requests: Counter[RequestProtocol] = field(default_factory=Counter)
    routed: Counter[tuple[RequestProtocol, str]] = field(default_factory=Counter)
    errors: Counter[tuple[RequestProtocol, Code]] = field(default_factory=Counter)
    router_failures: int = 0
    router_timeouts: int = 0


class ExtProcService(ExternalProcessorBase):
    """The ``ExternalProcessor`` service: a stream per HTTP request, answered by a ``RequestRouter``."""

    def __init__(
        self, router: RequestRouter, options: ExtProcOptions, counters: ExtProcCounters | None = None
    ) -> None:
        self._router = router
        self._options = options
        self.counters = counters if counters is not None else ExtProcCounters()

    async def process(self, messages: AsyncIterator[ProcessingRequest]) -> AsyncIterator[ProcessingResponse]:
        async for message in messages:
            if message.request_headers is not None:
                yield await self._answer_request_headers(message)
            else:
                yield _continue_phase(message)

    async def _answer_request_headers(self, message: ProcessingRequest) -> ProcessingResponse:
        assert message.request_headers is not None
        headers = _header_values(message.request_headers.headers)
        protocol = RequestProtocol.GRPC if is_grpc(headers.get("content-type", "")) else RequestProtocol.REST
        self.counters.requests[protocol] += 1
        path = headers.get(":path", "")
        try:
            request = _model_request(protocol, headers, message.metadata_context)
        except ServingError as exc:
            try:
                fallback = self._router.any_node(protocol)
            except Exception:  # the router is not ours to trust
                log.exception("ext_proc_router_failed protocol=%s path=%r", protocol, path)
                fallback = None
            if fallback is None:
                self.counters.errors[protocol, exc.code] += 1
                return self._error_response(protocol, exc)
            # TF Serving answers what names no model in its own words (and its own order of checks)
            self.counters.routed[protocol, fallback.node_address] += 1
            log.info("ext_proc_unparsed_forwarded protocol=%s path=%r code=%s", protocol, path, exc.code.name)
            return _forwarded(fallback)
        try:
            decision = await self._route(request)
        except ServingError as exc:
            self.counters.errors[protocol, exc.code] += 1
            log.info(
                "ext_proc_refused protocol=%s path=%r code=%s error=%r",
                protocol,
                path,
                exc.code.name,
                exc.message,
            )
            return self._error_response(protocol, exc)
        except Exception:  # the router is not ours to trust: never fail Envoy's stream for it
            self.counters.router_failures += 1
            self.counters.errors[protocol, Code.INTERNAL] += 1
            log.exception("ext_proc_router_failed protocol=%s path=%r", protocol, path)
            error = ServingError(Code.INTERNAL, "tfscache could not route the request")
            return self._error_response(protocol, error)
        self.counters.routed[protocol, decision.node_address] += 1
        log.debug(
            "ext_proc_routed protocol=%s model=%r api=%s node=%s",
            protocol,
            request.name,
            request.api,
            decision.node_address,
        )
        return _routed(request, decision)

    async def _route(self, request: ModelRequest) -> RouteDecision:
        timeout = self._options.route_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout
        scope = asyncio.timeout_at(deadline)
        try:
            async with scope:
                return await self._router.route(request, deadline)
        except TimeoutError:
            if not scope.expired():
                raise
            self.counters.router_timeouts += 1
            raise ServingError(
                Code.UNAVAILABLE,
                f"Timed out after {timeout:g} s waiting for model {request.name} to be ready",
            ) from None

    def _error_response(self, protocol: RequestProtocol, error: ServingError) -> ProcessingResponse:
        if protocol is RequestProtocol.GRPC:
            return _grpc_error(error)
        return _rest_error(error, self._options.retry_after_s)


# ----- reading Envoy's request ----------------------------------------------------------------------------


def _header_values(header_map: HeaderMap | None) -> dict[str, str]:
    """Header name -> value (the first, when repeated); Envoy sends the values as ``raw_value`` bytes."""
    values: dict[str, str] = {}
    if header_map is None:
        return values
    for header in header_map.headers:
        value = header.raw_value.decode("utf-8", "surrogateescape") if header.raw_value else header.value
        values.setdefault(header.key.lower(), value)
    return values


def _extracted_fields(metadata: Metadata | None) -> dict[str, tuple[str, ...]]:
    """The ``grpc_field_extraction`` namespace as field path -> values (each a list of strings)."""
    namespace: Struct | None = (
        None if metadata is None else metadata.filter_metadata.get(FIELD_EXTRACTION_NAMESPACE)
    )
    if namespace is None:
        return {}
    fields: dict[str, tuple[str, ...]] = {}
    for path, value in namespace.fields.items():
        if value.list_value is not None:
            fields[path] = tuple(
                item.string_value for item in value.list_value.values if item.string_value is not None
            )
        elif value.string_value is not None:
            fields[path] = (value.string_value,)
    return fields


def _model_request(
    protocol: RequestProtocol, headers: Mapping[str, str], metadata: Metadata | None
) -> ModelRequest:
    path = headers.get(":path", "")
    if protocol is RequestProtocol.GRPC:
        return parse_grpc_request(path, _extracted_fields(metadata))
    return parse_rest_request(headers.get(":method", ""), path)


# ----- answering Envoy ------------------------------------------------------------------------------------


def _header(key: str, value: str | bytes) -> HeaderValueOption:
    raw = value if isinstance(value, bytes) else value.encode()
    return HeaderValueOption(
        header=HeaderValue(key=key, raw_value=raw),
        append_action=HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def _routed(request: ModelRequest, decision: RouteDecision) -> ProcessingResponse:
    mutation = HeaderMutation(
        set_headers=[
            _header(NODE_HEADER, decision.node_address),
            _header(MODEL_HEADER, model_header_value(request.name)),
        ]
    )
    return ProcessingResponse(
        request_headers=HeadersResponse(
            response=CommonResponse(header_mutation=mutation, clear_route_cache=True)
        )
    )


def _forwarded(decision: RouteDecision) -> ProcessingResponse:
    mutation = HeaderMutation(set_headers=[_header(NODE_HEADER, decision.node_address)])
    return ProcessingResponse(
        request_headers=HeadersResponse(
            response=CommonResponse(header_mutation=mutation, clear_route_cache=True)
        )
    )


def _details(error: ServingError) -> str:
    """``%RESPONSE_CODE_DETAILS%`` in Envoy's access log (no whitespace allowed)."""
    return f"tfscache_{error.code.name.lower()}"


def _grpc_error(error: ServingError) -> ProcessingResponse:
    # Envoy answers a gRPC request locally as trailers-only (HTTP 200, grpc-status) and sends the body,
    # percent-encoded, as grpc-message.
    return ProcessingResponse(
        immediate_response=ImmediateResponse(
            status=HttpStatus(code=StatusCode.OK),
            grpc_status=GrpcStatus(status=int(error.code)),
            body=grpc_status_message(error.message).encode("utf-8", "surrogateescape"),
            details=_details(error),
        )
    )


def _rest_error(error: ServingError, retry_after_s: int) -> ProcessingResponse:
    content_type, body = _JSON, error_json(error.message)
    if isinstance(error, ModelInfoError):
        body = b""  # TF Serving answers a version it cannot parse before writing any body
    elif isinstance(error, NotAnApiPath):
        content_type, body = _HTML, NOT_FOUND_PAGE
    headers = [_header("content-type", content_type)]
    if error.code is Code.UNAVAILABLE:
        headers.append(_header("retry-after", str(retry_after_s)))
    return ProcessingResponse(
        immediate_response=ImmediateResponse(
            status=HttpStatus(code=StatusCode(error.code.http_status)),
            headers=HeaderMutation(set_headers=headers),
            body=body,
            details=_details(error),
        )
    )


def _continue_phase(message: ProcessingRequest) -> ProcessingResponse:
    """CONTINUE for a phase the filter is not configured to send (a configuration this server did not
    expect): the request goes on unchanged."""
    if message.response_headers is not None:
        return ProcessingResponse(response_headers=HeadersResponse())
    if message.request_body is not None:
        return ProcessingResponse(request_body=BodyResponse())
    if message.response_body is not None:
        return ProcessingResponse(response_body=BodyResponse())
    if message.request_trailers is not None:
        return ProcessingResponse(request_trailers=TrailersResponse())
    if message.response_trailers is not None:
        return ProcessingResponse(response_trailers=TrailersResponse())
    return ProcessingResponse()
