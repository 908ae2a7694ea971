"""The gRPC model-key module (``envoy/modules/grpc_model_key.c``) in a real Envoy 1.40.

One Envoy per module of tests: an HTTP/2 listener whose chain is [the module, router], and a route
configuration whose virtual host finds its route with a matcher (an exact map on the ``tfscache.model_key``
filter state, as the daemon's fast path does). Every route answers at once (``direct_response``) as a gRPC
trailers-only reply naming itself (``x-route``, and ``grpc-message: route=...``) and showing the key the
module wrote (``x-key``, Envoy's ``%FILTER_STATE(...)%``), so a test sees both the route the matcher chose
and the exact key. Requests come from the real ``tensorflow_serving.apis`` stubs, and from a raw HTTP/2
client (``h2``) where a test needs malformed bodies, chosen DATA frame sizes or trailers.

The expected key is the one tfscache's Python side computes (``FastKey.grpc_key``) from the message as the
``tensorflow_serving`` protobuf classes parse it (:func:`reference_key`).
"""

from __future__ import annotations

import copy
import os
import random
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.harness import (
    LOOPBACK,
    EnvoyProcess,
    ProcessRegistry,
    free_port,
    port_accepts,
    wait_until,
    write_bootstrap,
)
from tests.harness.binaries import envoy_binary
from tfscachectl.envoy_launcher import envoy_file
from tfscachectl.envoy_module import CFLAGS, MODULE_DIR_ENV, MODULE_SOURCE, grpc_key_module
from xds import wire
from xds.fastpath import MODEL_KEY_STATE, MODULE_FILTER_NAME, FastKey, routable

pytestmark = pytest.mark.integration

RPC_TIMEOUT_S = 10.0
SOCKET_TIMEOUT_S = 10.0
LISTENER_READY_TIMEOUT_S = 10.0
ENVOY_VALIDATE_TIMEOUT_S = 60.0
COMPILE_TIMEOUT_S = 120.0
#: The body buffer limit of the test listener's streams (small, so a message too large to hold is cheap).
BUFFER_LIMIT = 64 * 1024
MAX_NAME_CHARS = 255

PREDICTION_SERVICE = "/tensorflow.serving.PredictionService"
PREDICT_PATH = f"{PREDICTION_SERVICE}/Predict"
MODEL_PATHS = (
    PREDICT_PATH,
    f"{PREDICTION_SERVICE}/Classify",
    f"{PREDICTION_SERVICE}/Regress",
    f"{PREDICTION_SERVICE}/GetModelMetadata",
    "/tensorflow.serving.ModelService/GetModelStatus",
)
GRPC_CONTENT_TYPE = "application/grpc"
DEFAULT_ROUTE = "default"
LONGEST_NAME = "n" * MAX_NAME_CHARS
#: The keys with a route of their own (the fast path's resident models).
ROUTED_KEYS = (
    FastKey("model-a"),
    FastKey("model-a", 7),
    FastKey("Model_B.v2"),
    FastKey("later"),
    FastKey("later", 3),
    FastKey(LONGEST_NAME),
)

_TYPES = "type.googleapis.com/envoy.extensions.filters"
_FILTER_STATE_INPUT = (
    "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.FilterStateInput"
)


# ----- Envoy ---------------------------------------------------------------------------------------------


def _route(name: str) -> dict[str, Any]:
    """A matcher action: a route answering a trailers-only gRPC reply that names it and shows the key."""
    headers = {
        "content-type": GRPC_CONTENT_TYPE,
        "grpc-status": str(grpc.StatusCode.NOT_FOUND.value[0]),
        "grpc-message": f"route={name}",
        "x-route": name,
        "x-key": f"%FILTER_STATE({MODEL_KEY_STATE}:PLAIN)%",
    }
    return {
        "action": {
            "name": "route",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.route.v3.Route",
                "name": name,
                "match": {"prefix": "/"},
                "direct_response": {"status": 200},
                "response_headers_to_add": [
                    {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                    for key, value in headers.items()
                ],
            },
        }
    }


