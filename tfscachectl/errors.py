"""The project's one exception tree.

::

    TfsCacheError                   anything tfscache raises on purpose
    ├── ConfigError                 bad settings, flags or config files (the user must fix them)
    │   └── xds.InconsistentSnapshotError   an xDS snapshot that refers to resources it lacks
    ├── ServingError                a TF Serving status: a code (TF/gRPC numbering) and a message,
    │   │                           shown to clients exactly as TF Serving would show it
    │   └── agent.api.client.AgentUnreachableError   UNAVAILABLE: an agent could not be reached
    ├── cli.admin_client.AdminError  an operator command failed: the daemon's error, in one line
    │   ├── AdminUnreachableError   the admin API cannot be reached
    │   └── AdminAuthError          the admin API refused the token
    ├── discovery.base.DiscoveryError   etcd or Consul refused a request (retried; never reaches callers)
    ├── StoreError                  the model store (directory, S3) failed or holds something unusable
    │   └── ModelNotInStoreError    the store has no such model or version
    └── ProcessError                a child process (Envoy, etcd, a serving backend) failed to start or died
        └── xds.ConfigRejectedError, xds.ConfigNotAppliedError   Envoy NACKed a snapshot, or never ACKed it

Foreign exceptions (botocore, grpc, aiohttp, TensorFlow) are translated into this tree at the module that
talks to the foreign system, with ``raise ... from exc``. The CLI catches only this tree.
"""

from __future__ import annotations

import enum
from http import HTTPStatus


class Code(enum.IntEnum):
    """TensorFlow status codes; the numbering is gRPC's."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @property
    def http_status(self) -> int:
        """TF Serving's mapping of a status code to an HTTP status (http_server.cc)."""
        return _HTTP_STATUS[self]


_HTTP_STATUS: dict[Code, int] = {
    Code.OK: HTTPStatus.OK,
    Code.CANCELLED: 499,
    Code.UNKNOWN: HTTPStatus.INTERNAL_SERVER_ERROR,
    Code.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    Code.DEADLINE_EXCEEDED: HTTPStatus.GATEWAY_TIMEOUT,
    Code.NOT_FOUND: HTTPStatus.NOT_FOUND,
    Code.ALREADY_EXISTS: HTTPStatus.CONFLICT,
    Code.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
    Code.RESOURCE_EXHAUSTED: HTTPStatus.TOO_MANY_REQUESTS,
    Code.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    Code.ABORTED: HTTPStatus.CONFLICT,
    Code.OUT_OF_RANGE: HTTPStatus.BAD_REQUEST,
    Code.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
    Code.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
    Code.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    Code.DATA_LOSS: HTTPStatus.INTERNAL_SERVER_ERROR,
    Code.UNAUTHENTICATED: HTTPStatus.UNAUTHORIZED,
}


class TfsCacheError(Exception):
    """Base of every error tfscache raises on purpose."""


class ConfigError(TfsCacheError):
    """Settings, flags or a config file are wrong."""


class ServingError(TfsCacheError):
    """A TF Serving status: what a client of TF Serving would see."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


class StoreError(TfsCacheError):
    """The model store failed, or holds something that cannot be served."""


class ModelNotInStoreError(StoreError):
    """The store has no such model, or no such version of it."""


class ProcessError(TfsCacheError):
    """A child process failed to start, or died."""
