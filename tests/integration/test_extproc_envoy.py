"""The ext_proc server behind a real Envoy, routing to two real serving backends.

Envoy runs a static bootstrap written here with what the daemon's xDS resources hold: a REST listener
(ext_proc, router) and a gRPC listener (grpc_field_extraction, ext_proc, router), node clusters whose
``override_host`` policy follows the ``x-tfscache-node`` header (ring hash on ``x-tfscache-model`` as the
fallback). The ext_proc server runs in this process (its event loop in a thread) with a scripted router.

Both backends serve models under the same names from different files, so the answer says which backend
served a request: ``shared`` is half_plus_two (y = x/2 + 2) on A and half_plus_three (y = x/2 + 3) on B;
``multi`` is version 123 on A and version 124 on B.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from tensorflow_serving.apis import (
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)

from tests.harness.envoy import EnvoyProcess
from tests.harness.model_config import ModelConfigEntry
from tests.harness.processes import LOOPBACK, ProcessRegistry, free_port
from tests.harness.serving import ServingBackend
from tfscachectl.core.requests import (
    GRPC_MODEL_METHODS,
    MODEL_HEADER,
    NODE_HEADER,
    ModelApi,
    ModelRequest,
    RequestProtocol,
)
from tfscachectl.daemon.extproc import (
    FIELD_EXTRACTION_NAMESPACE,
    ExtProcOptions,
    ExtProcService,
    InMemoryRouter,
    RouteDecision,
)
from tfscachectl.errors import Code, ServingError
from tfscachectl.modelgen.store import ModelStoreTree

pytestmark = pytest.mark.integration

REST = RequestProtocol.REST
GRPC = RequestProtocol.GRPC
CALL_TIMEOUT_S = 30.0
SERVER_STEP_TIMEOUT_S = 10.0
# Envoy waits this long for each ext_proc answer (its default, 200 ms, would fail any load).
MESSAGE_TIMEOUT_S = 8
ROUTE_TIMEOUT_S = 6.0
SLOW_ROUTE_S = 2.0
ROUTE_CONFIG_TIMEOUT_S = 30

# name on each backend -> the generated model it is served from
BACKEND_A_MODELS = {
    "shared": "half_plus_two",
    "other": "half_plus_two",
    "multi": "half_plus_two",
    "patient": "half_plus_two",
}
BACKEND_B_MODELS = {
    "shared": "half_plus_three",
    "other": "half_plus_three",
    "multi": "half_plus_two_2_versions",
    "patient": "half_plus_three",
}


class ScriptedRouter:
    """Routes by model name (an ``InMemoryRouter``), after a delay for some models, or fails as told."""

    def __init__(
        self,
        routes: Mapping[str, Mapping[RequestProtocol, str]],
        delays: Mapping[str, float],
        errors: Mapping[str, Exception],
    ) -> None:
        self.table = InMemoryRouter(routes)
        self.delays = dict(delays)
        self.errors = dict(errors)

    @property
    def requests(self) -> list[ModelRequest]:
        return self.table.requests

    async def route(self, request: ModelRequest, deadline: float) -> RouteDecision:
        await asyncio.sleep(self.delays.get(request.name, 0.0))
        error = self.errors.get(request.name)
        if error is not None:
            self.table.requests.append(request)
            raise error
        return await self.table.route(request, deadline)

    def any_node(self, protocol: RequestProtocol) -> RouteDecision | None:
        return self.table.any_node(protocol)


class ExtProcThread:
    """The ext_proc server on a loopback port, its event loop running in a thread of this process."""

    def __init__(self, service: ExtProcService, port: int) -> None:
        self.service = service
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ext-proc", daemon=True)
        self.server: Any = None

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(SERVER_STEP_TIMEOUT_S)

    def start(self) -> ExtProcThread:
        from grpclib.server import Server

        async def start() -> Server:
            server = Server([self.service])
            await server.start(LOOPBACK, self.port)
            return server

        self.thread.start()
        self.server = self._run(start())
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self._run(self.server.wait_closed())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(SERVER_STEP_TIMEOUT_S)
        self.loop.close()


def descriptor_set_file(destination: Path) -> Path:
    """TF Serving's gRPC API as a FileDescriptorSet, from the installed pb2 modules' descriptors."""
    from google.protobuf import descriptor_pb2
    from tensorflow_serving.apis import model_service_pb2

    descriptor_set = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(file: Any) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        descriptor_set.file.add().MergeFrom(descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb))

    add(prediction_service_pb2.DESCRIPTOR)
    add(model_service_pb2.DESCRIPTOR)
    destination.write_bytes(descriptor_set.SerializeToString())
    return destination


def _typed(type_name: str, **config: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **config}


def ext_proc_filter() -> dict[str, Any]:
    """The ext_proc filter as the daemon's listeners use it: request headers only, fail closed."""
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": _typed(
            "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            grpc_service={"envoy_grpc": {"cluster_name": "tfscache_ext_proc"}},
            failure_mode_allow=False,
            message_timeout=f"{MESSAGE_TIMEOUT_S}s",
            processing_mode={
                "request_header_mode": "SEND",
                "response_header_mode": "SKIP",
                "request_body_mode": "NONE",
                "response_body_mode": "NONE",
                "request_trailer_mode": "SKIP",
                "response_trailer_mode": "SKIP",
            },
            metadata_options={"forwarding_namespaces": {"untyped": [FIELD_EXTRACTION_NAMESPACE]}},
        ),
    }