def bootstrap(module: Path, port: int, buffered_port: int) -> dict[str, Any]:
    """A static Envoy: the listener on ``port`` with [the module, router] and the model-key matcher; the one
    on ``buffered_port`` has Envoy's buffer filter first (the module then receives the whole body at once,
    as the stream's buffered body)."""
    module_filter = {
        "name": "tfscache.grpc_model_key",
        "typed_config": {
            "@type": f"{_TYPES}.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {"module": {"local": {"filename": str(module)}}, "do_not_close": True},
            "filter_name": MODULE_FILTER_NAME,
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": MODEL_KEY_STATE,
            },
        },
    }
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": f"{_TYPES}.http.router.v3.Router"},
    }
    state_input = {
        "name": "model_key",
        "typed_config": {
            "@type": _FILTER_STATE_INPUT,
            "key": MODEL_KEY_STATE,
        },
    }
    matcher = {
        "matcher_tree": {
            "input": state_input,
            "exact_match_map": {"map": {key.grpc_key: _route(key.grpc_key) for key in ROUTED_KEYS}},
        },
        "on_no_match": _route(DEFAULT_ROUTE),
    }
    buffer = {
        "name": "envoy.filters.http.buffer",
        "typed_config": {"@type": f"{_TYPES}.http.buffer.v3.Buffer", "max_request_bytes": BUFFER_LIMIT},
    }

    def listener(name: str, listener_port: int, filters: list[dict[str, Any]]) -> dict[str, Any]:
        manager = {
            "@type": f"{_TYPES}.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "codec_type": "HTTP2",
            # An HTTP/2 stream's body buffer limit is its window (Envoy's default: 16 MiB).
            "http2_protocol_options": {"initial_stream_window_size": BUFFER_LIMIT},
            "http_filters": filters,
            "route_config": {"virtual_hosts": [{"name": "models", "domains": ["*"], "matcher": matcher}]},
        }
        return {
            "name": name,
            "address": {"socket_address": {"address": LOOPBACK, "port_value": listener_port}},
            "filter_chains": [
                {
                    "filters": [
                        {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
                    ]
                }
            ],
        }

    return {
        "static_resources": {
            "listeners": [
                listener("grpc", port, [module_filter, router]),
                listener("grpc_buffered", buffered_port, [buffer, module_filter, router]),
            ]
        }
    }


@dataclass
class ModuleEnvoy:
    envoy: EnvoyProcess
    port: int
    buffered_port: int

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def assert_alive(self) -> None:
        assert self.envoy.process.running, self.envoy.process.describe()
        assert self.envoy.live()


@pytest.fixture(scope="module")
def module_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module as the product builds it (``grpc_key_module``), into this run's own cache directory."""
    built = grpc_key_module({**os.environ, MODULE_DIR_ENV: str(tmp_path_factory.mktemp("envoy-modules"))})
    if built is None:
        pytest.skip("the model-key module cannot be built here (no C compiler)")
    return built


@pytest.fixture(scope="module")
def module_envoy(
    module_processes: ProcessRegistry, module_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> ModuleEnvoy:
    port, buffered_port = free_port(), free_port()
    config = bootstrap(module_path, port, buffered_port)
    envoy = EnvoyProcess(
        module_processes, config, tmp_path_factory.mktemp("envoy"), log_level="warning"
    ).start()
    for listener_port in (port, buffered_port):
        wait_until(
            lambda: port_accepts(listener_port),  # noqa: B023 (awaited here)
            LISTENER_READY_TIMEOUT_S,
            "Envoy's gRPC listeners",
            process=envoy.process,
        )
    return ModuleEnvoy(envoy, port, buffered_port)


# ----- The expected key ----------------------------------------------------------------------------------


def reference_key(message: bytes) -> str | None:
    """The key for a request message as tfscache's Python side sees it (None: no fast-path key).

    Raises ``DecodeError`` where the protobuf classes refuse the message.
    """
    request = predict_pb2.PredictRequest.FromString(message)
    if not request.HasField("model_spec"):
        return None
    spec = request.model_spec
    if not 1 <= len(spec.name) <= MAX_NAME_CHARS or not routable(spec.name):
        return None
    choice = spec.WhichOneof("version_choice")
    if choice == "version_label" and spec.version_label:
        return None
    if choice == "version":
        if spec.version.value < 1:
            return None
        return FastKey(spec.name, spec.version.value).grpc_key
    return FastKey(spec.name).grpc_key


# ----- Protobuf and gRPC framing by hand (for messages the classes would not write) ----------------------


def varint(value: int) -> bytes:
    """``value`` as protobuf writes it: a negative int64 as its 64-bit two's complement."""
    return wire.varint(value & ((1 << 64) - 1))


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def int_field(number: int, value: int) -> bytes:
    return tag(number, 0) + varint(value)


def spec(
    name: str | None = None, version: int | None = None, label: str | None = None, *extra: bytes
) -> bytes:
    """A ``model_spec`` field (top-level field 1) holding the given ModelSpec fields, in this order."""
    body = b""
    if name is not None:
        body += length_delimited(1, name.encode())
    if version is not None:
        body += length_delimited(2, int_field(1, version))
    if label is not None:
        body += length_delimited(4, label.encode())
    return length_delimited(1, body + b"".join(extra))


def frame(message: bytes, *, compressed: bool = False, length: int | None = None) -> bytes:
    """One gRPC length-prefixed message."""
    return struct.pack(">BI", int(compressed), len(message) if length is None else length) + message


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# ----- A raw HTTP/2 client -------------------------------------------------------------------------------


@dataclass
class Answer:
    headers: dict[str, str]
    reset: bool = False

    @property
    def route(self) -> str | None:
        return self.headers.get("x-route")

    @property
    def key(self) -> str | None:
        """The key the module wrote (None when it wrote none)."""
        value = self.headers.get("x-key", "")
        return value if value and value != "-" else None


@dataclass
class RawClient:
    """One HTTP/2 connection; each request is a new stream whose DATA frames are exactly the given chunks."""

    address: tuple[str, int]
    sock: socket.socket = field(init=False)
    conn: h2.connection.H2Connection = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=SOCKET_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        self._flush()
        self._answers: dict[int, Answer] = {}
        self._ended: set[int] = set()

    def close(self) -> None:
        self.conn.close_connection()
        self._flush()
        self.sock.close()

    def request(
        self,
        chunks: Sequence[bytes],
        *,
        path: str = PREDICT_PATH,
        content_type: str = GRPC_CONTENT_TYPE,
        end_stream: bool = True,
        trailers: bool = False,
    ) -> Answer:
        """Sends the headers, one DATA frame per chunk (the last one ending the stream, unless
        ``end_stream`` is false or ``trailers`` follow), and waits for the answer."""
        stream = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "models"),
            (":path", path),
            ("content-type", content_type),
            ("te", "trailers"),
        ]
        self.conn.send_headers(stream, headers, end_stream=not chunks and end_stream and not trailers)
        self._flush()
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1 and end_stream and not trailers
            if not self._send_data(stream, chunk, last):
                break
        if trailers and stream not in self._ended:
            self.conn.send_headers(stream, [("x-trailer", "1")], end_stream=True)
            self._flush()
        while stream not in self._ended:
            self._receive()
        return self._answers[stream]

    def _send_data(self, stream: int, chunk: bytes, end_stream: bool) -> bool:
        """One DATA frame, once flow control allows it; false when the stream was answered first."""
        while self.conn.local_flow_control_window(stream) < len(chunk):
            if stream in self._ended:
                return False
            self._receive()
        if stream in self._ended:
            return False
        try:
            self.conn.send_data(stream, chunk, end_stream=end_stream)
        except h2.exceptions.StreamClosedError:
            return False
        self._flush()
        return True

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("Envoy closed the connection")
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                answer = self._answers.setdefault(event.stream_id, Answer({}))
                answer.headers.update({str(k): str(v) for k, v in event.headers})
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._answers.setdefault(event.stream_id, Answer({})).reset = True
                self._ended.add(event.stream_id)
        self._flush()


