"""Fetching a version into the disk cache so that TF Serving never sees half of one.

Every store fetches the same way, giving only its per-file download:

1. the version's description (files and sizes) must include ``saved_model.pb`` (or ``.pbtxt``);
2. every file is downloaded into a fresh directory under ``<cache_root>/.tfscache-staging/``;
3. the copy is verified: exactly the described files, each with its described size;
4. the files are flushed to disk, and the directory is renamed to ``<cache_root>/<model>/<version>`` (same
   filesystem: atomic). If another fetch got there first, its copy is checked and used.

On any failure (or interruption) the staging directory is removed; a process killed mid-fetch leaves only
staging leftovers, which ``clean_leftovers`` removes at the next start (``prepare_cache`` does both).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from tfscachectl.errors import StoreError
from tfscachectl.stores.base import StoredFile, StoredVersion
from tfscachectl.stores.disk_cache import (
    CachedVersion,
    new_staging_dir,
    scan_cache,
    staging_root,
    tree_sizes,
    version_path,
)
from tfscachectl.stores.names import contained_path, relative_file_path

log = logging.getLogger(__name__)

#: Writes one file of a version (``StoredFile``) to the given path; its parent directory exists.
FileDownload = Callable[[StoredFile, Path], None]

# How many differences a verification error lists before "and N more".
_MAX_LISTED_DIFFERENCES = 5


def fetch_version(description: StoredVersion, cache_root: Path, download: FileDownload) -> Path:
    """Put a complete, verified copy of ``description`` at ``<cache_root>/<model>/<version>``; return it.

    An existing copy is checked against the description and returned (``StoreError`` if it differs).
    """
    final = version_path(cache_root, description.name, description.version)
    if final.is_dir():
        verify_copy(final, description)
        return final
    description.require_saved_model()
    started = time.monotonic()
    staging = new_staging_dir(cache_root, "fetching")
    try:
        copy = staging / "version"
        copy.mkdir()
        for file in description.files:
            target = contained_path(copy, relative_file_path(file.path))
            target.parent.mkdir(parents=True, exist_ok=True)
            download(file, target)
        verify_copy(copy, description)
        _flush_tree(copy)
        final.parent.mkdir(parents=True, exist_ok=True)
        if not _rename_into_place(copy, final):
            log.info("fetch_lost_race model=%s version=%d", description.name, description.version)
            verify_copy(final, description)
            return final
        _flush_directory(final.parent)
    except OSError as exc:
        raise StoreError(
            f"fetching model {description.name!r} version {description.version} "
            f"into {cache_root} failed: {exc}"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "version_fetched model=%s version=%d files=%d bytes=%d seconds=%.3f source=%s",
        description.name,
        description.version,
        len(description.files),
        description.total_bytes,
        time.monotonic() - started,
        description.location,
    )
    return final


def verify_copy(directory: Path, description: StoredVersion) -> None:
    """Raise ``StoreError`` unless ``directory`` holds exactly the described files with their sizes."""
    try:
        actual = tree_sizes(directory)
    except OSError as exc:
        raise StoreError(f"cannot read the copy at {directory}: {exc}") from exc
    expected = description.sizes
    differences = [f"{path!r} is missing" for path in sorted(expected.keys() - actual.keys())]
    differences += [f"{path!r} is not in the store" for path in sorted(actual.keys() - expected.keys())]
    differences += [
        f"{path!r} has {actual[path]} bytes, the store lists {size}"
        for path, size in sorted(expected.items())
        if path in actual and actual[path] != size
    ]
    if differences:
        listed = "; ".join(differences[:_MAX_LISTED_DIFFERENCES])
        more = len(differences) - _MAX_LISTED_DIFFERENCES
        if more > 0:
            listed += f"; and {more} more"
        raise StoreError(
            f"the copy of model {description.name!r} version {description.version} at {directory} "
            f"does not match {description.location}: {listed}"
        )


def clean_leftovers(cache_root: Path) -> int:
    """Remove what interrupted fetches (and deletions) left in the staging area; returns how many.

    Call at start, before any fetch: the agent that owns the cache root runs no fetch yet.
    """
    root = staging_root(cache_root)
    if not root.is_dir():
        return 0
    removed = 0
    try:
        for entry in os.scandir(root):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
            log.info("staging_leftover_removed path=%s", entry.path)
    except OSError as exc:
        raise StoreError(f"cannot clean the staging directory {root}: {exc}") from exc
    return removed


def prepare_cache(cache_root: Path) -> tuple[CachedVersion, ...]:
    """At start: create the cache root, clean staging leftovers, and return the complete versions held."""
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the disk cache at {cache_root}: {exc}") from exc
    clean_leftovers(cache_root)
    return scan_cache(cache_root)


def _rename_into_place(copy: Path, final: Path) -> bool:
    """Rename ``copy`` to ``final``; false if ``final`` already exists with content (another fetch won)."""
    try:
        os.rename(copy, final)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and final.is_dir():
            return False
        raise
    return True


def _flush_tree(directory: Path) -> None:
    """fsync every file and directory under ``directory``, so the rename publishes data that is on disk."""
    for top, _dirs, files in os.walk(directory):
        for file_name in files:
            descriptor = os.open(os.path.join(top, file_name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        _flush_directory(Path(top))


def _flush_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