def field_extraction_filter(descriptors: Path) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.grpc_field_extraction",
        "typed_config": _typed(
            "envoy.extensions.filters.http.grpc_field_extraction.v3.GrpcFieldExtractionConfig",
            descriptor_set={"filename": str(descriptors)},
            extractions_by_method={
                method: {"request_field_extractions": {path: {} for path in spec.extracted_fields}}
                for method, spec in GRPC_MODEL_METHODS.items()
            },
        ),
    }


def router_filter() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
    }


def listener(name: str, port: int, codec: str, cluster: str, filters: list[dict[str, Any]]) -> dict[str, Any]:
    route = {
        "cluster": cluster,
        "timeout": f"{ROUTE_CONFIG_TIMEOUT_S}s",
        "hash_policy": [{"header": {"header_name": MODEL_HEADER}}],
    }
    manager = _typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix=name,
        codec_type=codec,
        route_config={
            "name": name,
            "virtual_hosts": [
                {"name": name, "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": route}]}
            ],
        },
        http_filters=filters,
    )
    return {
        "name": name,
        "address": {"socket_address": {"address": LOOPBACK, "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def _http2() -> dict[str, Any]:
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            explicit_http_config={"http2_protocol_options": {}},
        )
    }


def cluster(name: str, addresses: list[str], http2: bool, override_host: bool) -> dict[str, Any]:
    endpoints = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        endpoints.append(
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}
        )
    config: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
    }
    if http2:
        config["typed_extension_protocol_options"] = _http2()
    if override_host:
        ring_hash = {
            "typed_extension_config": {
                "name": "envoy.load_balancing_policies.ring_hash",
                "typed_config": _typed("envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash"),
            }
        }
        config["load_balancing_policy"] = {
            "policies": [
                {
                    "typed_extension_config": {
                        "name": "envoy.load_balancing_policies.override_host",
                        "typed_config": _typed(
                            "envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost",
                            override_host_sources=[{"header": NODE_HEADER}],
                            fallback_policy={"policies": [ring_hash]},
                        ),
                    }
                }
            ]
        }
    return config


class Stack:
    """Envoy's client-facing addresses, the two backends, and the router behind the ext_proc server."""

    def __init__(
        self,
        envoy: EnvoyProcess,
        rest_port: int,
        grpc_port: int,
        a: ServingBackend,
        b: ServingBackend,
        router: ScriptedRouter,
        service: ExtProcService,
    ) -> None:
        self.envoy = envoy
        self.rest_url = f"http://{LOOPBACK}:{rest_port}"
        self.a = a
        self.b = b
        self.router = router
        self.service = service
        self.http = httpx.Client(base_url=self.rest_url, timeout=CALL_TIMEOUT_S)
        self.channel = grpc.insecure_channel(f"{LOOPBACK}:{grpc_port}")
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self) -> None:
        self.http.close()
        self.channel.close()


