"""What the agent's and the daemon's settings share: a YAML file overridden by prefixed environment variables.

``FileThenEnvironment`` is the base of both settings classes (the environment wins over values from the file);
``load_settings_file`` reads and checks the file and turns validation errors into one ``ConfigError`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from tfscachectl.errors import ConfigError

S = TypeVar("S", bound=BaseSettings)


def check_host_port(value: str) -> str:
    """``value`` if it is ``host:port``, else ``ValueError`` (for pydantic validators)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected host:port, got {value!r}")
    return value


class FileThenEnvironment(BaseSettings):
    """Values given in code (read from the file) are overridden by the environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings


def load_settings_file(cls: type[S], what: str, path: Path | None, **values: Any) -> S:
    """``cls`` from an optional YAML file (then ``values``), overridden by the environment."""
    merged: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"Cannot read {what} settings {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{what.capitalize()} settings {path} must be a mapping of settings")
        merged.update(loaded)
    merged.update(values)
    try:
        return cls(**merged)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"Invalid {what} settings: {details}") from exc
