"""Store URLs and opening a store from one.

- ``/srv/models``, ``models`` (relative to the working directory), ``file:///srv/models``: a local directory;
- ``s3://bucket`` or ``s3://bucket/some/prefix``: an S3 bucket, with ``StoreSettings`` for the endpoint etc.

A malformed URL is a ``ConfigError``. Opening does no I/O beyond making the S3 client (nothing is listed),
except that a local root must be an existing directory (``StoreError`` otherwise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tfscachectl.errors import ConfigError, StoreError
from tfscachectl.stores.base import ModelStore
from tfscachectl.stores.local import LocalModelStore
from tfscachectl.stores.settings import StoreSettings

# S3 bucket names, loosely: lower-case letters, digits, dots and hyphens (underscores in old buckets).
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", re.ASCII)


@dataclass(frozen=True, slots=True)
class LocalLocation:
    root: Path


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str


StoreLocation = LocalLocation | S3Location


def parse_store_url(url: str) -> StoreLocation:
    """Where a store URL points; ``ConfigError`` saying why if it is not a store URL."""
    if not url:
        raise ConfigError("the model store URL is empty")
    if "\x00" in url:
        raise ConfigError("the model store URL contains NUL")
    parts = urlsplit(url)
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET_NAME.fullmatch(bucket):
            raise ConfigError(f"model store URL {url!r}: {bucket!r} is not an S3 bucket name")
        if parts.query or parts.fragment:
            raise ConfigError(f"model store URL {url!r}: S3 options are settings, not URL parameters")
        prefix = parts.path.strip("/")
        if "//" in prefix:
            raise ConfigError(f"model store URL {url!r}: the prefix has an empty part")
        return S3Location(bucket, prefix)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"model store URL {url!r}: file URLs must be local (file:///path)")
        if parts.query or parts.fragment:
            raise ConfigError(f"model store URL {url!r}: file URLs take no parameters")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ConfigError(f"model store URL {url!r}: a file URL needs an absolute path (file:///path)")
        return LocalLocation(Path(path))
    if "://" in url:
        raise ConfigError(
            f"model store URL {url!r}: unsupported scheme {parts.scheme!r} (use a path, file:// or s3://)"
        )
    return LocalLocation(Path(url).absolute())


def open_store(url: str, settings: StoreSettings | None = None) -> ModelStore:
    """The store at ``url``. ``settings`` apply to S3 (a local directory has none)."""
    location = parse_store_url(url)
    if isinstance(location, S3Location):
        from tfscachectl.stores.s3 import S3ModelStore  # boto3 is imported only for S3 stores

        return S3ModelStore(location.bucket, location.prefix, settings)
    if not location.root.is_dir():
        raise StoreError(f"the model store directory {location.root} does not exist or is not a directory")
    return LocalModelStore(location.root)
