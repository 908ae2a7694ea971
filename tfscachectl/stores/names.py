"""Path safety: the only way names, versions and file paths become paths in a store or the disk cache.

Model names and versions come from requests; file paths come from the store (S3 keys are arbitrary strings).
Neither may ever reach outside the store root or the cache root:

- a model name is checked with ``core.refs.validate_name`` (no ``/``, ``\\``, ``:``, ``.``/``..``, control
  characters such as NUL, at most 255 characters) and may not be the cache's reserved staging directory;
  a name that fails is a model that cannot be in the store: ``ModelNotInStoreError`` saying why;
- a version is a TF Serving version (0 to 2**63-1); a version *directory* name is ASCII digits, leading zeros
  allowed (``00000123`` is version 123, as TF Serving reads it);
- a file path inside a version is relative, ``/``-separated, with no empty, ``.`` or ``..`` part, no
  backslash and no NUL, and is taken as given (never normalised), so it maps back to the same store key.
  A store holding anything else is unusable: ``StoreError``.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from tfscachectl.core.refs import MAX_NAME_LENGTH, MAX_VERSION, validate_name, validate_version
from tfscachectl.errors import ConfigError, ModelNotInStoreError, StoreError

#: Names in the cache root that start with this are tfscache's own (the staging directory, the agent's
#: state file); no model may take such a name.
RESERVED_PREFIX = ".tfscache"
#: The hidden directory inside the cache root where fetches are staged and deletions finished.
STAGING_DIR_NAME = ".tfscache-staging"
#: File paths inside a version: Linux's PATH_MAX, and NAME_MAX for each part (in bytes).
MAX_FILE_PATH_BYTES = 4096
MAX_PATH_PART_BYTES = 255


def checked_name(name: str) -> str:
    """``name`` if it can name a model in a store or the cache, else ``ModelNotInStoreError`` saying why."""
    try:
        validate_name(name)
    except ConfigError as exc:
        raise ModelNotInStoreError(f"no model can have this name: {exc}") from exc
    if name.startswith(RESERVED_PREFIX):
        raise ModelNotInStoreError(
            f"no model can have this name: names starting with {RESERVED_PREFIX!r} are reserved "
            "for the disk cache"
        )
    return name


def checked_version(version: int) -> int:
    """``version`` if it is a TF Serving version, else ``ModelNotInStoreError`` saying why."""
    try:
        return validate_version(version)
    except ConfigError as exc:
        raise ModelNotInStoreError(f"no model version can be {version!r}: {exc}") from exc


def version_from_dir_name(dir_name: str) -> int | None:
    """The version a directory name stands for (``"00000123"`` -> 123), or None if it names no version."""
    if not dir_name or len(dir_name) > MAX_NAME_LENGTH or not (dir_name.isascii() and dir_name.isdigit()):
        return None
    version = int(dir_name)
    return version if version <= MAX_VERSION else None


def version_dir_name(version: int) -> str:
    """The directory name the disk cache uses for a version: plain decimal (``123``)."""
    return str(checked_version(version))


def model_name_from_dir_name(dir_name: str) -> str | None:
    """The model a directory (or S3 common prefix) in the store root stands for, or None if none can."""
    try:
        return checked_name(dir_name)
    except ModelNotInStoreError:
        return None


def relative_file_path(text: str) -> PurePosixPath:
    """A file path inside a version directory, checked as described above; ``StoreError`` otherwise."""
    if not text:
        raise StoreError("empty file path in a model version")
    if "\x00" in text or "\\" in text:
        raise StoreError(f"file path {text!r} in a model version contains NUL or a backslash")
    if text.startswith("/"):
        raise StoreError(f"file path {text!r} in a model version is absolute")
    if len(text.encode()) > MAX_FILE_PATH_BYTES:
        raise StoreError(
            f"file path {text[:60]!r}... in a model version is longer than {MAX_FILE_PATH_BYTES} bytes"
        )
    parts = text.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise StoreError(f"file path {text!r} in a model version has an empty, '.' or '..' part")
        if len(part.encode()) > MAX_PATH_PART_BYTES:
            raise StoreError(f"file path {text!r} in a model version has a part longer than 255 bytes")
    return PurePosixPath(*parts)


def contained_path(root: Path, *parts: str | PurePosixPath) -> Path:
    """``root`` joined with ``parts``, refused (``StoreError``) unless it stays lexically inside ``root``.

    A second line of defence: callers pass parts already checked by the functions above.
    """
    path = root.joinpath(*parts)
    base = os.path.normpath(root)
    joined = os.path.normpath(path)
    if os.path.commonpath([base, joined]) != base or joined == base:
        raise StoreError(f"refusing path {str(path)!r}: it is not inside {str(root)!r}")
    return path