@pytest.fixture
def raw(module_envoy: ModuleEnvoy) -> Iterator[RawClient]:
    client = RawClient((LOOPBACK, module_envoy.port))
    yield client
    client.close()


def assert_routed(answer: Answer, key: FastKey) -> None:
    assert answer.headers.get(":status") == "200", answer
    assert (answer.key, answer.route) == (key.grpc_key, key.grpc_key)


def assert_default(answer: Answer) -> None:
    """The request took the default route and the module wrote no key."""
    assert answer.headers.get(":status") == "200", answer
    assert (answer.key, answer.route) == (None, DEFAULT_ROUTE)


# ----- Building --------------------------------------------------------------------------------------------


def test_module_compiles_without_warnings(tmp_path: Path) -> None:
    source = envoy_file(MODULE_SOURCE)
    try:
        result = subprocess.run(
            ["cc", *CFLAGS, "-Werror", "-Wpedantic", "-o", str(tmp_path / "module.so"), str(source)],
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no C compiler (cc)")
    assert result.returncode == 0, result.stderr


# ----- Real gRPC clients ---------------------------------------------------------------------------------


def _predict(stubs: Stubs, request_spec: Callable[[Any], None]) -> None:
    request = predict_pb2.PredictRequest()
    request_spec(request.model_spec)
    stubs.predictions.Predict(request, timeout=RPC_TIMEOUT_S)


def _classify(stubs: Stubs, request_spec: Callable[[Any], None]) -> None:
    request = classification_pb2.ClassificationRequest()
    request_spec(request.model_spec)
    request.input.example_list.examples.add()
    stubs.predictions.Classify(request, timeout=RPC_TIMEOUT_S)


def _regress(stubs: Stubs, request_spec: Callable[[Any], None]) -> None:
    request = regression_pb2.RegressionRequest()
    request_spec(request.model_spec)
    request.input.example_list.examples.add()
    stubs.predictions.Regress(request, timeout=RPC_TIMEOUT_S)


def _metadata(stubs: Stubs, request_spec: Callable[[Any], None]) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request_spec(request.model_spec)
    stubs.predictions.GetModelMetadata(request, timeout=RPC_TIMEOUT_S)


def _status(stubs: Stubs, request_spec: Callable[[Any], None]) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request_spec(request.model_spec)
    stubs.models.GetModelStatus(request, timeout=RPC_TIMEOUT_S)


CALLS = {
    "Predict": _predict,
    "Classify": _classify,
    "Regress": _regress,
    "GetModelMetadata": _metadata,
    "GetModelStatus": _status,
}


@dataclass
class Stubs:
    channel: grpc.Channel
    predictions: prediction_service_pb2_grpc.PredictionServiceStub
    models: model_service_pb2_grpc.ModelServiceStub

    def call(self, method: str, request_spec: Callable[[Any], None]) -> tuple[str | None, str | None]:
        """(route, key) of the answer to ``method`` with a model spec set by ``request_spec``."""
        with pytest.raises(grpc.RpcError) as caught:
            CALLS[method](self, request_spec)
        error = caught.value
        assert isinstance(error, grpc.Call)
        assert error.code() == grpc.StatusCode.NOT_FOUND, error
        metadata = dict(error.trailing_metadata() or ())
        key = metadata.get("x-key") or None
        return metadata.get("x-route"), None if key == "-" else key


@pytest.fixture(scope="module")
def stubs(module_envoy: ModuleEnvoy) -> Iterator[Stubs]:
    channel = grpc.insecure_channel(module_envoy.target)
    yield Stubs(
        channel,
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()


def _named(name: str, version: int | None = None, label: str | None = None) -> Callable[[Any], None]:
    def fill(model_spec: Any) -> None:
        model_spec.name = name
        model_spec.signature_name = "serving_default"
        if version is not None:
            model_spec.version.value = version
        if label is not None:
            model_spec.version_label = label

    return fill


@pytest.mark.parametrize("method", CALLS)
@pytest.mark.parametrize("key", [FastKey("model-a"), FastKey("model-a", 7)], ids=["name", "name+version"])
def test_each_method_routes_by_its_model_spec(stubs: Stubs, method: str, key: FastKey) -> None:
    assert stubs.call(method, _named(key.name, key.version)) == (key.grpc_key, key.grpc_key)


@pytest.mark.parametrize("method", CALLS)
def test_a_version_label_takes_the_default_route(stubs: Stubs, method: str) -> None:
    assert stubs.call(method, _named("model-a", label="stable")) == (DEFAULT_ROUTE, None)


@pytest.mark.parametrize(
    "fill",
    [
        _named("model-a", version=0),
        _named("model-a", version=-7),
        _named("bad name"),
        _named("model/a"),
        _named("módel"),
        _named(""),
        _named("n" * (MAX_NAME_CHARS + 1)),
    ],
    ids=[
        "version-0",
        "negative-version",
        "space",
        "slash",
        "non-ascii",
        "empty",
        "too-long",
    ],
)
def test_specs_without_a_fast_path_key_take_the_default_route(
    stubs: Stubs, fill: Callable[[Any], None]
) -> None:
    assert stubs.call("Predict", fill) == (DEFAULT_ROUTE, None)


def test_an_empty_version_message_is_version_zero(stubs: Stubs) -> None:
    def fill(model_spec: Any) -> None:
        model_spec.name = "model-a"
        model_spec.version.SetInParent()

    assert stubs.call("Predict", fill) == (DEFAULT_ROUTE, None)


def test_the_longest_name_is_routed(stubs: Stubs) -> None:
    key = FastKey(LONGEST_NAME, None)
    assert stubs.call("GetModelStatus", _named(LONGEST_NAME)) == (key.grpc_key, key.grpc_key)


def test_a_request_without_model_spec_takes_the_default_route(stubs: Stubs) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stubs.predictions.Predict(predict_pb2.PredictRequest(), timeout=RPC_TIMEOUT_S)
    metadata = dict(caught.value.trailing_metadata() or ())
    assert metadata.get("x-route") == DEFAULT_ROUTE


def test_multi_inference_is_not_read(stubs: Stubs, raw: RawClient) -> None:
    # MultiInferenceRequest.tasks (field 1) holds InferenceTask, whose field 1 is a model_spec.
    task = spec("model-a")
    message = length_delimited(1, task)
    assert_default(raw.request([frame(message)], path=f"{PREDICTION_SERVICE}/MultiInference"))


# ----- Merge rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # model_spec repeated: the messages merge, later scalars win.
        (spec("model-a") + spec("later"), FastKey("later")),
        (spec("model-a", 3) + spec("later"), FastKey("later", 3)),
        (spec("later", 7) + spec(None, 3), FastKey("later", 3)),
        (spec("model-a") + spec(""), None),
        # version and version_label are a oneof: the last one set wins.
        (spec("later", 3) + spec(None, None, "stable"), None),
        (spec("later", None, "stable") + spec(None, 3), FastKey("later", 3)),
        (spec("later", 3, ""), FastKey("later")),
        (spec("later", 3) + spec(None, None, "x") + length_delimited(1, length_delimited(2, b"")), None),
        # Fields before the model spec, between occurrences, and unknown fields in the spec.
        (length_delimited(2, b"\x0a\x01x") + length_delimited(3, b"out") + spec("later"), FastKey("later")),
        (int_field(700, 5) + spec("later") + tag(701, 5) + b"abcd" + spec(None, 3), FastKey("later", 3)),
        (
            spec("later", 3, None, length_delimited(3, b"sig"), tag(9, 1) + b"12345678", int_field(10, 1)),
            FastKey("later", 3),
        ),
        (spec("Model_B.v2", None, None, length_delimited(3, b"serving_default")), FastKey("Model_B.v2")),
        (
            spec("model-a", None, None, length_delimited(2, int_field(1, 7) + int_field(2, 1))),
            FastKey("model-a", 7),
        ),
    ],
    ids=[
        "later-name-wins",
        "version-merges",
        "later-version-wins",
        "later-empty-name-wins",
        "label-clears-version",
        "version-clears-label",
        "empty-label-clears-version",
        "version-after-label-starts-afresh",
        "fields-before-spec",
        "fields-between-specs",
        "unknown-fields-in-spec",
        "signature-name",
        "unknown-field-in-version",
    ],
)
def test_merge_rules_match_protobuf(raw: RawClient, message: bytes, expected: FastKey | None) -> None:
    expected_key = None if expected is None else expected.grpc_key
    assert reference_key(message) == expected_key  # what the protobuf classes read
    answer = raw.request([frame(message)])
    assert answer.key == expected_key
    assert answer.route == (expected_key if expected in ROUTED_KEYS else DEFAULT_ROUTE)


