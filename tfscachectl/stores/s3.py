"""A model store in an S3 bucket: ``s3://<bucket>/<prefix>/<model>/<version>/saved_model.pb ...``.

Listings are paginated (``list_page_size`` keys a request), model and version "directories" are common
prefixes under ``/``. Files at or above ``multipart_threshold_bytes`` are downloaded in ranged parts
(pinned to the object's ETag by s3transfer, so a part of another object is never mixed in). Every request is
retried with backoff by botocore's standard retry mode. Zero-byte "folder" keys ending in ``/`` (made by
consoles) are ignored; any other key that is not a safe relative path makes the version unusable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError, S3ValidationError

from tfscachectl.errors import ModelNotInStoreError, StoreError
from tfscachectl.stores.base import StoredFile, StoredVersion
from tfscachectl.stores.fetching import fetch_version
from tfscachectl.stores.labels import LABELS_FILE_NAME, MAX_LABELS_FILE_BYTES, parse_labels
from tfscachectl.stores.names import (
    checked_name,
    checked_version,
    model_name_from_dir_name,
    relative_file_path,
    version_from_dir_name,
)
from tfscachectl.stores.s3_client import is_missing_object, make_client, transfer_config, translate
from tfscachectl.stores.settings import StoreSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ListObjectsV2OutputTypeDef, PaginatorConfigTypeDef

# Everything boto3 and s3transfer raise for a failed request or transfer.
_S3_ERRORS = (
    ClientError,
    BotoCoreError,
    Boto3Error,
    RetriesExceededError,
    S3DownloadFailedError,
    S3ValidationError,
)


class S3ModelStore:
    """Models under ``s3://bucket/prefix``, read through one boto3 client shared by every thread."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        settings: StoreSettings | None = None,
        *,
        client: S3Client | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.settings = settings if settings is not None else StoreSettings()
        self._client = client if client is not None else make_client(self.settings)
        self._transfer = transfer_config(self.settings)
        self._root_key = f"{self.prefix}/" if self.prefix else ""

    def __repr__(self) -> str:
        return f"S3ModelStore({self.url!r})"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def client(self) -> S3Client:
        """The shared boto3 client."""
        return self._client

    def list_models(self) -> tuple[str, ...]:
        names = []
        for page in self._pages(self._root_key, f"listing models in {self.url}", delimited=True):
            for common in page.get("CommonPrefixes", []):
                name = model_name_from_dir_name(common.get("Prefix", "")[len(self._root_key) : -1])
                if name is not None:
                    names.append(name)
        return tuple(sorted(names))

    def list_versions(self, name: str) -> tuple[int, ...]:
        return tuple(sorted(self._version_prefixes(name)))

    def describe(self, name: str, version: int) -> StoredVersion:
        return self._describe(name, version)[0]

    def read_labels(self, name: str) -> dict[str, int]:
        key = f"{self._model_key(name)}{LABELS_FILE_NAME}"
        source = f"s3://{self.bucket}/{key}"
        doing = f"reading the label file {source}"
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            if response.get("ContentLength", 0) > MAX_LABELS_FILE_BYTES:
                response["Body"].close()
                raise StoreError(f"label file {source} is larger than {MAX_LABELS_FILE_BYTES} bytes")
            with response["Body"] as body:
                data = body.read(MAX_LABELS_FILE_BYTES + 1)
        except _S3_ERRORS as exc:
            if not is_missing_object(exc):
                raise translate(exc, doing, bucket=self.bucket) from exc
            if not self._model_exists(name):
                raise ModelNotInStoreError(f"model {name!r} is not in the store at {self.url}") from None
            return {}
        return parse_labels(data, source)

    def fetch(self, name: str, version: int, cache_root: Path) -> Path:
        description, version_key = self._describe(name, version)

        def download(file: StoredFile, target: Path) -> None:
            key = f"{version_key}{file.path}"
            try:
                self._client.download_file(self.bucket, key, str(target), Config=self._transfer)
            except _S3_ERRORS as exc:
                doing = f"downloading s3://{self.bucket}/{key} (model {name!r} version {version})"
                raise translate(exc, doing, bucket=self.bucket) from exc

        return fetch_version(description, cache_root, download)

    def close(self) -> None:
        self._client.close()

    def _model_key(self, name: str) -> str:
        return f"{self._root_key}{checked_name(name)}/"

    def _pages(self, prefix: str, doing: str, *, delimited: bool) -> Iterator[ListObjectsV2OutputTypeDef]:
        """Every page of a listing under ``prefix``; with ``delimited``, one level only (common prefixes)."""
        paginator = self._client.get_paginator("list_objects_v2")
        pagination: PaginatorConfigTypeDef = {"PageSize": self.settings.list_page_size}
        try:
            if delimited:
                yield from paginator.paginate(
                    Bucket=self.bucket, Prefix=prefix, Delimiter="/", PaginationConfig=pagination
                )
            else:
                yield from paginator.paginate(Bucket=self.bucket, Prefix=prefix, PaginationConfig=pagination)
        except _S3_ERRORS as exc:
            raise translate(exc, doing, bucket=self.bucket) from exc

    def _model_exists(self, name: str) -> bool:
        prefix = self._model_key(name)
        try:
            response = self._client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        except _S3_ERRORS as exc:
            raise translate(exc, f"looking for model {name!r} in {self.url}", bucket=self.bucket) from exc
        return bool(response.get("Contents"))

    def _version_prefixes(self, name: str) -> dict[int, list[str]]:
        """Each version of the model with its key prefixes (several if names differ in leading zeros)."""
        model_key = self._model_key(name)
        versions: dict[int, list[str]] = {}
        exists = False
        for page in self._pages(
            model_key, f"listing versions of model {name!r} in {self.url}", delimited=True
        ):
            exists = exists or bool(page.get("Contents") or page.get("CommonPrefixes"))
            for common in page.get("CommonPrefixes", []):
                prefix = common.get("Prefix", "")
                version = version_from_dir_name(prefix[len(model_key) : -1])
                if version is not None:
                    versions.setdefault(version, []).append(prefix)
        if not exists:
            raise ModelNotInStoreError(f"model {name!r} is not in the store at {self.url}")
        return versions

    def _describe(self, name: str, version: int) -> tuple[StoredVersion, str]:
        """The version's description and the key prefix of its files."""
        checked_version(version)
        prefixes = self._version_prefixes(name).get(version)
        if not prefixes:
            raise ModelNotInStoreError(f"model {name!r} has no version {version} in the store at {self.url}")
        if len(prefixes) > 1:
            listed = ", ".join(sorted(prefixes))
            raise StoreError(
                f"model {name!r} version {version} is ambiguous in s3://{self.bucket}: prefixes {listed}"
            )
        version_key = prefixes[0]
        files: list[StoredFile] = []
        doing = f"listing model {name!r} version {version} in {self.url}"
        for page in self._pages(version_key, doing, delimited=False):
            for item in page.get("Contents", []):
                relative = item.get("Key", "")[len(version_key) :]
                size = item.get("Size", 0)
                if relative == "" or (relative.endswith("/") and size == 0):
                    continue  # a console's "folder" marker
                files.append(StoredFile(relative_file_path(relative).as_posix(), size))
        files.sort(key=lambda file: file.path)
        return StoredVersion(name, version, tuple(files), f"s3://{self.bucket}/{version_key}"), version_key
