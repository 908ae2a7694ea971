"""Version labels: ``<root>/<model>/labels.json`` beside the version directories.

The file is one JSON object mapping each label to a version number::

    {"stable": 123, "canary": 124}

Rules (anything else makes the file unusable, ``StoreError`` naming the file and the problem):

- at most ``MAX_LABELS_FILE_BYTES``, UTF-8, a JSON object, no label given twice;
- a label is what TF Serving's REST API accepts in ``/labels/{label}`` (``[^/:]+``), and also has no
  whitespace or control characters, at most 255 characters;
- a version is a JSON integer from 0 to 2**63-1 (not a string, not ``true``). Several labels may name one
  version. A label may name a version that is not in the store; resolving it then says so.

No file means no labels. TF Serving ignores the file: it is not a numeric directory, and it stays in the
store (the disk cache holds version directories only).
"""

from __future__ import annotations

import json
from typing import Any

from tfscachectl.core.refs import MAX_NAME_LENGTH, MAX_VERSION, ModelKey
from tfscachectl.errors import ModelNotInStoreError, StoreError
from tfscachectl.stores.base import ModelStore

LABELS_FILE_NAME = "labels.json"
MAX_LABELS_FILE_BYTES = 64 * 1024
MAX_LABEL_LENGTH = MAX_NAME_LENGTH
_FORBIDDEN_IN_LABEL = frozenset("/:")


class UnknownLabelError(StoreError):
    """The model has no such label. TF Serving answers this with INVALID_ARGUMENT (HTTP 400)
    ``Unrecognized servable version label: <label>``, not NOT_FOUND."""

    def __init__(self, name: str, label: str) -> None:
        super().__init__(f"model {name!r} has no version label {label!r}")
        self.name = name
        self.label = label


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot be a version label, or None if it can."""
    if not label:
        return "a label is empty"
    if len(label) > MAX_LABEL_LENGTH:
        return f"label {label[:40]!r}... is longer than {MAX_LABEL_LENGTH} characters"
    for char in label:
        if char in _FORBIDDEN_IN_LABEL:
            return f"label {label!r} contains {char!r}"
        if char.isspace() or not char.isprintable():
            return f"label {label!r} contains whitespace or a control character"
    return None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"label {key!r} is given twice")
        result[key] = value
    return result


def parse_labels(data: bytes, source: str) -> dict[str, int]:
    """The labels in a label file's bytes; ``StoreError`` naming ``source`` if the file breaks a rule."""
    if len(data) > MAX_LABELS_FILE_BYTES:
        raise StoreError(f"label file {source} is larger than {MAX_LABELS_FILE_BYTES} bytes")
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise StoreError(f"label file {source} is not UTF-8: {exc}") from exc
    except ValueError as exc:  # json.JSONDecodeError is a ValueError, as is a duplicate label
        raise StoreError(f"label file {source} is not valid: {exc}") from exc
    if not isinstance(document, dict):
        raise StoreError(
            f'label file {source} must be a JSON object like {{"stable": 123}}, not {type(document).__name__}'
        )
    labels: dict[str, int] = {}
    for label, version in document.items():
        problem = label_problem(label)
        if problem is not None:
            raise StoreError(f"label file {source}: {problem}")
        if isinstance(version, bool) or not isinstance(version, int):
            raise StoreError(
                f"label file {source}: label {label!r} must name an integer version, not {version!r}"
            )
        if not 0 <= version <= MAX_VERSION:
            raise StoreError(f"label file {source}: label {label!r} names version {version}, out of range")
        labels[label] = version
    return labels


def format_labels(labels: dict[str, int]) -> bytes:
    """A label file's bytes for ``labels`` (checked by the same rules as ``parse_labels``)."""
    data = (json.dumps(dict(sorted(labels.items())), indent=2) + "\n").encode()
    parse_labels(data, "(labels to write)")
    return data


def resolve_label(store: ModelStore, name: str, label: str) -> ModelKey:
    """The version a label names: ``UnknownLabelError`` if the model has no such label,
    ``ModelNotInStoreError`` if the model, or the version the label names, is not in the store."""
    version = store.read_labels(name).get(label)
    if version is None:
        raise UnknownLabelError(name, label)
    if version not in store.list_versions(name):
        raise ModelNotInStoreError(
            f"label {label!r} of model {name!r} names version {version}, "
            f"which is not in the store at {store.url}"
        )
    return ModelKey(name, version)
