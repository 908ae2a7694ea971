"""The model store interface: what the node agent asks of a local directory or an S3 bucket.

A store holds models in TF Serving's layout, ``<root>/<model>/<version>/saved_model.pb ...``, with an
optional label file per model (``<root>/<model>/labels.json``, see ``labels``). Versions are read from the
version directory names as TF Serving reads them (``00000123`` is 123); the latest version is the highest.

Errors: ``ModelNotInStoreError`` when the model or version does not exist (also for a name that no model can
have, see ``names``), ``StoreError`` when the store fails or holds something unusable. Methods are
synchronous and thread-safe: the agent calls them from worker threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tfscachectl.core.refs import ModelKey, ModelRef
from tfscachectl.errors import ModelNotInStoreError, StoreError

#: The files that make a version directory a SavedModel TF Serving can load (either one).
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file of a model version: its ``/``-separated path inside the version directory, and its size."""

    path: str
    size: int


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """A model version as the store holds it: every file with its size, sorted by path.

    ``location`` says where it is (a directory or an ``s3://`` URL), for messages.
    """

    name: str
    version: int
    files: tuple[StoredFile, ...]
    location: str

    @property
    def key(self) -> ModelKey:
        return ModelKey(self.name, self.version)

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)

    @property
    def sizes(self) -> dict[str, int]:
        """The size of each file, by path."""
        return {file.path: file.size for file in self.files}

    def require_saved_model(self) -> None:
        """Raise ``StoreError`` unless the version has a ``saved_model.pb`` (or ``.pbtxt``) at its top."""
        if not any(file.path in SAVED_MODEL_FILES for file in self.files):
            raise StoreError(
                f"model {self.name!r} version {self.version} at {self.location} is not a SavedModel: "
                f"it has no {' or '.join(SAVED_MODEL_FILES)}"
            )


class ModelStore(Protocol):
    """A model store. Implementations: ``LocalModelStore`` (a directory), ``S3ModelStore`` (a bucket)."""

    @property
    def url(self) -> str:
        """Where the store is (``file:///...`` or ``s3://bucket/prefix``), for messages and logs."""
        ...

    def list_models(self) -> tuple[str, ...]:
        """Every model name in the store, sorted. Entries that cannot be model names are skipped."""
        ...

    def list_versions(self, name: str) -> tuple[int, ...]:
        """The model's versions, ascending (possibly none); ``ModelNotInStoreError`` if it does not exist."""
        ...

    def describe(self, name: str, version: int) -> StoredVersion:
        """The version's files and sizes; ``ModelNotInStoreError`` if the model or version does not exist."""
        ...

    def read_labels(self, name: str) -> dict[str, int]:
        """The model's version labels (empty without a label file); ``ModelNotInStoreError`` as above."""
        ...

    def fetch(self, name: str, version: int, cache_root: Path) -> Path:
        """Make ``<cache_root>/<name>/<version>`` a complete, verified copy and return it (see ``fetching``).

        Already there: checked and returned. Otherwise downloaded into a staging directory and renamed into
        place only when complete, so a partial copy is never visible at the final path.
        """
        ...

    def close(self) -> None:
        """Release connections. The store is not used afterwards."""
        ...


def latest_version(store: ModelStore, name: str) -> int:
    """The highest version of a model; ``ModelNotInStoreError`` if it does not exist or has no versions."""
    versions = store.list_versions(name)
    if not versions:
        raise ModelNotInStoreError(f"model {name!r} has no versions in the store at {store.url}")
    return versions[-1]


def resolve(store: ModelStore, ref: ModelRef) -> ModelKey:
    """The concrete version a reference names: its version if it is in the store, else the latest one."""
    versions = store.list_versions(ref.name)
    if ref.version is None:
        if not versions:
            raise ModelNotInStoreError(f"model {ref.name!r} has no versions in the store at {store.url}")
        return ModelKey(ref.name, versions[-1])
    if ref.version not in versions:
        raise ModelNotInStoreError(
            f"model {ref.name!r} has no version {ref.version} in the store at {store.url}"
        )
    return ModelKey(ref.name, ref.version)
