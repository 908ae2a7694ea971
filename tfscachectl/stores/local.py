"""A model store in a local (or mounted) directory: ``<root>/<model>/<version>/saved_model.pb ...``.

Files are copied into the disk cache (symbolic links to files are followed; a symbolic link to a directory
inside a version is refused). Only the store root is trusted as given: model names and versions are checked
before they become paths (see ``names``).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from tfscachectl.errors import ModelNotInStoreError, StoreError
from tfscachectl.stores.base import StoredFile, StoredVersion
from tfscachectl.stores.fetching import fetch_version
from tfscachectl.stores.labels import LABELS_FILE_NAME, MAX_LABELS_FILE_BYTES, parse_labels
from tfscachectl.stores.names import (
    checked_name,
    checked_version,
    contained_path,
    model_name_from_dir_name,
    relative_file_path,
    version_from_dir_name,
)


class LocalModelStore:
    """Models under a local directory. Stateless apart from its root, so safe to share between threads."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    def __repr__(self) -> str:
        return f"LocalModelStore({str(self.root)!r})"

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def list_models(self) -> tuple[str, ...]:
        names = []
        try:
            for entry in os.scandir(self.root):
                name = model_name_from_dir_name(entry.name)
                if name is not None and entry.is_dir():
                    names.append(name)
        except OSError as exc:
            raise StoreError(f"cannot list the model store at {self.root}: {exc}") from exc
        return tuple(sorted(names))

    def list_versions(self, name: str) -> tuple[int, ...]:
        return tuple(sorted(self._version_dirs(name)))

    def describe(self, name: str, version: int) -> StoredVersion:
        return self._describe(name, version)[0]

    def read_labels(self, name: str) -> dict[str, int]:
        path = self._model_dir(name) / LABELS_FILE_NAME
        try:
            with path.open("rb") as file:
                data = file.read(MAX_LABELS_FILE_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StoreError(f"cannot read the label file {path}: {exc}") from exc
        return parse_labels(data, str(path))

    def fetch(self, name: str, version: int, cache_root: Path) -> Path:
        description, source = self._describe(name, version)

        def copy(file: StoredFile, target: Path) -> None:
            shutil.copyfile(contained_path(source, relative_file_path(file.path)), target)

        return fetch_version(description, cache_root, copy)

    def close(self) -> None:
        """Nothing to release."""

    def _model_dir(self, name: str) -> Path:
        path = contained_path(self.root, checked_name(name))
        if not path.is_dir():
            if not self.root.is_dir():
                raise StoreError(f"the model store directory {self.root} does not exist")
            raise ModelNotInStoreError(f"model {name!r} is not in the store at {self.url}")
        return path

    def _version_dirs(self, name: str) -> dict[int, list[Path]]:
        """Each version of the model with its directories (more than one if names differ in leading zeros)."""
        model_dir = self._model_dir(name)
        versions: dict[int, list[Path]] = {}
        try:
            for entry in os.scandir(model_dir):
                version = version_from_dir_name(entry.name)
                if version is not None and entry.is_dir():
                    versions.setdefault(version, []).append(Path(entry.path))
        except OSError as exc:
            raise StoreError(f"cannot list the versions of model {name!r} in {model_dir}: {exc}") from exc
        return versions

    def _version_dir(self, name: str, version: int) -> Path:
        checked_version(version)
        directories = self._version_dirs(name).get(version)
        if not directories:
            raise ModelNotInStoreError(f"model {name!r} has no version {version} in the store at {self.url}")
        if len(directories) > 1:
            listed = ", ".join(sorted(d.name for d in directories))
            raise StoreError(
                f"model {name!r} version {version} is ambiguous in {self.url}: directories {listed}"
            )
        return directories[0]

    def _describe(self, name: str, version: int) -> tuple[StoredVersion, Path]:
        directory = self._version_dir(name, version)
        files: list[StoredFile] = []

        def fail(exc: OSError) -> None:
            raise exc

        try:
            for top, dirs, file_names in os.walk(directory, onerror=fail):
                for dir_name in dirs:
                    if os.path.islink(os.path.join(top, dir_name)):
                        raise StoreError(
                            f"model {name!r} version {version} in {directory} has a symbolic link to a "
                            f"directory, which is not supported: {os.path.join(top, dir_name)}"
                        )
                for file_name in file_names:
                    path = Path(top, file_name)
                    relative = relative_file_path(path.relative_to(directory).as_posix())
                    status = path.stat()
                    if not stat.S_ISREG(status.st_mode):
                        raise StoreError(f"{path} in model {name!r} version {version} is not a regular file")
                    files.append(StoredFile(relative.as_posix(), status.st_size))
        except OSError as exc:
            raise StoreError(f"cannot read model {name!r} version {version} in {directory}: {exc}") from exc
        files.sort(key=lambda file: file.path)
        return StoredVersion(name, version, tuple(files), directory.as_uri()), directory
