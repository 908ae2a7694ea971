"""The local disk cache of one node: its layout, the scan at start-up, and deleting a version.

::

    <cache_root>/
      <model>/<version>/saved_model.pb ...   complete, verified versions only: TF Serving's base paths
      .tfscache-staging/                     fetches in progress and deletions being finished (hidden; no
                                             model can have this name, and TF Serving never looks here)

A version appears at ``<model>/<version>`` only by an atomic rename from the staging directory (same
filesystem), and leaves by an atomic rename back into it before its files are deleted, so TF Serving never
sees a partial version. Version directories are named in plain decimal (``123``). One node agent owns a
cache root.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tfscachectl.core.refs import ModelKey
from tfscachectl.errors import StoreError
from tfscachectl.stores.base import SAVED_MODEL_FILES
from tfscachectl.stores.names import (
    RESERVED_PREFIX,
    STAGING_DIR_NAME,
    checked_name,
    contained_path,
    model_name_from_dir_name,
    version_dir_name,
    version_from_dir_name,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CachedVersion:
    """A complete model version found in the cache: where it is and the bytes of its files."""

    key: ModelKey
    path: Path
    size_bytes: int


def model_path(cache_root: Path, name: str) -> Path:
    """``<cache_root>/<name>``: the base path TF Serving is given for the model."""
    return contained_path(cache_root, checked_name(name))


def version_path(cache_root: Path, name: str, version: int) -> Path:
    """``<cache_root>/<name>/<version>``: where a complete version lives."""
    return contained_path(cache_root, checked_name(name), version_dir_name(version))


def staging_root(cache_root: Path) -> Path:
    """The hidden directory where fetches are staged (created on demand)."""
    return cache_root / STAGING_DIR_NAME


def new_staging_dir(cache_root: Path, purpose: str) -> Path:
    """A fresh, empty directory under the staging root, named ``<purpose>-<random>``."""
    root = staging_root(cache_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{purpose}-", dir=root))
    except OSError as exc:
        raise StoreError(f"cannot create a staging directory in {root}: {exc}") from exc


def tree_sizes(directory: Path) -> dict[str, int]:
    """The size of every file under ``directory``, by ``/``-separated relative path."""
    sizes: dict[str, int] = {}

    def fail(exc: OSError) -> None:
        raise exc

    for top, _dirs, files in os.walk(directory, onerror=fail):
        for file_name in files:
            path = Path(top, file_name)
            sizes[path.relative_to(directory).as_posix()] = path.stat().st_size
    return sizes


def scan_cache(cache_root: Path) -> tuple[CachedVersion, ...]:
    """Every complete version in the cache, sorted by key (for restart recovery).

    Entries that are not ``<model>/<version>`` directories with a SavedModel are logged and skipped;
    the staging directory is not looked at. A missing cache root holds nothing.
    """
    if not cache_root.is_dir():
        return ()
    found: list[CachedVersion] = []
    try:
        for model_entry in sorted(os.scandir(cache_root), key=lambda entry: entry.name):
            if model_entry.name.startswith(RESERVED_PREFIX):
                continue
            name = model_name_from_dir_name(model_entry.name)
            if name is None or not model_entry.is_dir(follow_symlinks=False):
                log.warning("cache_entry_ignored path=%s reason=not_a_model_directory", model_entry.path)
                continue
            for version_entry in sorted(os.scandir(model_entry.path), key=lambda entry: entry.name):
                version = version_from_dir_name(version_entry.name)
                path = Path(version_entry.path)
                if version is None or not version_entry.is_dir(follow_symlinks=False):
                    log.warning("cache_entry_ignored path=%s reason=not_a_version_directory", path)
                    continue
                if not any((path / file_name).is_file() for file_name in SAVED_MODEL_FILES):
                    log.warning("cache_entry_ignored path=%s reason=no_saved_model", path)
                    continue
                found.append(CachedVersion(ModelKey(name, version), path, sum(tree_sizes(path).values())))
    except OSError as exc:
        raise StoreError(f"cannot scan the disk cache at {cache_root}: {exc}") from exc
    return tuple(sorted(found, key=lambda cached: cached.key))


def delete_version(cache_root: Path, name: str, version: int) -> bool:
    """Remove a version from the cache; false if it was not there.

    The directory is first renamed into the staging area (TF Serving sees it vanish at once, never half
    deleted), then removed; an interruption leaves only staging leftovers, cleaned at the next start.
    """
    path = version_path(cache_root, name, version)
    if not path.is_dir():
        return False
    doomed = new_staging_dir(cache_root, "deleting") / "version"
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        shutil.rmtree(doomed.parent, ignore_errors=True)
        return False
    except OSError as exc:
        shutil.rmtree(doomed.parent, ignore_errors=True)
        raise StoreError(f"cannot delete {path} from the disk cache: {exc}") from exc
    shutil.rmtree(doomed.parent, ignore_errors=True)
    log.info("cache_version_deleted model=%s version=%d", name, version)
    return True
