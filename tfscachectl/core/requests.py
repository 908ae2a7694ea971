"""Client requests as the cache sees them: which model a TF Serving request asks for (``ModelRequest``).

Pure: no I/O. Two sources, both as Envoy hands them to the daemon's ext_proc server:

- **REST**: the HTTP method and the raw ``:path``, read with the backend's own URL grammar
  (:mod:`tfscachectl.tfserving.rest_paths`), so a path TF Serving would refuse gets TF Serving's error here:
  a :class:`~tfscachectl.errors.ServingError` with its code and message (``ModelInfoError`` for a version
  that is not an int64, answered with an empty body; :class:`NotAnApiPath` outside ``/v1/``, answered with
  libevent's 404 page).
- **gRPC**: the ``:path`` (``/tensorflow.serving.PredictionService/Predict``...) and the fields Envoy's
  ``grpc_field_extraction`` filter read from the first request message, each a list of strings
  (``{"model_spec.name": ["foo"], "model_spec.version.value": ["3"], "model_spec.version_label": []}``).
  :data:`GRPC_MODEL_METHODS` says which fields to extract for each method; the xDS builders configure the
  filter from it.

What extraction cannot see (measured with Envoy 1.40): an absent field and a proto3 default are the same
empty list, so ``version { value: 0 }`` reads as "no version" (latest), and a missing ``model_spec`` is told
from a ``model_spec`` without a name only by its other fields (signature name, version, label; for
MultiInference, a task's ``method_name``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import quote

from tfscachectl.errors import Code, ServingError
from tfscachectl.tfserving.rest_paths import API_PATH, RestApi, parse_rest_path

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
RELOAD_CONFIG_METHOD = f"{MODEL_SERVICE}.HandleReloadConfigRequest"
#: The answer to a client that tries to reconfigure the nodes through the cache.
RELOAD_CONFIG_DENIED = (
    "HandleReloadConfigRequest is not allowed through tfscache: the cache manages the model configuration"
)

#: Request headers the daemon sets on a routed request: the chosen node (``host:port``, read by the
#: clusters' ``override_host`` policy) and the model (hashed by the fallback ``ring_hash`` policy).
NODE_HEADER = "x-tfscache-node"
MODEL_HEADER = "x-tfscache-model"
# Printable ASCII stays as it is in the model header; '%', space and anything else is percent-encoded.
_HEADER_SAFE = "!\"#$&'()*+,/:;<=>?@[\\]^`{|}"

_GRPC_CONTENT_TYPE = "application/grpc"
_GRPC_CONTENT_TYPE_PREFIXES = (f"{_GRPC_CONTENT_TYPE}+", f"{_GRPC_CONTENT_TYPE};")
# Envoy writes an int64 field as its decimal text.
_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)
_INT64 = (-(2**63), 2**63 - 1)


class RequestProtocol(enum.StrEnum):
    """The client API a request came in on."""

    REST = "rest"
    GRPC = "grpc"


class ModelApi(enum.StrEnum):
    """What a request asks of the model (the same names for REST and gRPC)."""

    PREDICT = "predict"
    CLASSIFY = "classify"
    REGRESS = "regress"
    MULTI_INFERENCE = "multi_inference"
    METADATA = "metadata"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """The model a client request names: a version, a label, or neither (the latest version).

    ``name`` is what the client sent (percent-decoded for REST), never empty. ``label`` may be ``""``
    when a gRPC client set an empty ``version_label`` (TF Serving then refuses it as an unknown label).
    """

    name: str
    version: int | None
    label: str | None
    api: ModelApi
    protocol: RequestProtocol


class NotAnApiPath(ServingError):
    """A REST path outside ``/v1/``: TF Serving answers 404 with libevent's HTML page, not JSON."""

    def __init__(self, path: str) -> None:
        super().__init__(Code.NOT_FOUND, f"Not an API path: {path}")


def is_grpc(content_type: str) -> bool:
    """Whether a request is gRPC, by Envoy's own rule: its content type is ``application/grpc[+...|;...]``."""
    value = content_type.strip().lower()
    return value == _GRPC_CONTENT_TYPE or value.startswith(_GRPC_CONTENT_TYPE_PREFIXES)


def model_header_value(name: str) -> str:
    """The value of :data:`MODEL_HEADER` for a model: its name, percent-encoded (UTF-8) where a header
    value could not hold it (any byte outside printable ASCII, a space, ``%``)."""
    return quote(name.encode("utf-8", "surrogateescape"), safe=_HEADER_SAFE)


# ----- REST ---------------------------------------------------------------------------------------------

_REST_APIS: Mapping[RestApi, ModelApi] = MappingProxyType(
    {
        RestApi.PREDICT: ModelApi.PREDICT,
        RestApi.CLASSIFY: ModelApi.CLASSIFY,
        RestApi.REGRESS: ModelApi.REGRESS,
        RestApi.MODEL_METADATA: ModelApi.METADATA,
        RestApi.MODEL_STATUS: ModelApi.STATUS,
    }
)


def parse_rest_request(method: str, raw_path: str) -> ModelRequest:
    """The model a REST request names, or the ServingError TF Serving answers it with.

    ``raw_path`` is the request target as received (percent-encoded, with its query string).
    """
    if API_PATH.fullmatch(raw_path) is None:
        raise NotAnApiPath(raw_path)
    target = parse_rest_path(method, raw_path)
    return ModelRequest(
        name=target.model_name,
        version=target.version,
        label=target.label,
        api=_REST_APIS[target.api],
        protocol=RequestProtocol.REST,
    )