@pytest.fixture(scope="module")
def stack(
    module_processes: ProcessRegistry,
    generated_models: ModelStoreTree,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("extproc-envoy")
    backends = []
    for label, models in (("a", BACKEND_A_MODELS), ("b", BACKEND_B_MODELS)):
        entries = [
            ModelConfigEntry(name, generated_models.base_path(source)) for name, source in models.items()
        ]
        backends.append(
            ServingBackend.with_models(
                module_processes, work / label, entries, name=f"serving-{label}"
            ).start()
        )
    a, b = backends
    node_a = {REST: f"{LOOPBACK}:{a.rest_port}", GRPC: a.grpc_target}
    node_b = {REST: f"{LOOPBACK}:{b.rest_port}", GRPC: b.grpc_target}
    router = ScriptedRouter(
        routes={"shared": node_b, "other": node_a, "multi": node_b, "patient": node_b},
        delays={"patient": SLOW_ROUTE_S},
        errors={
            "loading": ServingError(Code.UNAVAILABLE, "Model loading is still loading"),
            "buggy": RuntimeError("a bug in the router"),
        },
    )
    service = ExtProcService(router, ExtProcOptions(route_timeout_s=ROUTE_TIMEOUT_S, retry_after_s=3))
    ext_proc = ExtProcThread(service, free_port()).start()
    try:
        rest_port, grpc_port = free_port(), free_port()
        bootstrap = {
            "static_resources": {
                "listeners": [
                    listener(
                        "tfscache_rest",
                        rest_port,
                        "AUTO",
                        "tfscache_nodes_rest",
                        [ext_proc_filter(), router_filter()],
                    ),
                    listener(
                        "tfscache_grpc",
                        grpc_port,
                        "HTTP2",
                        "tfscache_nodes_grpc",
                        [
                            field_extraction_filter(descriptor_set_file(work / "tfserving.pb")),
                            ext_proc_filter(),
                            router_filter(),
                        ],
                    ),
                ],
                "clusters": [
                    cluster(
                        "tfscache_ext_proc", [f"{LOOPBACK}:{ext_proc.port}"], http2=True, override_host=False
                    ),
                    cluster(
                        "tfscache_nodes_rest", [node_a[REST], node_b[REST]], http2=False, override_host=True
                    ),
                    cluster(
                        "tfscache_nodes_grpc", [node_a[GRPC], node_b[GRPC]], http2=True, override_host=True
                    ),
                ],
            }
        }
        envoy = EnvoyProcess(module_processes, bootstrap, work / "envoy", name="envoy").start()
        stack = Stack(envoy, rest_port, grpc_port, a, b, router, service)
        yield stack
        stack.close()
        envoy.stop()
    finally:
        ext_proc.stop()


def tensor(values: Any) -> Any:
    import tensorflow as tf

    return tf.make_tensor_proto(np.asarray(values, dtype=np.float32))


def predict_request(name: str, version: int | None = None, label: str | None = None) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tensor([1.0]))
    return request


def rpc_error(call: Any, request: Any, **options: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=CALL_TIMEOUT_S, **options)
    return caught.value


# ----- routed requests ------------------------------------------------------------------------------------


def test_a_rest_predict_reaches_the_node_the_router_chose(stack: Stack) -> None:
    shared = stack.http.post("/v1/models/shared:predict", json={"instances": [1.0]})
    assert shared.status_code == 200, shared.text
    assert shared.json() == {"predictions": [3.5]}  # half_plus_three: backend B
    other = stack.http.post("/v1/models/other/versions/123:predict", json={"instances": [1.0]})
    assert other.json() == {"predictions": [2.5]}  # half_plus_two: backend A
    assert ModelRequest("other", 123, None, ModelApi.PREDICT, REST) in stack.router.requests


def test_a_client_cannot_pick_the_node_itself(stack: Stack) -> None:
    a_rest = f"{LOOPBACK}:{stack.a.rest_port}"
    response = stack.http.post(
        "/v1/models/shared:predict", json={"instances": [1.0]}, headers={NODE_HEADER: a_rest}
    )
    assert response.json() == {"predictions": [3.5]}
    reply = stack.predict.Predict(
        predict_request("shared"), timeout=CALL_TIMEOUT_S, metadata=((NODE_HEADER, stack.a.grpc_target),)
    )
    assert list(reply.outputs["y"].float_val) == [3.5]


def test_a_rest_status_request_is_routed_too(stack: Stack) -> None:
    status = stack.http.get("/v1/models/multi")
    assert status.status_code == 200
    assert [v["version"] for v in status.json()["model_version_status"]] == ["124"]  # backend B


def test_a_grpc_predict_reaches_the_node_the_router_chose(stack: Stack) -> None:
    shared = stack.predict.Predict(predict_request("shared", version=123), timeout=CALL_TIMEOUT_S)
    assert list(shared.outputs["y"].float_val) == [3.5]  # backend B
    assert shared.model_spec.version.value == 123
    other = stack.predict.Predict(predict_request("other"), timeout=CALL_TIMEOUT_S)
    assert list(other.outputs["y"].float_val) == [2.5]  # backend A
    assert ModelRequest("shared", 123, None, ModelApi.PREDICT, GRPC) in stack.router.requests


def test_grpc_model_status_is_routed_by_its_model_spec(stack: Stack) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "multi"
    reply = stack.models.GetModelStatus(request, timeout=CALL_TIMEOUT_S)
    assert [s.version for s in reply.model_version_status] == [124]  # backend B
    assert ModelRequest("multi", None, None, ModelApi.STATUS, GRPC) in stack.router.requests