# ----- Framing ---------------------------------------------------------------------------------------------


def test_a_compressed_message_is_not_read(raw: RawClient) -> None:
    assert_default(raw.request([frame(spec("model-a"), compressed=True)]))


def test_a_truncated_frame_ending_the_stream_is_given_up(raw: RawClient, module_envoy: ModuleEnvoy) -> None:
    whole = frame(spec("model-a") + length_delimited(2, b"x" * 100))
    assert_default(raw.request([whole[:-1]]))
    assert_default(raw.request([whole[:3]]))
    assert_default(raw.request([b""]))
    module_envoy.assert_alive()


def test_headers_only_and_other_requests_pass_untouched(raw: RawClient) -> None:
    message = frame(spec("model-a"))
    assert_default(raw.request([]))
    assert_default(raw.request([message], content_type="application/json"))
    assert_default(raw.request([message], content_type="application/grpc-web"))
    assert_default(raw.request([message], path=PREDICT_PATH + "/"))
    assert_default(raw.request([message], path="/tensorflow.serving.ModelService/HandleReloadConfigRequest"))
    for path in MODEL_PATHS:
        assert_routed(
            raw.request([message], path=path, content_type="application/grpc+proto"), FastKey("model-a")
        )


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_a_message_in_many_small_data_frames(raw: RawClient, size: int) -> None:
    padding = length_delimited(2, b"p" * 150)
    message = frame(padding + spec("later") + padding + spec(None, 3) + padding)
    assert_routed(raw.request(split(message, size)), FastKey("later", 3))


