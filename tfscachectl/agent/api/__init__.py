"""The node agent's gRPC API (``agent.proto``, package ``tfscache.agent.v1``), for the daemon and the CLI.

- ``agent.proto``: the service and its messages; ``agent_pb2*`` are generated from it by ``make protos``
- ``values``: what the API answers, as plain frozen dataclasses
- ``wire``: protobuf messages to and from those values
- ``server``: ``AgentService`` (the servicer over a ``NodeAgent``) and ``AgentServer`` (``grpc.aio``)
- ``client``: ``AgentClient``
- ``process``: the ``tfscachectl agent`` process: store, agent, API, metrics page, signals

Importing this package, ``client`` or ``values`` does not import TensorFlow; ``process`` does (``NodeAgent``
talks to TF Serving with its protos).
"""

from tfscachectl.agent.api.client import AgentClient, AgentUnreachableError, ClientTimeouts
from tfscachectl.agent.api.values import (
    MAX_RESOLVE_LATEST_NAMES,
    EnsureResult,
    EventKind,
    LatestVersion,
    ModelHits,
    ModelInfo,
    ModelState,
    NodeStatus,
    Outcome,
    ResidencyEvent,
)

__all__ = [
    "MAX_RESOLVE_LATEST_NAMES",
    "AgentClient",
    "AgentUnreachableError",
    "ClientTimeouts",
    "EnsureResult",
    "EventKind",
    "LatestVersion",
    "ModelHits",
    "ModelInfo",
    "ModelState",
    "NodeStatus",
    "Outcome",
    "ResidencyEvent",
]
