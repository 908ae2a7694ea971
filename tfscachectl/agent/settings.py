"""The node agent's settings: one typed object, from a YAML file and ``TFSCACHE_AGENT_*`` variables.

The environment overrides the file; nested settings use ``__`` (``TFSCACHE_AGENT_TIMEOUTS__LOAD=60``).
Built in ``main()``, never at import.
"""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import SettingsConfigDict

from tfscachectl.discovery.members import Member
from tfscachectl.discovery.settings import DiscoverySettings
from tfscachectl.settings_files import FileThenEnvironment, check_host_port, load_settings_file
from tfscachectl.stores.settings import StoreSettings

ENV_PREFIX = "TFSCACHE_AGENT_"


class Timeouts(BaseModel):
    """Seconds allowed for each phase of an ensure or an unload, and for TF Serving to answer at start."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fetch: float = Field(600.0, gt=0, description="download of one model version into the disk cache")
    load: float = Field(300.0, gt=0, description="TF Serving loading a version until AVAILABLE")
    unload: float = Field(120.0, gt=0, description="TF Serving unloading a version (waits for its requests)")
    ready: float = Field(120.0, gt=0, description="TF Serving reachable when the agent starts")
    ensure: float = Field(300.0, gt=0, description="default deadline of an ensure that gives none")
    reload_rpc: float = Field(600.0, gt=0, description="one HandleReloadConfigRequest")
    unload_gate: float = Field(
        5.0, ge=0, description="confirming watchers (daemons) to stop routing to a version before its unload"
    )


class S3Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    addressing_style: str = "auto"
    max_attempts: int = 5
    multipart_threshold_bytes: int = 16 * 1024 * 1024
    multipart_chunk_bytes: int = 16 * 1024 * 1024

    def store_settings(self) -> StoreSettings:
        return StoreSettings(
            endpoint_url=self.endpoint_url,
            region=self.region,
            profile=self.profile,
            addressing_style=self.addressing_style,  # type: ignore[arg-type]
            max_attempts=self.max_attempts,
            multipart_threshold_bytes=self.multipart_threshold_bytes,
            multipart_chunk_bytes=self.multipart_chunk_bytes,
        )


class AgentSettings(FileThenEnvironment):
    """Everything one node agent needs; see ``docs/agent.md`` for each setting."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_parse_none_str="null",
        extra="forbid",
        frozen=True,
    )

    node_id: str = Field(default_factory=socket.gethostname, min_length=1)
    listen: str = Field("127.0.0.1:8600", description="host:port of the agent's gRPC API")
    metrics_listen: str | None = Field(None, description="host:port of the Prometheus /metrics page")
    tf_serving_grpc: str = Field("127.0.0.1:8500", description="host:port of TF Serving's gRPC API")
    tf_serving_rest: str = Field("127.0.0.1:8501", description="host:port of TF Serving's REST API")
    store: str = Field(..., description="where models live: a directory, file:///dir or s3://bucket/prefix")
    s3: S3Options = S3Options()
    cache_dir: Path = Field(..., description="the local disk cache, as the agent sees it")
    served_dir: str | None = Field(
        None,
        description="the disk cache as TF Serving sees it (default: cache_dir), e.g. in another container",
    )
    max_models: int | None = Field(4, ge=1, description="models in memory at once (None: no limit)")
    max_bytes: int | None = Field(None, ge=1, description="memory budget for models, in bytes")
    disk_bytes: int | None = Field(None, ge=1, description="disk cache budget, in bytes (None: no limit)")
    memory_factor: float = Field(2.0, gt=0, description="model memory = file bytes * factor + overhead")
    memory_overhead_bytes: int = Field(4 * 1024 * 1024, ge=0)
    guard_window: float = Field(5.0, ge=0, description="a model ensured this recently is not evicted")
    version_cache_seconds: float = Field(10.0, ge=0, description="how long store listings are trusted")
    timeouts: Timeouts = Timeouts()
    discovery: DiscoverySettings = Field(
        DiscoverySettings(), description="where the agent registers its node (static: nowhere)"
    )
    advertise_rest: str | None = Field(
        None, description="TF Serving's REST address as Envoy reaches it, IP:port (default: tf_serving_rest)"
    )
    advertise_grpc: str | None = Field(
        None, description="TF Serving's gRPC address as Envoy reaches it, IP:port (default: tf_serving_grpc)"
    )
    advertise_agent: str | None = Field(
        None, description="the agent's API as the daemon reaches it (default: the address it listens on)"
    )
    weight: float = Field(1.0, gt=0, description="relative capacity, for placement")

    @field_validator(
        "listen",
        "tf_serving_grpc",
        "tf_serving_rest",
        "metrics_listen",
        "advertise_rest",
        "advertise_grpc",
        "advertise_agent",
    )
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return None if value is None else check_host_port(value)

    def member(self, listening: str) -> Member:
        """What this agent registers: its node as the daemon and Envoy reach it (``listening``: the API's
        bound address)."""
        return Member(
            node_id=self.node_id,
            rest=self.advertise_rest or self.tf_serving_rest,
            grpc=self.advertise_grpc or self.tf_serving_grpc,
            agent=self.advertise_agent or listening,
            weight=self.weight,
            max_models=self.max_models,
            max_bytes=self.max_bytes,
        )

    @property
    def served_root(self) -> str:
        return self.served_dir or str(self.cache_dir)


def load_settings(path: Path | None = None) -> AgentSettings:
    """Settings from an optional YAML file, overridden by ``TFSCACHE_AGENT_*`` environment variables."""
    return load_settings_file(AgentSettings, "agent", path)