def test_a_message_in_frames_of_sixteen_kib_with_its_spec_at_the_end(raw: RawClient) -> None:
    message = frame(length_delimited(2, b"t" * (BUFFER_LIMIT - 1000)) + spec("Model_B.v2"))
    assert_routed(raw.request(split(message, 16 * 1024)), FastKey("Model_B.v2"))


def test_only_the_first_message_counts(raw: RawClient) -> None:
    body = frame(spec("later")) + frame(spec("model-a", 7))
    assert_routed(raw.request([body]), FastKey("later"))
    assert_routed(raw.request(split(body, 3)), FastKey("later"))


def test_a_body_buffered_by_an_earlier_filter(module_envoy: ModuleEnvoy) -> None:
    """Behind Envoy's buffer filter the module gets the whole body once, as the stream's buffered body."""
    client = RawClient((LOOPBACK, module_envoy.buffered_port))
    try:
        body = frame(spec("model-a", 7)) + frame(spec("later"))
        assert_routed(client.request([body]), FastKey("model-a", 7))
        assert_routed(client.request(split(body, 3)), FastKey("model-a", 7))
        assert_default(client.request(split(body[:9], 2)))
    finally:
        client.close()


def test_a_message_larger_than_the_buffer_limit_is_not_held(raw: RawClient) -> None:
    """Buffering it would make Envoy refuse the request (413): the module lets it go at once instead."""
    message = frame(spec("model-a") + length_delimited(2, b"x" * BUFFER_LIMIT))
    assert_default(raw.request(split(message, 16 * 1024)))
    # A prefix announcing 2 GiB, and only a little of it sent: answered without waiting for the rest.
    assert_default(raw.request([frame(spec("model-a"), length=2**31 - 1)], end_stream=False))


