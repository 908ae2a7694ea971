"""TF Serving's ``ModelServerConfig``: reading it, and the checks a reload makes before changing anything."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfscachectl.errors import Code, ConfigError, ServingError
from tfscachectl.tfserving.versions import Latest, VersionPolicy, policy_from_proto

TENSORFLOW_PLATFORM = "tensorflow"
SUPPORTED_PLATFORMS = frozenset({TENSORFLOW_PLATFORM})
_DEFAULT_POLICY: VersionPolicy = Latest(1)


@dataclass(frozen=True)
class ModelEntry:
    """One model of a ``model_config_list``, reduced to what the backend uses."""

    name: str
    base_path: str
    platform: str = TENSORFLOW_PLATFORM
    policy: VersionPolicy = _DEFAULT_POLICY
    labels: tuple[tuple[str, int], ...] = field(default=())

    @property
    def label_map(self) -> dict[str, int]:
        return dict(self.labels)


def _pb() -> Any:
    from tensorflow_serving.config import model_server_config_pb2

    return model_server_config_pb2


def parse_text(text: str) -> Any:
    """A ``ModelServerConfig`` proto from its text format (a ``--model_config_file``)."""
    from google.protobuf import text_format

    config = _pb().ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"Invalid ModelServerConfig text: {exc}") from exc
    return config


def read_file(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"Cannot read model config file {path}: {exc.strerror}") from exc
    return parse_text(text)


def single_model_config(name: str, base_path: str) -> Any:
    """The config ``--model_name`` / ``--model_base_path`` stand for."""
    config = _pb().ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = base_path
    model.model_platform = TENSORFLOW_PLATFORM
    return config


def entries(config: Any) -> list[ModelEntry]:
    """The models of a ``ModelServerConfig`` whose ``model_config_list`` is set."""
    result = []
    for model in config.model_config_list.config:
        platform = model.model_platform or TENSORFLOW_PLATFORM
        policy = policy_from_proto(model.model_version_policy)
        labels = tuple(sorted((str(k), int(v)) for k, v in model.version_labels.items()))
        result.append(ModelEntry(model.name, model.base_path, platform, policy, labels))
    return result


def validate(new: list[ModelEntry], current: dict[str, ModelEntry]) -> None:
    """The checks TF Serving makes before it changes anything; raises INVALID_ARGUMENT."""
    seen: set[str] = set()
    for entry in new:
        if entry.name in seen:
            raise ServingError(
                Code.INVALID_ARGUMENT, f"Illegal to list model {entry.name} multiple times in config list"
            )
        seen.add(entry.name)
        if not _is_absolute_or_uri(entry.base_path):
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Expected model {entry.name} to have an absolute path or URI; "
                f"got base_path()={entry.base_path}",
            )
        old = current.get(entry.name)
        if old is not None and old.platform != entry.platform:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Illegal to change a model's platform. For model {entry.name} platform was "
                f"{old.platform} and new platform requested is {entry.platform}",
            )


def check_platforms(new: list[ModelEntry]) -> None:
    for entry in new:
        if entry.platform not in SUPPORTED_PLATFORMS:
            raise ServingError(
                Code.INVALID_ARGUMENT, f"Model {entry.name} requests unsupported platform {entry.platform}"
            )


def _is_absolute_or_uri(path: str) -> bool:
    return posixpath.isabs(path) or "://" in path
