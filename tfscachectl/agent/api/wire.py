"""The API's wire format: its protobuf messages (``agent.proto``) to and from plain values.

The server encodes what ``NodeAgent`` returns; the client decodes into ``tfscachectl.agent.api.values``.
The tables between the proto enums and the names used in Python are here and nowhere else, and so is the
trailing metadata that marks the errors the agent answers itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from tfscachectl.agent.api import agent_pb2
from tfscachectl.agent.api.values import (
    EnsureResult,
    EventKind,
    ModelInfo,
    ModelState,
    NodeStatus,
    Outcome,
    ResidencyEvent,
    StoredModel,
    StoredModelVersion,
    StoreListing,
)
from tfscachectl.core.refs import ModelKey
from tfscachectl.errors import Code, ServingError

_T = TypeVar("_T", bound=str)

#: Trailing metadata on every error the agent itself answers (a transport error has none).
ERROR_SOURCE_KEY = "tfscache-error-source"
ERROR_SOURCE_AGENT = "agent"

OUTCOMES: dict[Outcome, agent_pb2.Outcome] = {
    "hit": agent_pb2.OUTCOME_HIT,
    "loaded": agent_pb2.OUTCOME_LOADED,
    "joined": agent_pb2.OUTCOME_JOINED,
    "started": agent_pb2.OUTCOME_STARTED,
}
STATES: dict[ModelState, agent_pb2.ModelState] = {
    "loading": agent_pb2.MODEL_STATE_LOADING,
    "resident": agent_pb2.MODEL_STATE_RESIDENT,
    "unloading": agent_pb2.MODEL_STATE_UNLOADING,
    "cached": agent_pb2.MODEL_STATE_CACHED,
}
EVENT_KINDS: dict[EventKind, agent_pb2.EventKind] = {
    "loaded": agent_pb2.EVENT_KIND_LOADED,
    "unloading": agent_pb2.EVENT_KIND_UNLOADING,
    "unloaded": agent_pb2.EVENT_KIND_UNLOADED,
    "synced": agent_pb2.EVENT_KIND_SYNCED,
}


def _name_of(table: Mapping[_T, int], number: int, what: str) -> _T:
    for name, value in table.items():
        if value == number:
            return name
    raise ServingError(Code.INTERNAL, f"The node agent sent an unknown {what} ({number}); versions differ?")


# ----- keys ---------------------------------------------------------------------------------------


def encode_key(key: ModelKey) -> agent_pb2.ModelKey:
    return agent_pb2.ModelKey(name=key.name, version=key.version)


def decode_key(message: agent_pb2.ModelKey) -> ModelKey:
    return ModelKey(message.name, message.version)


# ----- ensure -------------------------------------------------------------------------------------


def encode_ensure(key: ModelKey, outcome: Outcome, seconds: float) -> agent_pb2.EnsureResponse:
    return agent_pb2.EnsureResponse(key=encode_key(key), outcome=OUTCOMES[outcome], seconds=seconds)


def decode_ensure(message: agent_pb2.EnsureResponse) -> EnsureResult:
    return EnsureResult(
        decode_key(message.key), _name_of(OUTCOMES, message.outcome, "ensure outcome"), message.seconds
    )


# ----- residency events ---------------------------------------------------------------------------


def encode_event(event: ResidencyEvent) -> agent_pb2.ResidencyEvent:
    if event.key is None:
        return agent_pb2.ResidencyEvent(kind=EVENT_KINDS[event.kind])
    return agent_pb2.ResidencyEvent(kind=EVENT_KINDS[event.kind], key=encode_key(event.key))


def decode_event(message: agent_pb2.ResidencyEvent) -> ResidencyEvent:
    kind = _name_of(EVENT_KINDS, message.kind, "residency event")
    return ResidencyEvent(kind, None if kind == "synced" else decode_key(message.key))


# ----- status -------------------------------------------------------------------------------------


def _state_number(state: str) -> agent_pb2.ModelState:
    return next((n for name, n in STATES.items() if name == state), agent_pb2.MODEL_STATE_UNSPECIFIED)


def _encode_model(model: ModelInfo) -> agent_pb2.ModelStatus:
    message = agent_pb2.ModelStatus(
        name=model.name,
        version=model.version,
        state=_state_number(model.state),
        memory_bytes=model.memory_bytes,
        disk_bytes=model.disk_bytes,
        last_used=model.last_used,
        hits=model.hits,
        loads=model.loads,
        pinned=model.pinned,
    )
    if model.last_load_seconds is not None:
        message.last_load_seconds = model.last_load_seconds
    return message


def encode_status(status: NodeStatus) -> agent_pb2.StatusResponse:
    message = agent_pb2.StatusResponse(
        node_id=status.node_id,
        used_models=status.used_models,
        used_bytes=status.used_bytes,
        disk_used_bytes=status.disk_used_bytes,
        models=[_encode_model(m) for m in status.models],
        counters=dict(status.counters),
    )
    if status.max_models is not None:
        message.max_models = status.max_models
    if status.max_bytes is not None:
        message.max_bytes = status.max_bytes
    if status.disk_budget_bytes is not None:
        message.disk_budget_bytes = status.disk_budget_bytes
    return message


def _decode_model(message: agent_pb2.ModelStatus) -> ModelInfo:
    return ModelInfo(
        name=message.name,
        version=message.version,
        state=_name_of(STATES, message.state, "model state"),
        memory_bytes=message.memory_bytes,
        disk_bytes=message.disk_bytes,
        last_used=message.last_used,
        hits=message.hits,
        loads=message.loads,
        last_load_seconds=message.last_load_seconds if message.HasField("last_load_seconds") else None,
        pinned=message.pinned,
    )


def decode_status(message: agent_pb2.StatusResponse) -> NodeStatus:
    return NodeStatus(
        node_id=message.node_id,
        max_models=message.max_models if message.HasField("max_models") else None,
        max_bytes=message.max_bytes if message.HasField("max_bytes") else None,
        used_models=message.used_models,
        used_bytes=message.used_bytes,
        disk_budget_bytes=message.disk_budget_bytes if message.HasField("disk_budget_bytes") else None,
        disk_used_bytes=message.disk_used_bytes,
        models=tuple(_decode_model(m) for m in message.models),
        counters=dict(message.counters),
    )


# ----- the store's listing ------------------------------------------------------------------------


def encode_listing(listing: StoreListing) -> agent_pb2.ListStoreResponse:
    return agent_pb2.ListStoreResponse(
        store=listing.store,
        models=[
            agent_pb2.StoredModel(
                name=model.name,
                versions=[
                    agent_pb2.StoredModelVersion(version=v.version, bytes=v.bytes) for v in model.versions
                ],
                labels=dict(model.labels),
            )
            for model in listing.models
        ],
        truncated=listing.truncated,
    )


def decode_listing(message: agent_pb2.ListStoreResponse) -> StoreListing:
    return StoreListing(
        store=message.store,
        models=tuple(
            StoredModel(
                name=model.name,
                versions=tuple(StoredModelVersion(v.version, v.bytes) for v in model.versions),
                labels=dict(model.labels),
            )
            for model in message.models
        ),
        truncated=message.truncated,
    )
