from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_HIT: _ClassVar[Outcome]
    OUTCOME_LOADED: _ClassVar[Outcome]
    OUTCOME_JOINED: _ClassVar[Outcome]
    OUTCOME_STARTED: _ClassVar[Outcome]

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_LOADING: _ClassVar[ModelState]
    MODEL_STATE_RESIDENT: _ClassVar[ModelState]
    MODEL_STATE_UNLOADING: _ClassVar[ModelState]
    MODEL_STATE_CACHED: _ClassVar[ModelState]

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_LOADED: _ClassVar[EventKind]
    EVENT_KIND_UNLOADING: _ClassVar[EventKind]
    EVENT_KIND_UNLOADED: _ClassVar[EventKind]
    EVENT_KIND_SYNCED: _ClassVar[EventKind]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_HIT: Outcome
OUTCOME_LOADED: Outcome
OUTCOME_JOINED: Outcome
OUTCOME_STARTED: Outcome
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_LOADING: ModelState
MODEL_STATE_RESIDENT: ModelState
MODEL_STATE_UNLOADING: ModelState
MODEL_STATE_CACHED: ModelState
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_LOADED: EventKind
EVENT_KIND_UNLOADING: EventKind
EVENT_KIND_UNLOADED: EventKind
EVENT_KIND_SYNCED: EventKind

class ModelKey(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class EnsureRequest(_message.Message):
    __slots__ = ("name", "version", "label", "wait")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    label: str
    wait: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., label: _Optional[str] = ..., wait: _Optional[bool] = ...) -> None: ...

class EnsureResponse(_message.Message):
    __slots__ = ("key", "outcome", "seconds")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    key: ModelKey
    outcome: Outcome
    seconds: float
    def __init__(self, key: _Optional[_Union[ModelKey, _Mapping]] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., seconds: _Optional[float] = ...) -> None: ...

class EvictRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class EvictResponse(_message.Message):
    __slots__ = ("evicted",)
    EVICTED_FIELD_NUMBER: _ClassVar[int]
    evicted: _containers.RepeatedCompositeFieldContainer[ModelKey]
    def __init__(self, evicted: _Optional[_Iterable[_Union[ModelKey, _Mapping]]] = ...) -> None: ...

class PinRequest(_message.Message):
    __slots__ = ("name", "version", "pinned")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    pinned: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., pinned: _Optional[bool] = ...) -> None: ...

class PinResponse(_message.Message):
    __slots__ = ("key", "pinned")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    key: ModelKey
    pinned: bool
    def __init__(self, key: _Optional[_Union[ModelKey, _Mapping]] = ..., pinned: _Optional[bool] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("name", "version", "state", "memory_bytes", "disk_bytes", "last_used", "hits", "loads", "last_load_seconds", "pinned")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    LOADS_FIELD_NUMBER: _ClassVar[int]
    LAST_LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    state: ModelState
    memory_bytes: int
    disk_bytes: int
    last_used: float
    hits: int
    loads: int
    last_load_seconds: float
    pinned: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., state: _Optional[_Union[ModelState, str]] = ..., memory_bytes: _Optional[int] = ..., disk_bytes: _Optional[int] = ..., last_used: _Optional[float] = ..., hits: _Optional[int] = ..., loads: _Optional[int] = ..., last_load_seconds: _Optional[float] = ..., pinned: _Optional[bool] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node_id", "max_models", "max_bytes", "used_models", "used_bytes", "disk_budget_bytes", "disk_used_bytes", "models", "counters")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_MODELS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_MODELS_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    max_models: int
    max_bytes: int
    used_models: int
    used_bytes: int
    disk_budget_bytes: int
    disk_used_bytes: int
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    counters: _containers.ScalarMap[str, int]
    def __init__(self, node_id: _Optional[str] = ..., max_models: _Optional[int] = ..., max_bytes: _Optional[int] = ..., used_models: _Optional[int] = ..., used_bytes: _Optional[int] = ..., disk_budget_bytes: _Optional[int] = ..., disk_used_bytes: _Optional[int] = ..., models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ..., counters: _Optional[_Mapping[str, int]] = ...) -> None: ...

class WatchResidencyRequest(_message.Message):
    __slots__ = ("watcher", "confirm_unloads")
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_UNLOADS_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    confirm_unloads: bool
    def __init__(self, watcher: _Optional[str] = ..., confirm_unloads: _Optional[bool] = ...) -> None: ...

class ResidencyEvent(_message.Message):
    __slots__ = ("kind", "key")
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    kind: EventKind
    key: ModelKey
    def __init__(self, kind: _Optional[_Union[EventKind, str]] = ..., key: _Optional[_Union[ModelKey, _Mapping]] = ...) -> None: ...

class ConfirmUnloadRequest(_message.Message):
    __slots__ = ("watcher", "key")
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    key: ModelKey
    def __init__(self, watcher: _Optional[str] = ..., key: _Optional[_Union[ModelKey, _Mapping]] = ...) -> None: ...

class ConfirmUnloadResponse(_message.Message):
    __slots__ = ("awaited",)
    AWAITED_FIELD_NUMBER: _ClassVar[int]
    awaited: bool
    def __init__(self, awaited: _Optional[bool] = ...) -> None: ...

class ModelHits(_message.Message):
    __slots__ = ("name", "version", "hits", "unix_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    UNIX_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    hits: int
    unix_time: float
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., hits: _Optional[int] = ..., unix_time: _Optional[float] = ...) -> None: ...

class TouchRequest(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[ModelHits]
    def __init__(self, hits: _Optional[_Iterable[_Union[ModelHits, _Mapping]]] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("name", "version", "label")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    label: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("key", "resident")
    KEY_FIELD_NUMBER: _ClassVar[int]
    RESIDENT_FIELD_NUMBER: _ClassVar[int]
    key: ModelKey
    resident: bool
    def __init__(self, key: _Optional[_Union[ModelKey, _Mapping]] = ..., resident: _Optional[bool] = ...) -> None: ...

class ResolveLatestRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class LatestVersion(_message.Message):
    __slots__ = ("name", "version", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    error: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ResolveLatestResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[LatestVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[LatestVersion, _Mapping]]] = ...) -> None: ...

class TouchResponse(_message.Message):
    __slots__ = ("accepted", "ignored")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    ignored: int
    def __init__(self, accepted: _Optional[int] = ..., ignored: _Optional[int] = ...) -> None: ...

class ListStoreRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class StoredModelVersion(_message.Message):
    __slots__ = ("version", "bytes")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    version: int
    bytes: int
    def __init__(self, version: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class StoredModel(_message.Message):
    __slots__ = ("name", "versions", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: _containers.RepeatedCompositeFieldContainer[StoredModelVersion]
    labels: _containers.ScalarMap[str, int]
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[StoredModelVersion, _Mapping]]] = ..., labels: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ListStoreResponse(_message.Message):
    __slots__ = ("store", "models", "truncated")
    STORE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    store: str
    models: _containers.RepeatedCompositeFieldContainer[StoredModel]
    truncated: bool
    def __init__(self, store: _Optional[str] = ..., models: _Optional[_Iterable[_Union[StoredModel, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...
