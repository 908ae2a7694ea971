"""The REST URL grammar, checked against the cases of TF Serving's http_rest_api_handler_test.cc and
http_rest_api_util.cc (restated here, values from TF Serving's behaviour)."""

from __future__ import annotations

import pytest

from tfscachectl.errors import Code, ServingError
from tfscachectl.tfserving.rest_paths import (
    API_PATH,
    ModelInfoError,
    RestApi,
    RestTarget,
    parse_model_info,
    parse_rest_path,
    percent_decode,
)


@pytest.mark.parametrize(
    ("path", "handled"),
    [
        ("/v1/models", True),
        ("/V1/anything/at/all", True),
        ("/v1/", True),
        ("/statuspage", False),
        ("/index", False),
        ("/v1", False),
        ("/v2/models/x", False),
    ],
)
def test_only_v1_paths_reach_the_api(path: str, handled: bool) -> None:
    assert (API_PATH.fullmatch(path) is not None) is handled


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/models/foo:predict", RestTarget(RestApi.PREDICT, "foo")),
        ("POST", "/v1/models/foo:classify", RestTarget(RestApi.CLASSIFY, "foo")),
        ("POST", "/v1/models/foo:regress", RestTarget(RestApi.REGRESS, "foo")),
        ("POST", "/v1/models/foo/versions/50:predict", RestTarget(RestApi.PREDICT, "foo", version=50)),
        ("POST", "/v1/models/foo/labels/stable:predict", RestTarget(RestApi.PREDICT, "foo", label="stable")),
        ("POST", "/V1/MODELS/foo/VERSIONS/7:predict", RestTarget(RestApi.PREDICT, "foo", version=7)),
        ("POST", "/v1/models/foo/versions/0123:predict", RestTarget(RestApi.PREDICT, "foo", version=123)),
        ("GET", "/v1/models/foo", RestTarget(RestApi.MODEL_STATUS, "foo")),
        ("GET", "/v1/models/foo/versions/123", RestTarget(RestApi.MODEL_STATUS, "foo", version=123)),
        ("GET", "/v1/models/foo/labels/canary", RestTarget(RestApi.MODEL_STATUS, "foo", label="canary")),
        ("GET", "/v1/models/foo/metadata", RestTarget(RestApi.MODEL_METADATA, "foo")),
        ("GET", "/v1/models/foo/versions/3/metadata", RestTarget(RestApi.MODEL_METADATA, "foo", version=3)),
        ("GET", "/v1/models/foo/labels/x/metadata", RestTarget(RestApi.MODEL_METADATA, "foo", label="x")),
        # "/metadata" is only a sub-resource when typed in lower case; otherwise it is the status of "foo".
        ("GET", "/v1/models/foo/METADATA", RestTarget(RestApi.MODEL_STATUS, "foo")),
        # A bare "metadata" is the name of a model.
        ("GET", "/v1/models/metadata", RestTarget(RestApi.MODEL_STATUS, "metadata")),
        # Name and label are percent-decoded after matching; '+' is not a space.
        ("POST", "/v1/models/my%20model:predict", RestTarget(RestApi.PREDICT, "my model")),
        ("POST", "/v1/models/a%2Fb:predict", RestTarget(RestApi.PREDICT, "a/b")),
        ("POST", "/v1/models/a+b/labels/l%41b:predict", RestTarget(RestApi.PREDICT, "a+b", label="lAb")),
        ("POST", "/v1/models/bad%zz:predict", RestTarget(RestApi.PREDICT, "bad%zz")),
        # The query string is part of the path TF Serving matches.
        ("GET", "/v1/models/foo?x=1", RestTarget(RestApi.MODEL_STATUS, "foo?x=1")),
    ],
)
def test_well_formed_paths(method: str, path: str, expected: RestTarget) -> None:
    assert parse_rest_path(method, path) == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/foo"),
        ("POST", "/v1/foo"),
        ("GET", "/v1/models/debug/model_name"),
        ("POST", "/v1/models"),
        ("GET", "/v1/models/foo:predict"),
        ("GET", "/v1/models/foo/version/50:predict"),
        ("POST", "/v1/models/foo/version/50:regress"),
        ("POST", "/v1/models/foo/versions/HELLO:regress"),
        ("POST", "/v1/models/foo/metadata"),
        ("POST", "/v1/models/foo/label/some_label:regress"),
        ("POST", "/v1/models/foo/versions/50/labels/some_label:regress"),
        ("POST", "/v1/models/foo/versions/some_label:regress"),
        ("POST", "/v1/models/foo:PREDICT"),
        ("POST", "/v1/models/foo:Classify"),
        ("POST", "/v1/models/foo:predict?x=1"),
        ("POST", "/v1/models/foo/versions/-1:predict"),
        ("POST", "/v1/models/foo/versions/:predict"),
        ("POST", "/v1/models/foo/versions/\u0663:predict"),  # a non-ASCII digit
        ("PUT", "/v1/models/foo:predict"),
        ("DELETE", "/v1/models/foo"),
        ("HEAD", "/v1/models/foo"),
    ],
)
def test_malformed_requests(method: str, path: str) -> None:
    with pytest.raises(ServingError) as caught:
        parse_rest_path(method, path)
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert caught.value.message == f"Malformed request: {method} {path}"
    assert not isinstance(caught.value, ModelInfoError)


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/versions/3", "/v1/models/labels/x/metadata"])
def test_status_without_a_model_name(path: str) -> None:
    with pytest.raises(ServingError) as caught:
        parse_rest_path("GET", path)
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert caught.value.message == "Missing model name in request."


@pytest.mark.parametrize(
    ("method", "path", "digits"),
    [
        ("POST", "/v1/models/foo/versions/18446744073709551615:regress", "18446744073709551615"),
        ("POST", "/v1/models/foo/versions/9223372036854775808:predict", "9223372036854775808"),
        ("GET", "/v1/models/foo/versions/99999999999999999999999", "99999999999999999999999"),
        # The version is converted before the method is checked.
        ("POST", "/v1/models/foo/versions/9223372036854775808:PREDICT", "9223372036854775808"),
    ],
)
def test_version_overflow_is_rejected_before_anything_else(method: str, path: str, digits: str) -> None:
    with pytest.raises(ModelInfoError) as caught:
        parse_rest_path(method, path)
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert caught.value.message == f"Failed to convert version: {digits} to numeric."


def test_largest_version_is_int64_max() -> None:
    target = parse_rest_path("GET", "/v1/models/foo/versions/9223372036854775807")
    assert target.version == 2**63 - 1


def test_model_info_keeps_the_verb_as_typed() -> None:
    info = parse_model_info("POST", "/v1/models/m%31/labels/a:PREDICT")
    assert info.matched
    assert (info.model_name, info.label, info.verb) == ("m1", "a", "PREDICT")
    assert not parse_model_info("PUT", "/v1/models/m:predict").matched


def test_percent_decoding_keeps_bytes_that_are_not_utf8() -> None:
    decoded = percent_decode("a%FFb")
    assert decoded.encode("utf-8", "surrogateescape") == b"a\xffb"
    assert percent_decode("%e2%82%ac") == "\u20ac"
    assert percent_decode("100%") == "100%"
