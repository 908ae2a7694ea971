"""Discovery settings, shared by the daemon's and the agent's settings (their ``discovery:`` section).

``DiscoverySettings.kind`` picks the backend: ``static`` (the daemon's node list), ``etcd`` or ``consul``;
only the chosen backend's section is used. Each setting is described in ``docs/discovery.md``.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from tfscachectl.settings_files import check_host_port

#: Consul caps a blocking query's wait at ten minutes.
CONSUL_MAX_WAIT_S = 600.0


def parse_etcd_endpoint(value: str) -> tuple[str, int, bool | None]:
    """``(host, port, tls)`` from ``host:port``, ``http://host:port`` or ``https://host:port``.

    ``tls`` is True for ``https``, False for ``http`` and None when no scheme is given (then TLS is used if
    a CA, certificate or key file is set). ``ValueError`` for anything else.
    """
    tls: bool | None = None
    rest = value
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or parts.path not in ("", "/") or parts.query:
            raise ValueError(f"expected host:port or http(s)://host:port, got {value!r}")
        tls = parts.scheme == "https"
        rest = parts.netloc
    check_host_port(rest)
    host, _, port = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port), tls


class EtcdSettings(BaseModel):
    """etcd v3: agents keep a key under ``prefix`` alive with a lease; the daemon watches the prefix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoints: tuple[str, ...] = Field(
        ("127.0.0.1:2379",), min_length=1, description="etcd members, host:port (or http(s)://host:port)"
    )
    prefix: str = Field("/tfscache/nodes/", min_length=1, description="keys are prefix + node id")
    ttl: float = Field(10.0, gt=0, description="lease seconds: a node that stops is gone this long after")
    username: str | None = Field(None, min_length=1, description="etcd user (with password)")
    password: SecretStr | None = Field(None, description="etcd user's password")
    ca_file: str | None = Field(None, description="CA bundle that signed etcd's certificate (enables TLS)")
    cert_file: str | None = Field(None, description="client certificate, for etcd's client-cert auth")
    key_file: str | None = Field(None, description="client certificate's private key")
    timeout: float = Field(5.0, gt=0, description="seconds for each etcd call (and the first registration)")

    @field_validator("endpoints", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return (
            tuple(part.strip() for part in value.split(",") if part.strip())
            if isinstance(value, str)
            else value
        )

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for endpoint in value:
            parse_etcd_endpoint(endpoint)
        return value

    @model_validator(mode="after")
    def _pairs(self) -> EtcdSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("etcd username and password go together")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("etcd cert_file and key_file go together")
        schemes = {parse_etcd_endpoint(endpoint)[2] for endpoint in self.endpoints}
        if True in schemes and False in schemes:
            raise ValueError("etcd endpoints mix http:// and https://")
        if False in schemes and any(f is not None for f in (self.ca_file, self.cert_file, self.key_file)):
            raise ValueError("etcd TLS files are set but an endpoint says http://")
        return self

    @property
    def tls(self) -> bool:
        """Whether connections use TLS: an ``https://`` endpoint, or a CA, certificate or key file."""
        if any(parse_etcd_endpoint(endpoint)[2] for endpoint in self.endpoints):
            return True
        return any(f is not None for f in (self.ca_file, self.cert_file, self.key_file))


class ConsulSettings(BaseModel):
    """Consul: agents register a service with a TTL check; the daemon follows its passing instances."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = Field("http://127.0.0.1:8500", description="the local Consul agent's HTTP API")
    service: str = Field("tfscache-node", min_length=1, description="the Consul service name of the nodes")
    token: SecretStr | None = Field(None, description="ACL token, sent as X-Consul-Token")
    ttl: float = Field(10.0, gt=0, description="TTL check seconds: a node that stops is critical after")
    deregister_after: float = Field(
        60.0, gt=0, description="a critical node is deregistered after this (Consul: at least 60 s)"
    )
    datacenter: str | None = Field(
        None, min_length=1, description="datacenter to follow (default: the agent's)"
    )
    ca_file: str | None = Field(None, description="CA bundle for an https address")
    verify: bool = Field(True, description="verify the agent's TLS certificate")
    wait: float = Field(30.0, gt=0, le=CONSUL_MAX_WAIT_S, description="longest blocking query, seconds")
    timeout: float = Field(
        5.0, gt=0, description="seconds for each non-blocking call (and the margin of a blocking one)"
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http(s)://host:port, got {value!r}")
        try:
            parts.port  # noqa: B018 (validates the port)
        except ValueError as exc:
            raise ValueError(f"bad port in {value!r}") from exc
        return value.rstrip("/")

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        if not all(ch.isalnum() or ch == "-" for ch in value) or not value.isascii():
            raise ValueError(f"a Consul service name is letters, digits and dashes, got {value!r}")
        return value


class DiscoverySettings(BaseModel):
    """Which discovery backend to use, and each backend's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["static", "etcd", "consul"] = Field(
        "static", description="static: the daemon's node list; etcd or consul: agents register themselves"
    )
    etcd: EtcdSettings = EtcdSettings()
    consul: ConsulSettings = ConsulSettings()
