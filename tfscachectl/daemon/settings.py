"""The control daemon's settings: one typed object, from a YAML file and ``TFSCACHE_DAEMON_*`` variables.

The environment overrides the file; nested settings use ``__``. Built in ``main()``, never at import.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from tfscachectl.discovery.settings import DiscoverySettings
from tfscachectl.settings_files import FileThenEnvironment, check_host_port, load_settings_file

ENV_PREFIX = "TFSCACHE_DAEMON_"
MIB = 1024 * 1024


class NodeSettings(BaseModel):
    """One TF Serving instance and its agent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(..., min_length=1)
    rest: str = Field(..., description="host:port of TF Serving's REST API")
    grpc: str = Field(..., description="host:port of TF Serving's gRPC API")
    agent: str = Field(..., description="host:port of the node agent's gRPC API")
    weight: float = Field(1.0, gt=0, description="relative capacity for placement")

    @field_validator("rest", "grpc", "agent")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return check_host_port(value)


class DaemonTimeouts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ensure: float = Field(120.0, gt=0, description="a request waits this long for its model to load")
    request: float = Field(60.0, gt=0, description="TF Serving's answer to a forwarded request")
    agent_call: float = Field(10.0, gt=0, description="agent calls other than ensure")


MODULE_AUTO = "auto"
MODULE_OFF = "off"


class FastPathSettings(BaseModel):
    """Hits served by Envoy alone (docs/routing.md, "Fast path")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="give resident models their own routes (false: all via ext_proc)")
    recency_interval: float = Field(
        1.0, gt=0, description="seconds between readings of Envoy's fast-path hit counters"
    )
    latest_refresh: float = Field(
        30.0, gt=0, description="seconds between checks that a model's latest version is still the store's"
    )
    withdraw_timeout: float = Field(
        5.0, gt=0, description="seconds to wait for Envoy to drop a leaving model's routes"
    )
    drain_timeout: float = Field(
        2.0,
        ge=0,
        description=(
            "seconds a leaving model's requests already routed by Envoy may take to be answered before "
            "its agent may unload it"
        ),
    )
    envoy_admins: tuple[str, ...] = Field(
        (), description="Envoy admin host:port to read hit counts from, besides those Envoys report"
    )
    grpc_key_module: str = Field(
        "auto",
        description=(
            "the gRPC model-key module for Envoy: 'auto' (build it here; right when Envoy runs on this "
            "machine), 'off' (Envoy's generic field extraction), or its absolute path where Envoy finds it"
        ),
    )

    @field_validator("envoy_admins")
    @classmethod
    def _host_ports(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_host_port(item) for item in value)

    @field_validator("grpc_key_module")
    @classmethod
    def _module(cls, value: str) -> str:
        if value not in (MODULE_AUTO, MODULE_OFF) and not value.startswith("/"):
            raise ValueError(f"must be 'auto', 'off' or an absolute path, not {value!r}")
        return value


class DaemonSettings(FileThenEnvironment):
    """Everything the control daemon needs; see ``docs/daemon.md``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_parse_none_str="null",
        extra="forbid",
        frozen=True,
    )

    xds_listen: str = Field("127.0.0.1:18000", description="the ADS server Envoy connects to")
    ext_proc_listen: str = Field("127.0.0.1:18001", description="the ext_proc server Envoy calls")
    daemon_address: str | None = Field(
        None, description="how Envoy reaches the daemon's ext_proc server (default: ext_proc_listen)"
    )
    metrics_listen: str | None = Field(None, description="host:port of the Prometheus /metrics page")
    rest_listen: str = Field("0.0.0.0:8501", description="Envoy's REST listener (TF Serving's port)")
    grpc_listen: str = Field("0.0.0.0:8500", description="Envoy's gRPC listener (TF Serving's port)")
    replicas: int = Field(1, ge=1, description="nodes that serve each model")
    nodes: tuple[NodeSettings, ...] = Field((), description="the static node list")
    timeouts: DaemonTimeouts = DaemonTimeouts()
    max_message_bytes: int = Field(
        256 * MIB, ge=4 * MIB, description="largest request or response passed through (TF Serving: 2 GiB)"
    )
    connect_retries: int = Field(2, ge=0, description="a connection failure to a node is retried this often")
    fast_path: FastPathSettings = FastPathSettings()
    discovery: DiscoverySettings = DiscoverySettings()
    admin_listen: str | None = Field(
        "127.0.0.1:18002", description="host:port of the admin API (tfscachectl status...); null: none"
    )
    admin_token: SecretStr | None = Field(
        None, description="the admin API's bearer token; required unless admin_listen is a loopback address"
    )

    @field_validator("xds_listen", "ext_proc_listen", "rest_listen", "grpc_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return check_host_port(value)

    @model_validator(mode="after")
    def _unique_nodes(self) -> DaemonSettings:
        ids = [n.id for n in self.nodes]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"node ids must be unique: {', '.join(duplicates)}")
        return self

    @field_validator("admin_listen")
    @classmethod
    def _admin_host_port(cls, value: str | None) -> str | None:
        return None if value is None else check_host_port(value)

    @model_validator(mode="after")
    def _admin_protected(self) -> DaemonSettings:
        if self.admin_token is not None and not self.admin_token.get_secret_value().strip():
            raise ValueError("admin_token is empty")
        if self.admin_listen is not None and self.admin_token is None and not is_loopback(self.admin_listen):
            raise ValueError(
                f"the admin API would listen on {self.admin_listen}, which is not a loopback address, "
                f"with no token: set admin_token ({ENV_PREFIX}ADMIN_TOKEN), or admin_listen to 127.0.0.1:PORT"
            )
        return self

    @property
    def ext_proc_address(self) -> str:
        return self.daemon_address or self.ext_proc_listen


def is_loopback(listen: str) -> bool:
    """Whether ``host:port`` listens on this machine only (127.0.0.0/8, ::1 or ``localhost``)."""
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_daemon_settings(path: Path | None = None, **values: Any) -> DaemonSettings:
    """Settings from an optional YAML file (then ``values``), overridden by ``TFSCACHE_DAEMON_*``."""
    return load_settings_file(DaemonSettings, "daemon", path, **values)
