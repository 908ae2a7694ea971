"""What the agent's API answers, as plain frozen values: no protobuf, and no TensorFlow.

They mirror the dataclasses of the same names in ``tfscachectl.agent.node``, which a client cannot import
cheaply: ``node`` imports TF Serving's protos, and with them all of TensorFlow. ``EnsureResult`` has one more
outcome, ``started``: a preload (``wait=False``) that started a load and did not wait for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from tfscachectl.core.refs import ModelKey

Outcome = Literal["hit", "loaded", "joined", "started"]
EventKind = Literal["loaded", "unloading", "unloaded", "synced"]
ModelState = Literal["loading", "resident", "unloading", "cached"]


@dataclass(frozen=True, slots=True)
class EnsureResult:
    key: ModelKey
    outcome: Outcome
    seconds: float  # time spent in the agent


@dataclass(frozen=True, slots=True)
class ResidencyEvent:
    kind: EventKind
    key: ModelKey | None
    """None only for ``synced`` (the end of a stream's first snapshot)."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    version: int
    state: ModelState
    memory_bytes: int
    disk_bytes: int
    last_used: float  # unix time, 0 if never
    hits: int
    loads: int
    last_load_seconds: float | None
    pinned: bool

    @property
    def key(self) -> ModelKey:
        return ModelKey(self.name, self.version)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node_id: str
    max_models: int | None
    max_bytes: int | None
    used_models: int
    used_bytes: int
    disk_budget_bytes: int | None
    disk_used_bytes: int
    models: tuple[ModelInfo, ...]
    counters: Mapping[str, int] = field(default_factory=dict)

    def model(self, key: ModelKey) -> ModelInfo | None:
        """The entry of one version, or None if the node neither holds nor caches it."""
        return next((m for m in self.models if m.name == key.name and m.version == key.version), None)

    def in_state(self, state: ModelState) -> tuple[ModelKey, ...]:
        return tuple(m.key for m in self.models if m.state == state)


@dataclass(frozen=True, slots=True)
class ModelHits:
    """Requests for a version served without asking the agent (the fast path), as the daemon saw them."""

    name: str
    version: int
    hits: int
    unix_time: float  # when the last of them was served


#: The most names one ``ResolveLatest`` call may ask about (each may read the store).
MAX_RESOLVE_LATEST_NAMES = 1_000


@dataclass(frozen=True, slots=True)
class LatestVersion:
    """A model's latest version as the agent resolves it, or (``version`` None) why it has none."""

    name: str
    version: int | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class StoredModelVersion:
    """One version in the model store and the total size of its files."""

    version: int
    bytes: int


@dataclass(frozen=True, slots=True)
class StoredModel:
    """A model in the store: its versions (ascending) and its labels (label -> version)."""

    name: str
    versions: tuple[StoredModelVersion, ...]
    labels: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoreListing:
    """What the store holds, as an agent listed it; ``truncated``: more models than the limit asked."""

    store: str
    models: tuple[StoredModel, ...]
    truncated: bool = False
