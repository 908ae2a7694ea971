"""Reading the model a client request names: REST paths (the backend's grammar) and gRPC extracted fields
(in the shape Envoy 1.40's grpc_field_extraction filter writes them, as measured)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tfscachectl.core.requests import (
    GRPC_MODEL_METHODS,
    RELOAD_CONFIG_DENIED,
    ModelApi,
    ModelRequest,
    NotAnApiPath,
    RequestProtocol,
    grpc_method_name,
    is_grpc,
    model_header_value,
    model_not_found,
    parse_grpc_request,
    parse_rest_request,
)
from tfscachectl.errors import Code, ServingError
from tfscachectl.tfserving.rest_paths import ModelInfoError, parse_rest_path

REST = RequestProtocol.REST
GRPC = RequestProtocol.GRPC
PREDICT = "/tensorflow.serving.PredictionService/Predict"
MULTI = "/tensorflow.serving.PredictionService/MultiInference"
STATUS = "/tensorflow.serving.ModelService/GetModelStatus"


def spec(
    name: Sequence[str] = (),
    version: Sequence[str] = (),
    label: Sequence[str] = (),
    signature: Sequence[str] = (),
    prefix: str = "model_spec",
) -> dict[str, list[str]]:
    return {
        f"{prefix}.name": list(name),
        f"{prefix}.version.value": list(version),
        f"{prefix}.version_label": list(label),
        f"{prefix}.signature_name": list(signature),
    }


# ----- REST -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/models/foo:predict", ModelRequest("foo", None, None, ModelApi.PREDICT, REST)),
        ("POST", "/v1/models/foo/versions/7:classify", ModelRequest("foo", 7, None, ModelApi.CLASSIFY, REST)),
        (
            "POST",
            "/v1/models/foo/labels/canary:regress",
            ModelRequest("foo", None, "canary", ModelApi.REGRESS, REST),
        ),
        ("GET", "/v1/models/foo", ModelRequest("foo", None, None, ModelApi.STATUS, REST)),
        ("GET", "/v1/models/foo/versions/0123", ModelRequest("foo", 123, None, ModelApi.STATUS, REST)),
        ("GET", "/v1/models/foo/metadata", ModelRequest("foo", None, None, ModelApi.METADATA, REST)),
        ("GET", "/v1/models/foo/labels/x/metadata", ModelRequest("foo", None, "x", ModelApi.METADATA, REST)),
        (
            "POST",
            "/v1/models/my%20model:predict",
            ModelRequest("my model", None, None, ModelApi.PREDICT, REST),
        ),
        ("POST", "/V1/MODELS/Foo/VERSIONS/3:predict", ModelRequest("Foo", 3, None, ModelApi.PREDICT, REST)),
    ],
)
def test_rest_requests_name_their_model(method: str, path: str, expected: ModelRequest) -> None:
    assert parse_rest_request(method, path) == expected


@pytest.mark.parametrize(
    ("method", "path", "code", "message"),
    [
        ("POST", "/v1/models/foo", Code.INVALID_ARGUMENT, "Malformed request: POST /v1/models/foo"),
        (
            "POST",
            "/v1/models/foo:PREDICT",
            Code.INVALID_ARGUMENT,
            "Malformed request: POST /v1/models/foo:PREDICT",
        ),
        (
            "PUT",
            "/v1/models/foo:predict",
            Code.INVALID_ARGUMENT,
            "Malformed request: PUT /v1/models/foo:predict",
        ),
        ("GET", "/v1/models", Code.INVALID_ARGUMENT, "Missing model name in request."),
        (
            "POST",
            "/v1/models/foo/versions/50/labels/x:predict",
            Code.INVALID_ARGUMENT,
            "Malformed request: POST /v1/models/foo/versions/50/labels/x:predict",
        ),
    ],
)
def test_malformed_rest_paths_get_tf_serving_errors(method: str, path: str, code: Code, message: str) -> None:
    with pytest.raises(ServingError) as raised:
        parse_rest_request(method, path)
    assert (raised.value.code, raised.value.message) == (code, message)


def test_a_version_that_is_not_int64_is_answered_with_an_empty_body() -> None:
    with pytest.raises(ModelInfoError) as raised:
        parse_rest_request("POST", "/v1/models/foo/versions/99999999999999999999:predict")
    assert raised.value.code is Code.INVALID_ARGUMENT
    assert raised.value.message == "Failed to convert version: 99999999999999999999 to numeric."


@pytest.mark.parametrize(
    "path", ["/", "/index.html", "/v2/models/foo:predict", "/monitoring/prometheus/metrics"]
)
def test_paths_outside_the_api_are_not_found(path: str) -> None:
    with pytest.raises(NotAnApiPath) as raised:
        parse_rest_request("GET", path)
    assert raised.value.code is Code.NOT_FOUND


# Requests built mostly from the grammar's own tokens, so that many of them are accepted.
_NAME_TEXT = st.text(alphabet=st.sampled_from("aZ09_-.%2Fzü +?"), min_size=1, max_size=8)
_SEGMENT_TEXT = _NAME_TEXT | st.text(alphabet=st.sampled_from("aZ09%:/"), min_size=0, max_size=8)
_VERSION_TEXT = st.from_regex(r"[0-9]{1,21}", fullmatch=True) | _SEGMENT_TEXT
_VALID_CALLS = [
    ("POST", ":predict"),
    ("POST", ":classify"),
    ("POST", ":regress"),
    ("GET", ""),
    ("GET", "/metadata"),
]
_CALLS = (
    st.sampled_from(_VALID_CALLS)
    | st.sampled_from(_VALID_CALLS)
    | st.tuples(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "get"]),
        st.sampled_from(["", ":predict", ":PREDICT", "/metadata", "/METADATA", ":bad", "/x"]),
    )
)
_REST_REQUESTS = st.builds(
    lambda call, prefix, name, choice: (call[0], f"{prefix}{name}{choice}{call[1]}"),
    _CALLS,
    st.sampled_from(["/v1/models/"] * 6 + ["/V1/Models/", "/v1/models", "/v1/", "/"]),
    _NAME_TEXT | _SEGMENT_TEXT,
    st.one_of(
        st.just(""),
        st.builds(lambda v: f"/versions/{v}", _VERSION_TEXT),
        st.builds(lambda label: f"/labels/{label}", _SEGMENT_TEXT),
    ),
)


@given(_REST_REQUESTS)
def test_rest_parsing_agrees_with_the_backend_grammar(call: tuple[str, str]) -> None:
    method, path = call
    try:
        target = parse_rest_path(method, path)
    except ServingError:
        target = None
    try:
        request = parse_rest_request(method, path)
    except ServingError:
        assert target is None
        return
    assert target is not None
    assert (request.name, request.version, request.label) == (target.model_name, target.version, target.label)
    assert request.protocol is REST


@given(method=st.text(max_size=8), path=st.text(max_size=60))
def test_any_rest_request_parses_or_raises_a_serving_error(method: str, path: str) -> None:
    try:
        request = parse_rest_request(method, path)
    except ServingError:
        return
    assert request.name


# ----- gRPC -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fields", "expected"),
    [
        (PREDICT, spec(["m1"], ["7"]), ModelRequest("m1", 7, None, ModelApi.PREDICT, GRPC)),
        (PREDICT, spec(["m1"]), ModelRequest("m1", None, None, ModelApi.PREDICT, GRPC)),
        (PREDICT, spec(["m1"], label=["stable"]), ModelRequest("m1", None, "stable", ModelApi.PREDICT, GRPC)),
        # an explicitly empty label is sent (and refused by TF Serving as an unknown label)
        (PREDICT, spec(["m1"], label=[""]), ModelRequest("m1", None, "", ModelApi.PREDICT, GRPC)),
        (PREDICT, spec(["m1"], ["-5"]), ModelRequest("m1", -5, None, ModelApi.PREDICT, GRPC)),
        (PREDICT, {"model_spec.name": ["m1"]}, ModelRequest("m1", None, None, ModelApi.PREDICT, GRPC)),
        (
            "/tensorflow.serving.PredictionService/Classify",
            spec(["c"], ["1"]),
            ModelRequest("c", 1, None, ModelApi.CLASSIFY, GRPC),
        ),
        (
            "/tensorflow.serving.PredictionService/Regress",
            spec(["r"]),
            ModelRequest("r", None, None, ModelApi.REGRESS, GRPC),
        ),
        (
            "/tensorflow.serving.PredictionService/GetModelMetadata",
            spec(["md"], label=["x"]),
            ModelRequest("md", None, "x", ModelApi.METADATA, GRPC),
        ),
        (STATUS, spec(["s"], ["3"]), ModelRequest("s", 3, None, ModelApi.STATUS, GRPC)),
        # MultiInference: the first task's model spec picks the servable
        (
            MULTI,
            {
                **spec(["a", "b"], ["3"], prefix="tasks.model_spec"),
                "tasks.method_name": ["classify", "regress"],
            },
            ModelRequest("a", 3, None, ModelApi.MULTI_INFERENCE, GRPC),
        ),
    ],
)
def test_grpc_requests_name_their_model(
    path: str, fields: Mapping[str, Sequence[str]], expected: ModelRequest
) -> None:
    assert parse_grpc_request(path, fields) == expected


@pytest.mark.parametrize(
    ("path", "fields", "code", "message"),
    [
        # no model_spec at all, or one with nothing in it: extraction sees the same empty lists
        (PREDICT, spec(), Code.INVALID_ARGUMENT, "Missing ModelSpec"),
        (PREDICT, {}, Code.INVALID_ARGUMENT, "Missing ModelSpec"),
        (
            PREDICT,
            spec(signature=["serving_default"]),
            Code.INVALID_ARGUMENT,
            "ModelSpec has no name specified.",
        ),
        (PREDICT, spec(version=["4"]), Code.INVALID_ARGUMENT, "ModelSpec has no name specified."),
        (PREDICT, spec([""], label=["x"]), Code.INVALID_ARGUMENT, "ModelSpec has no name specified."),
        (PREDICT, spec(["m"], ["x1"]), Code.INVALID_ARGUMENT, "Failed to convert version: x1 to numeric."),
        (
            PREDICT,
            spec(["m"], ["9223372036854775808"]),
            Code.INVALID_ARGUMENT,
            "Failed to convert version: 9223372036854775808 to numeric.",
        ),
        (
            MULTI,
            spec(prefix="tasks.model_spec"),
            Code.INVALID_ARGUMENT,
            "MultiInferenceRequest must contain at least one task.",
        ),
        (
            MULTI,
            {**spec(prefix="tasks.model_spec"), "tasks.method_name": ["classify"]},
            Code.INVALID_ARGUMENT,
            "ModelSpec has no name specified.",
        ),
        (STATUS, spec(), Code.INVALID_ARGUMENT, "Missing ModelSpec"),
        (STATUS, spec(signature=["x"]), Code.NOT_FOUND, "Could not find any versions of model "),
        (STATUS, spec(version=["5"]), Code.NOT_FOUND, "Could not find version 5 of model "),
        ("/tensorflow.serving.SessionService/SessionRun", {}, Code.UNIMPLEMENTED, ""),
        ("/no.such.Service/Method", spec(["m"]), Code.UNIMPLEMENTED, ""),
        (
            "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
            {},
            Code.PERMISSION_DENIED,
            RELOAD_CONFIG_DENIED,
        ),
    ],
)
def test_grpc_requests_without_a_usable_model_get_tf_serving_errors(
    path: str, fields: Mapping[str, Sequence[str]], code: Code, message: str
) -> None:
    with pytest.raises(ServingError) as raised:
        parse_grpc_request(path, fields)
    assert (raised.value.code, raised.value.message) == (code, message)


_FIELD_PATHS = st.sampled_from(
    sorted({path for method in GRPC_MODEL_METHODS.values() for path in method.extracted_fields} | {"other"})
)
_GRPC_PATHS = st.sampled_from(
    [f"/{name.rsplit('.', 1)[0]}/{name.rsplit('.', 1)[1]}" for name in GRPC_MODEL_METHODS] + ["/x/y", "", "/"]
)


@given(
    path=_GRPC_PATHS | st.text(max_size=30),
    fields=st.dictionaries(_FIELD_PATHS, st.lists(st.text(max_size=12) | st.integers().map(str), max_size=3)),
)
def test_any_extraction_parses_or_raises_a_serving_error(path: str, fields: dict[str, list[str]]) -> None:
    try:
        request = parse_grpc_request(path, fields)
    except ServingError:
        return
    method = GRPC_MODEL_METHODS[grpc_method_name(path)]
    assert request.name == fields[method.name_field][0]
    assert request.api is method.api
    assert request.protocol is GRPC


def test_every_model_method_extracts_the_model_spec() -> None:
    assert set(GRPC_MODEL_METHODS) == {
        "tensorflow.serving.PredictionService.Predict",
        "tensorflow.serving.PredictionService.Classify",
        "tensorflow.serving.PredictionService.Regress",
        "tensorflow.serving.PredictionService.MultiInference",
        "tensorflow.serving.PredictionService.GetModelMetadata",
        "tensorflow.serving.ModelService.GetModelStatus",
    }
    multi = GRPC_MODEL_METHODS["tensorflow.serving.PredictionService.MultiInference"]
    assert multi.extracted_fields == (
        "tasks.model_spec.name",
        "tasks.model_spec.version.value",
        "tasks.model_spec.version_label",
        "tasks.model_spec.signature_name",
        "tasks.method_name",
    )


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (PREDICT, "tensorflow.serving.PredictionService.Predict"),
        ("/a.B/C", "a.B.C"),
        ("/a.B/C/D", "/a.B/C/D"),
        ("/a.B", "/a.B"),
        ("", ""),
    ],
)
def test_grpc_method_names(path: str, name: str) -> None:
    assert grpc_method_name(path) == name


# ----- answers and headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (
            ModelRequest("foo", None, None, ModelApi.PREDICT, REST),
            Code.NOT_FOUND,
            "Servable not found for request: Latest(foo)",
        ),
        (
            ModelRequest("foo", 5, None, ModelApi.PREDICT, GRPC),
            Code.NOT_FOUND,
            "Servable not found for request: Specific(foo, 5)",
        ),
        (
            ModelRequest("foo", None, "l", ModelApi.METADATA, REST),
            Code.INVALID_ARGUMENT,
            "Unrecognized servable version label: l",
        ),
        (
            ModelRequest("foo", None, "l", ModelApi.STATUS, REST),
            Code.NOT_FOUND,
            "Could not find any versions of model foo",
        ),
        (
            ModelRequest("foo", 3, None, ModelApi.STATUS, GRPC),
            Code.NOT_FOUND,
            "Could not find version 3 of model foo",
        ),
    ],
)
def test_unknown_models_get_tf_serving_answers(request_: ModelRequest, code: Code, message: str) -> None:
    error = model_not_found(request_)
    assert (error.code, error.message) == (code, message)


@pytest.mark.parametrize(
    ("content_type", "grpc"),
    [
        ("application/grpc", True),
        ("application/grpc+proto", True),
        ("Application/GRPC", True),
        ("application/grpc-web", False),
        ("application/grpcx", False),
        ("application/json", False),
        ("", False),
    ],
)
def test_grpc_is_told_by_its_content_type(content_type: str, grpc: bool) -> None:
    assert is_grpc(content_type) is grpc


@given(st.text(max_size=20))
def test_model_header_values_are_printable_ascii_and_decode_back(name: str) -> None:
    value = model_header_value(name)
    assert value.isascii()
    assert value.isprintable()
    assert " " not in value
    assert unquote(value, errors="surrogateescape") == name


def test_plain_model_names_are_their_own_header_value() -> None:
    assert model_header_value("tenant-0001") == "tenant-0001"
    assert model_header_value("half_plus_two") == "half_plus_two"