# ----- gRPC ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrpcModelMethod:
    """A gRPC method that names a model, and where its request holds the ``ModelSpec``."""

    api: ModelApi
    spec_path: str  # "model_spec", or "tasks.model_spec" (MultiInference: the first task's spec counts)
    presence_path: str | None = None  # a further field that shows the spec's container was sent

    @property
    def name_field(self) -> str:
        return f"{self.spec_path}.name"

    @property
    def version_field(self) -> str:
        return f"{self.spec_path}.version.value"

    @property
    def label_field(self) -> str:
        return f"{self.spec_path}.version_label"

    @property
    def signature_field(self) -> str:
        return f"{self.spec_path}.signature_name"

    @property
    def extracted_fields(self) -> tuple[str, ...]:
        """The field paths ``grpc_field_extraction`` must extract for this method."""
        fields = (self.name_field, self.version_field, self.label_field, self.signature_field)
        return fields if self.presence_path is None else (*fields, self.presence_path)


#: The methods that name a model, by full name (``package.Service.Method``, as Envoy's
#: ``extractions_by_method`` keys them).
GRPC_MODEL_METHODS: Mapping[str, GrpcModelMethod] = MappingProxyType(
    {
        f"{PREDICTION_SERVICE}.Predict": GrpcModelMethod(ModelApi.PREDICT, "model_spec"),
        f"{PREDICTION_SERVICE}.Classify": GrpcModelMethod(ModelApi.CLASSIFY, "model_spec"),
        f"{PREDICTION_SERVICE}.Regress": GrpcModelMethod(ModelApi.REGRESS, "model_spec"),
        f"{PREDICTION_SERVICE}.GetModelMetadata": GrpcModelMethod(ModelApi.METADATA, "model_spec"),
        f"{PREDICTION_SERVICE}.MultiInference": GrpcModelMethod(
            ModelApi.MULTI_INFERENCE, "tasks.model_spec", presence_path="tasks.method_name"
        ),
        f"{MODEL_SERVICE}.GetModelStatus": GrpcModelMethod(ModelApi.STATUS, "model_spec"),
    }
)


def grpc_method_name(path: str) -> str:
    """``/pkg.Service/Method`` -> ``pkg.Service.Method``; anything else is returned unchanged."""
    service, slash, method = path.removeprefix("/").partition("/")
    return f"{service}.{method}" if slash and service and method and "/" not in method else path


def parse_grpc_request(path: str, fields: Mapping[str, Sequence[str]]) -> ModelRequest:
    """The model a gRPC request names, or the ServingError TF Serving answers it with.

    ``fields`` maps each extracted field path to the values Envoy found (missing paths count as empty).
    """
    method_name = grpc_method_name(path)
    method = GRPC_MODEL_METHODS.get(method_name)
    if method is None:
        if method_name == RELOAD_CONFIG_METHOD:
            raise ServingError(Code.PERMISSION_DENIED, RELOAD_CONFIG_DENIED)
        # What a gRPC server answers for a method it does not serve (SessionService is not registered).
        raise ServingError(Code.UNIMPLEMENTED, "")
    names = fields.get(method.name_field, ())
    versions = fields.get(method.version_field, ())
    labels = fields.get(method.label_field, ())
    version = _version(versions[0]) if versions else None
    label = labels[0] if labels else None
    if not names or not names[0]:
        raise _unnamed(method, version, _spec_sent(method, fields))
    return ModelRequest(
        name=names[0], version=version, label=label, api=method.api, protocol=RequestProtocol.GRPC
    )


def _version(text: str) -> int:
    number = int(text) if _INTEGER.fullmatch(text) else None
    if number is None or not _INT64[0] <= number <= _INT64[1]:
        raise ServingError(Code.INVALID_ARGUMENT, f"Failed to convert version: {text} to numeric.")
    return number


def _spec_sent(method: GrpcModelMethod, fields: Mapping[str, Sequence[str]]) -> bool:
    """Whether any extracted field shows the model spec (or, for MultiInference, a task) was sent."""
    evidence = (method.version_field, method.label_field, method.signature_field, method.presence_path)
    return any(fields.get(path) for path in evidence if path is not None)


def _unnamed(method: GrpcModelMethod, version: int | None, spec_sent: bool) -> ServingError:
    """TF Serving's answer to a request whose model spec has no name (or that has no model spec)."""
    if method.api is ModelApi.STATUS:
        if not spec_sent:
            return ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
        # GetModelStatus looks the empty name up like any other.
        return status_not_found("", version)
    if spec_sent:
        return ServingError(Code.INVALID_ARGUMENT, "ModelSpec has no name specified.")
    if method.api is ModelApi.MULTI_INFERENCE:
        return ServingError(Code.INVALID_ARGUMENT, "MultiInferenceRequest must contain at least one task.")
    return ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")


# ----- TF Serving's answers about models it does not have -----------------------------------------------


def status_not_found(name: str, version: int | None) -> ServingError:
    """GetModelStatus of a model (or version) TF Serving has never seen."""
    if version is None:
        return ServingError(Code.NOT_FOUND, f"Could not find any versions of model {name}")
    return ServingError(Code.NOT_FOUND, f"Could not find version {version} of model {name}")


def model_not_found(request: ModelRequest) -> ServingError:
    """What TF Serving answers ``request`` with when it has no such model (an unknown name)."""
    if request.api is ModelApi.STATUS:
        return status_not_found(request.name, request.version)  # a label is ignored by status
    if request.label is not None:
        return ServingError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {request.label}")
    if request.version is not None:
        return ServingError(
            Code.NOT_FOUND, f"Servable not found for request: Specific({request.name}, {request.version})"
        )
    return ServingError(Code.NOT_FOUND, f"Servable not found for request: Latest({request.name})")
