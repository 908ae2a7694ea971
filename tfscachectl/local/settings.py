"""The local stack's settings: one typed object, from a YAML file (``--config``) and the command's options.

Options given on the command line override the file; the file overrides the defaults. Relative paths are
relative to the current directory. Built in the command, never at import.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tfscachectl.errors import ConfigError
from tfscachectl.stores.locations import parse_store_url

DEFAULT_STATE_DIR = Path(".tfscache")
DEFAULT_EXAMPLE_TENANTS = 20
#: The daemon's admin API: the port ``tfscachectl status`` and the other operator commands call by default.
DEFAULT_ADMIN_API_PORT = 18002
_MAX_PORT = 65535

Port = int


class StackS3(BaseModel):
    """How the agents reach an S3 store (credentials come from boto3's usual chain, never from here)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint_url: str | None = Field(None, description="an S3-compatible endpoint (MinIO, moto...)")
    region: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"


class StackTimeouts(BaseModel):
    """Seconds allowed for each part of the stack to become ready, and for a child to stop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    examples: float = Field(900.0, gt=0, description="generating the example models on first run")
    serving_ready: float = Field(180.0, gt=0, description="a serving backend answering (TensorFlow's import)")
    agent_ready: float = Field(120.0, gt=0, description="a node agent's API accepting connections")
    daemon_ready: float = Field(60.0, gt=0, description="the daemon's xDS server accepting connections")
    envoy_ready: float = Field(60.0, gt=0, description="Envoy LIVE with both client listeners open")
    stop_grace: float = Field(10.0, gt=0, description="SIGTERM to SIGKILL, per child")
    ensure: float = Field(120.0, gt=0, description="how long a request waits for its model to load")


class StackSettings(BaseModel):
    """Everything ``tfscachectl up`` needs; every field is described in ``docs/local-stack.md``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="the IP address of Envoy's REST and gRPC listeners")
    rest_port: Port = Field(8501, ge=1, le=_MAX_PORT, description="Envoy's REST listener (TF Serving's)")
    grpc_port: Port = Field(8500, ge=1, le=_MAX_PORT, description="Envoy's gRPC listener (TF Serving's)")
    admin_port: Port = Field(9901, ge=0, le=_MAX_PORT, description="Envoy's admin interface (0: any)")
    xds_port: Port = Field(0, ge=0, le=_MAX_PORT, description="the daemon's xDS server (0: any free port)")
    ext_proc_port: Port = Field(0, ge=0, le=_MAX_PORT, description="the daemon's ext_proc server (0: any)")
    metrics_port: Port = Field(0, ge=0, le=_MAX_PORT, description="the daemon's /metrics page (0: any)")
    admin_api_port: Port = Field(
        DEFAULT_ADMIN_API_PORT, ge=0, le=_MAX_PORT, description="the daemon's admin API (0: any free port)"
    )
    node_base_port: Port | None = Field(
        None,
        ge=1,
        le=_MAX_PORT,
        description="node i (from 0) uses 4 ports from base + 4*i; none: any free ports",
    )
    nodes: int = Field(2, ge=1, le=64, description="serving backends, each with its node agent")
    replicas: int = Field(1, ge=1, description="nodes that serve each model")
    max_models: int | None = Field(2, ge=1, description="models in memory per node (null: no limit)")
    max_bytes: int | None = Field(None, ge=1, description="memory budget per node, in bytes")
    disk_bytes: int | None = Field(None, ge=1, description="disk cache budget per node, in bytes")
    guard_window: float = Field(0.0, ge=0, description="seconds a model just ensured is not evicted")
    model_dir: Path | None = Field(None, description="a model store directory (default: example models)")
    store: str | None = Field(None, description="a model store URL: s3://bucket/prefix, file:///dir, a dir")
    s3: StackS3 = StackS3()
    example_tenants: int = Field(
        DEFAULT_EXAMPLE_TENANTS, ge=1, description="tenant models generated when no store is given"
    )
    example_model: str | None = Field(None, description="the model the printed examples call")
    tf_serving_binary: str | None = Field(
        None, description="run this tensorflow_model_server instead of the bundled backend"
    )
    state_dir: Path = Field(DEFAULT_STATE_DIR, description="example models, logs and run files")
    timeouts: StackTimeouts = StackTimeouts()

    @field_validator("host")
    @classmethod
    def _ip_literal(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(
                f"expected an IP address (Envoy's listeners bind to one), got {value!r}"
            ) from None
        return value

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_store_url(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StackSettings:
        if self.model_dir is not None and self.store is not None:
            raise ValueError("give model_dir or store, not both")
        if self.rest_port == self.grpc_port:
            raise ValueError(f"rest_port and grpc_port are both {self.rest_port}")
        if self.node_base_port is not None and self.node_base_port + 4 * self.nodes - 1 > _MAX_PORT:
            raise ValueError(f"node_base_port {self.node_base_port} leaves no room for {self.nodes} nodes")
        return self

    @property
    def uses_examples(self) -> bool:
        """Whether the store is the generated example models (no ``model_dir`` or ``store`` given)."""
        return self.model_dir is None and self.store is None

    @property
    def state_root(self) -> Path:
        return self.state_dir.absolute()


def load_stack_settings(
    path: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> StackSettings:
    """Settings from an optional YAML file, with ``overrides`` (the command's options) on top.

    A nested override (``{"s3": {"endpoint_url": ...}}``) replaces only the keys it names.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"Cannot read the stack settings {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"The stack settings {path} must be a mapping of settings")
        values.update(loaded)
    for key, value in (overrides or {}).items():
        current = values.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            values[key] = {**current, **value}
        else:
            values[key] = value
    try:
        return StackSettings(**values)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(f"Invalid stack settings: {details}") from exc