def test_trailers_before_the_first_message_is_complete(raw: RawClient) -> None:
    whole = frame(spec("model-a"))
    assert_default(raw.request([whole[:-2]], trailers=True))
    assert_routed(raw.request([whole], trailers=True), FastKey("model-a"))


def test_many_streams_on_one_connection(raw: RawClient) -> None:
    for index in range(50):
        key = ROUTED_KEYS[index % len(ROUTED_KEYS)]
        assert_routed(raw.request([frame(spec(key.name, key.version))]), key)


# ----- Random messages -----------------------------------------------------------------------------------


def _random_spec_fields(rng: random.Random) -> bytes:
    """ModelSpec fields, mostly ones that give a key (so both outcomes are common)."""
    names = ["model-a", "later", "Model_B.v2", "x", LONGEST_NAME, "", "bad name", "a/b", "n" * 256]
    versions = [1, 3, 7, rng.randint(1, 10**6), 2**63 - 1, 0, -1, -(2**63)]
    pieces = []
    for _ in range(rng.randint(0, 4)):
        kind = rng.choices(range(6), weights=[6, 3, 1, 2, 1, 1])[0]
        if kind == 0:
            pieces.append(length_delimited(1, rng.choice(names[:5] * 3 + names[5:]).encode()))
        elif kind == 1:
            value = rng.choice(versions[:4] * 3 + versions[4:])
            inner = rng.choice([b"", int_field(1, value), int_field(1, value) + int_field(3, 9)])
            pieces.append(length_delimited(2, inner))
        elif kind == 2:
            pieces.append(length_delimited(4, rng.choice([b"", b"stable", b"canary"])))
        elif kind == 3:
            pieces.append(length_delimited(3, b"serving_default"))
        elif kind == 4:
            pieces.append(int_field(rng.randint(5, 50), rng.randint(0, 2**40)))
        else:
            width = rng.choice([4, 8])
            pieces.append(tag(rng.randint(5, 50), 5 if width == 4 else 1) + rng.randbytes(width))
    return b"".join(pieces)


def random_message(rng: random.Random) -> bytes:
    """A well-formed request message: model_spec occurrences, other fields, in any order."""
    parts = []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.7:
            parts.append(length_delimited(1, _random_spec_fields(rng)))
        else:
            parts.append(length_delimited(rng.randint(100, 200), rng.randbytes(rng.randint(0, 40))))
    return b"".join(parts)


def test_random_well_formed_messages_match_protobuf(raw: RawClient) -> None:
    rng = random.Random(20261125)
    for _ in range(300):
        message = random_message(rng)
        expected = reference_key(message)
        body = frame(message)
        chunks = [body] if rng.random() < 0.5 else split(body, rng.randint(1, 9))
        answer = raw.request(chunks)
        assert answer.headers.get(":status") == "200", (message, answer)
        assert answer.key == expected, message
        assert answer.route == (expected if expected in {k.grpc_key for k in ROUTED_KEYS} else DEFAULT_ROUTE)


def _garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:  # random bytes, prefix and all
        return rng.randbytes(rng.randint(0, 80))
    if kind == 1:  # a random message behind a correct prefix
        return frame(rng.randbytes(rng.randint(0, 80)))
    body = bytearray(frame(random_message(rng)))
    if kind == 2:  # a well-formed message with a few bytes changed
        for _ in range(rng.randint(1, 3)):
            if len(body) > 5:
                body[rng.randrange(5, len(body))] = rng.randrange(256)
        return bytes(body)
    return bytes(body[: rng.randint(0, len(body))])  # cut short