def test_multi_inference_is_routed_by_its_first_task(stack: Stack) -> None:
    request = inference_pb2.MultiInferenceRequest()
    task = request.tasks.add()
    task.model_spec.name = "multi"
    task.model_spec.signature_name = "regress_x_to_y"
    task.method_name = "tensorflow/serving/regress"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(80.0)
    reply = stack.predict.MultiInference(request, timeout=CALL_TIMEOUT_S)
    [result] = reply.results
    assert result.model_spec.version.value == 124  # backend B
    assert [r.value for r in result.regression_result.regressions] == [42.0]
    assert ModelRequest("multi", None, None, ModelApi.MULTI_INFERENCE, GRPC) in stack.router.requests


def test_a_slow_router_still_succeeds(stack: Stack) -> None:
    rest = stack.http.post("/v1/models/patient:predict", json={"instances": [1.0]})
    assert rest.json() == {"predictions": [3.5]}
    reply = stack.predict.Predict(predict_request("patient"), timeout=CALL_TIMEOUT_S)
    assert list(reply.outputs["y"].float_val) == [3.5]


# ----- errors in TF Serving's shape -----------------------------------------------------------------------


def test_router_errors_are_tf_serving_rest_errors(stack: Stack) -> None:
    unknown = stack.http.post("/v1/models/unknown:predict", json={"instances": [1.0]})
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/json"
    assert unknown.content == b'{\n    "error": "Servable not found for request: Latest(unknown)"\n}'

    status = stack.http.get("/v1/models/unknown/versions/3")
    assert (status.status_code, status.json()) == (
        404,
        {"error": "Could not find version 3 of model unknown"},
    )

    loading = stack.http.post("/v1/models/loading:predict", json={"instances": [1.0]})
    assert loading.status_code == 503
    assert loading.headers["retry-after"] == "3"
    assert loading.json() == {"error": "Model loading is still loading"}

    buggy = stack.http.get("/v1/models/buggy")
    assert (buggy.status_code, buggy.json()) == (500, {"error": "tfscache could not route the request"})


def test_malformed_rest_paths_are_answered_by_the_cache(stack: Stack) -> None:
    malformed = stack.http.post("/v1/models/shared:explain", json={})
    assert malformed.status_code == 400
    assert malformed.json() == {"error": "Malformed request: POST /v1/models/shared:explain"}
    outside = stack.http.get("/index.html")
    assert outside.status_code == 404
    assert outside.headers["content-type"] == "text/html"


def test_router_errors_are_grpc_statuses(stack: Stack) -> None:
    unknown = rpc_error(stack.predict.Predict, predict_request("unknown", version=7))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    assert unknown.details() == "Servable not found for request: Specific(unknown, 7)"

    loading = rpc_error(stack.predict.Predict, predict_request("loading"))
    assert (loading.code(), loading.details()) == (
        grpc.StatusCode.UNAVAILABLE,
        "Model loading is still loading",
    )

    buggy = rpc_error(stack.predict.Predict, predict_request("buggy"))
    assert (buggy.code(), buggy.details()) == (
        grpc.StatusCode.INTERNAL,
        "tfscache could not route the request",
    )

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "unknown"
    missing = rpc_error(stack.models.GetModelStatus, status)
    assert (missing.code(), missing.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model unknown",
    )


def test_grpc_requests_without_a_model_get_tf_serving_errors(stack: Stack) -> None:
    no_spec = rpc_error(stack.predict.Predict, predict_pb2.PredictRequest())
    assert (no_spec.code(), no_spec.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")

    unnamed = predict_pb2.PredictRequest()
    unnamed.model_spec.signature_name = "serving_default"
    no_name = rpc_error(stack.predict.Predict, unnamed)
    assert (no_name.code(), no_name.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ModelSpec has no name specified.",
    )

    no_tasks = rpc_error(stack.predict.MultiInference, inference_pb2.MultiInferenceRequest())
    assert no_tasks.details() == "MultiInferenceRequest must contain at least one task."


def test_the_counters_count_requests_and_decisions(stack: Stack) -> None:
    counters = stack.service.counters
    before = (
        counters.requests[REST],
        counters.routed[GRPC, stack.b.grpc_target],
        counters.errors[REST, Code.NOT_FOUND],
    )
    stack.http.get("/v1/models/unknown")
    stack.predict.Predict(predict_request("shared"), timeout=CALL_TIMEOUT_S)
    after = (
        counters.requests[REST],
        counters.routed[GRPC, stack.b.grpc_target],
        counters.errors[REST, Code.NOT_FOUND],
    )
    assert after == (before[0] + 1, before[1] + 1, before[2] + 1)
