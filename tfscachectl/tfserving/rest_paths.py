"""The URL grammar of TF Serving's REST API: an HTTP method and a raw path into what the request asks for.

Pure: no I/O. The rules are those of ``http_rest_api_util.cc`` (``ParseModelInfo``) and the dispatch in
``http_rest_api_handler.cc``:

- POST ``/v1/models/{name}[/versions/{v}|/labels/{l}]:(classify|regress|predict)``;
  GET ``/v1/models[/{name}][/versions/{v}|/labels/{l}][/metadata]``. Matched case-insensitively against the
  whole raw path (query string included), so ``:PREDICT`` matches the pattern but is not a known method.
- The name and the label are percent-decoded after matching; the version is an int64 in decimal (leading
  zeros allowed). A version that does not fit is rejected before any body is written
  (:class:`ModelInfoError`: TF Serving answers it with an empty body).
- Anything else is ``Malformed request: <METHOD> <path>``; a GET without a model name is
  ``Missing model name in request.``
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from tfscachectl.errors import Code, ServingError

# The whole REST API lives under this prefix (http_server.cc dispatches on it).
API_PATH = re.compile(r"/v1/.*", re.IGNORECASE)

# ``\d`` in RE2 is ASCII only; Python's would accept other digits.
_POST = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_GET = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_PERCENT_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_INT64_MAX = 2**63 - 1


class RestApi(enum.Enum):
    """What a REST request asks the server to do."""

    CLASSIFY = "classify"
    REGRESS = "regress"
    PREDICT = "predict"
    MODEL_STATUS = "status"
    MODEL_METADATA = "metadata"

    @property
    def is_inference(self) -> bool:
        return self in (RestApi.CLASSIFY, RestApi.REGRESS, RestApi.PREDICT)


@dataclass(frozen=True)
class RestTarget:
    """A well-formed REST request: the API and the model it names (a version, a label, or neither)."""

    api: RestApi
    model_name: str
    version: int | None = None
    label: str | None = None


class ModelInfoError(ServingError):
    """The path names a model version TF Serving cannot parse; it answers with an empty body."""


@dataclass(frozen=True)
class ModelInfo:
    """What ``ParseModelInfo`` captured, whether or not the path matched."""

    matched: bool
    model_name: str = ""
    version: int | None = None
    label: str | None = None
    verb: str = ""  # the captured ``:method`` of a POST, exactly as typed
    subresource: str = ""  # the captured ``/metadata`` of a GET, exactly as typed


def percent_decode(text: str) -> str:
    """``curl_easy_unescape``: every ``%XX`` becomes its byte, anything else is kept; ``+`` stays ``+``.

    Bytes that are not UTF-8 are kept as surrogate escapes, so nothing is lost.
    """
    raw = text.encode("utf-8", "surrogateescape")
    decoded = _PERCENT_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
    return decoded.decode("utf-8", "surrogateescape")


def parse_model_info(method: str, path: str) -> ModelInfo:
    """Match ``path`` against the pattern of ``method`` and decode what it captured.

    Raises :class:`ModelInfoError` for a version that is not an int64.
    """
    pattern = _POST if method == "POST" else _GET if method == "GET" else None
    match = pattern.fullmatch(path) if pattern is not None else None
    if match is None:
        return ModelInfo(matched=False)
    name, version_text, label, tail = (group or "" for group in match.groups())
    version: int | None = None
    if version_text:
        number = int(version_text)
        if number > _INT64_MAX:
            raise ModelInfoError(
                Code.INVALID_ARGUMENT, f"Failed to convert version: {version_text} to numeric."
            )
        version = number
    return ModelInfo(
        matched=True,
        model_name=percent_decode(name) if name else "",
        version=version,
        label=percent_decode(label) if label else None,
        verb=tail if method == "POST" else "",
        subresource=tail if method == "GET" else "",
    )


def malformed(method: str, path: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, f"Malformed request: {method} {path}")


def rest_target(method: str, path: str, info: ModelInfo) -> RestTarget:
    """What a request whose path gave ``info`` asks for, or the ServingError TF Serving answers it with."""
    if not info.matched:
        raise malformed(method, path)
    if method == "POST":
        try:
            api = RestApi(info.verb)
        except ValueError:
            raise malformed(method, path) from None
        if not api.is_inference:
            raise malformed(method, path)
    else:
        api = RestApi.MODEL_METADATA if info.subresource == "metadata" else RestApi.MODEL_STATUS
        if not info.model_name:
            raise ServingError(Code.INVALID_ARGUMENT, "Missing model name in request.")
    return RestTarget(api=api, model_name=info.model_name, version=info.version, label=info.label)


def parse_rest_path(method: str, path: str) -> RestTarget:
    """The request ``method path`` asks for, or the ServingError TF Serving answers it with.

    ``path`` is the raw request target (percent-encoded, with its query string). A version that is not an
    int64 raises :class:`ModelInfoError` (answered with an empty body).
    """
    return rest_target(method, path, parse_model_info(method, path))