def test_garbage_bodies_are_answered_and_never_misread(raw: RawClient, module_envoy: ModuleEnvoy) -> None:
    """Whatever the body, Envoy answers; a key is written only for a complete frame whose message the
    protobuf classes read to that same key (or cannot read at all: TF Serving then refuses it anyway)."""
    rng = random.Random(7)
    for _ in range(400):
        body = _garbage(rng)
        chunks = [body] if rng.random() < 0.5 else split(body, rng.randint(1, 9)) or [b""]
        answer = raw.request(chunks)
        assert answer.headers.get(":status") == "200", (body, answer)
        if answer.key is None:
            continue
        compressed, length = struct.unpack(">BI", body[:5])
        assert compressed == 0
        assert len(body) >= 5 + length
        try:
            expected = reference_key(body[5 : 5 + length])
        except DecodeError:
            continue
        assert answer.key == expected, body
    module_envoy.assert_alive()


# ----- The parser alone, under the sanitizers ----------------------------------------------------------

#: A stand-in for Envoy's side of the ABI: each chunk of a case in its own heap block (so reading a byte past
#: one is caught), received chunks moved to the buffered list when the module asks Envoy to buffer, and the
#: key the module writes printed, one line per case ("-" for none). Cases come on stdin: a u32 chunk count,
#: then each chunk as a u32 length and its bytes (little-endian); the last chunk ends the stream.
SANITIZER_DRIVER = r"""
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *ptr; size_t length; } span;
enum { MAX_CHUNKS = 4096 };
static span buffered[MAX_CHUNKS];
static size_t buffered_count;
static span received;
static bool has_received;
static char key[1024];
static size_t key_length;
static bool key_written;

bool envoy_dynamic_module_callback_http_get_header(void *f, int type, span name, span *out, size_t i,
                                                   size_t *count) {
  (void)f;
  static const char path[] = "/tensorflow.serving.PredictionService/Predict";
  static const char content_type[] = "application/grpc";
  *count = 0;
  if (type != 0 || i != 0) return false;
  if (name.length == 5 && memcmp(name.ptr, ":path", 5) == 0) {
    *out = (span){path, sizeof path - 1};
  } else if (name.length == 12 && memcmp(name.ptr, "content-type", 12) == 0) {
    *out = (span){content_type, sizeof content_type - 1};
  } else {
    return false;
  }
  *count = 1;
  return true;
}
bool envoy_dynamic_module_callback_http_received_buffered_request_body(void *f) { (void)f; return false; }
size_t envoy_dynamic_module_callback_http_get_body_chunks_size(void *f, int type) {
  (void)f;
  return type == 0 ? (has_received ? 1 : 0) : type == 1 ? buffered_count : 0;
}
bool envoy_dynamic_module_callback_http_get_body_chunks(void *f, int type, span *out) {
  (void)f;
  if (type == 0 && has_received) { out[0] = received; return true; }
  if (type == 1 && buffered_count > 0) { memcpy(out, buffered, buffered_count * sizeof(span)); return true; }
  return false;
}
uint64_t envoy_dynamic_module_callback_http_get_buffer_limit(void *f) { (void)f; return 1u << 20; }
bool envoy_dynamic_module_callback_http_set_filter_state_bytes(void *f, span name, span value) {
  (void)f;
  (void)name;
  if (key_written || value.length > sizeof key) abort();
  memcpy(key, value.ptr, value.length);
  key_length = value.length;
  key_written = true;
  return true;
}
void envoy_dynamic_module_callback_http_clear_route_cache(void *f) { (void)f; }

void *envoy_dynamic_module_on_http_filter_config_new(void *, span, span);
void envoy_dynamic_module_on_http_filter_config_destroy(void *);
void *envoy_dynamic_module_on_http_filter_new(void *, void *);
void envoy_dynamic_module_on_http_filter_destroy(void *);
int envoy_dynamic_module_on_http_filter_request_headers(void *, void *, bool);
int envoy_dynamic_module_on_http_filter_request_body(void *, void *, bool);

static bool read_u32(uint32_t *out) {
  unsigned char b[4];
  if (fread(b, 1, 4, stdin) != 4) return false;
  *out = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
  return true;
}

int main(void) {
  static const char name[] = "grpc_model_key", state[] = "tfscache.model_key";
  void *config = envoy_dynamic_module_on_http_filter_config_new(
      NULL, (span){name, sizeof name - 1}, (span){state, sizeof state - 1});
  if (config == NULL) return 2;
  uint32_t count;
  while (read_u32(&count)) {
    char *blocks[MAX_CHUNKS];
    if (count > MAX_CHUNKS) return 3;
    void *stream = envoy_dynamic_module_on_http_filter_new(config, NULL);
    buffered_count = 0;
    key_written = false;
    bool held = envoy_dynamic_module_on_http_filter_request_headers(NULL, stream, count == 0) == 1;
    for (uint32_t i = 0; i < count; i++) {
      uint32_t length;
      if (!read_u32(&length)) return 4;
      blocks[i] = malloc(length ? length : 1);
      if (length && fread(blocks[i], 1, length, stdin) != length) return 5;
      received = (span){blocks[i], length};
      has_received = length > 0;
      if (held) {
        int status = envoy_dynamic_module_on_http_filter_request_body(NULL, stream, i + 1 == count);
        if (status == 1 && has_received) buffered[buffered_count++] = received;
        held = status == 1;
      }
    }
    has_received = false;
    envoy_dynamic_module_on_http_filter_destroy(stream);
    for (uint32_t i = 0; i < count; i++) free(blocks[i]);
    if (key_written) {
      fwrite(key, 1, key_length, stdout);
      fputc('\n', stdout);
    } else {
      puts("-");
    }
  }
  envoy_dynamic_module_on_http_filter_config_destroy(config);
  return 0;
}
"""
SANITIZER_FLAGS = ("-std=c11", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all")
SANITIZER_RUN_TIMEOUT_S = 120.0


def _cases_input(cases: Sequence[Sequence[bytes]]) -> bytes:
    out = bytearray()
    for chunks in cases:
        out += struct.pack("<I", len(chunks))
        for chunk in chunks:
            out += struct.pack("<I", len(chunk)) + chunk
    return bytes(out)


def test_the_parser_under_address_and_undefined_behaviour_sanitizers(tmp_path: Path) -> None:
    """Thousands of bodies, well-formed or not, in random chunks: no bad access, and protobuf's keys."""
    driver = tmp_path / "driver.c"
    driver.write_text(SANITIZER_DRIVER)
    program = tmp_path / "driver"
    argv = ["cc", *SANITIZER_FLAGS, "-o", str(program), str(driver), str(envoy_file(MODULE_SOURCE))]
    try:
        built = subprocess.run(argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
    except FileNotFoundError:
        pytest.skip("no C compiler (cc)")
    if built.returncode != 0 and "sanitize" in built.stderr:
        pytest.skip(f"the C compiler has no sanitizers here: {built.stderr[-500:]}")
    assert built.returncode == 0, built.stderr
    rng = random.Random(11)
    bodies = [frame(random_message(rng)) for _ in range(3000)] + [_garbage(rng) for _ in range(3000)]
    bodies += [
        frame(spec("model-a") + length_delimited(2, rng.randbytes(2000)) + spec(None, 5)) for _ in range(20)
    ]
    cases = [[b] if rng.random() < 0.3 else split(b, rng.randint(1, 40)) or [b""] for b in bodies]
    result = subprocess.run(
        [str(program)],
        input=_cases_input(cases),
        capture_output=True,
        timeout=SANITIZER_RUN_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-4000:]
    keys = result.stdout.decode().splitlines()
    assert len(keys) == len(bodies)
    written = 0
    for body, key in zip(bodies, keys, strict=True):
        complete = len(body) >= 5 and body[0] == 0 and len(body) >= 5 + struct.unpack(">I", body[1:5])[0]
        message = body[5 : 5 + struct.unpack(">I", body[1:5])[0]] if complete else b""
        try:
            expected = reference_key(message) if complete else None
        except DecodeError:
            expected = key if key != "-" else None  # protobuf refuses it: TF Serving refuses it too
        assert (None if key == "-" else key) == expected, body
        written += key != "-"
    assert written > len(bodies) // 10  # both outcomes are well covered


# ----- Configuration -------------------------------------------------------------------------------------


def _validate(config: dict[str, Any], work: Path) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate`` on a bootstrap: loads the module and makes its filter configuration."""
    path = write_bootstrap(config, work / "bootstrap.yaml")
    argv = [str(envoy_binary()), "--mode", "validate", "--config-path", str(path), "--use-dynamic-base-id"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=ENVOY_VALIDATE_TIMEOUT_S, check=False)


def _module_filter_config(config: dict[str, Any]) -> dict[str, Any]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    typed_config: dict[str, Any] = manager["http_filters"][0]["typed_config"]
    return typed_config


def test_the_filter_configuration_is_checked(module_path: Path, tmp_path: Path) -> None:
    good = bootstrap(module_path, free_port(), free_port())
    loaded = _validate(good, tmp_path)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    # The ABI the module was written against: another Envoy needs its declarations checked again.
    assert "Dynamic module ABI version v0.2.0 matched" in loaded.stdout + loaded.stderr
    unknown_filter = copy.deepcopy(good)
    _module_filter_config(unknown_filter)["filter_name"] = "some_other_filter"
    answer = _validate(unknown_filter, tmp_path)
    assert answer.returncode != 0
    assert "Failed to initialize dynamic module" in answer.stdout + answer.stderr
    no_key = copy.deepcopy(good)
    _module_filter_config(no_key)["filter_config"]["value"] = ""
    assert _validate(no_key, tmp_path).returncode != 0
