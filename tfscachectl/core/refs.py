"""Model references: what a request or an operator names (``ModelRef``) and what is loaded (``ModelKey``).

A ``ModelRef`` is a model name with an optional version; no version means "the latest version in the
store", resolved by the agent. A ``ModelKey`` is a concrete ``(name, version)``: the unit that is fetched,
cached on disk and loaded into TF Serving.

Text form, as operators type it (CLI, settings, admin API): ``"name"`` or ``"name:7"``.

Errors: parsing raises ``ConfigError`` (from ``tfscachectl.errors``), because text refs come from
operators and the CLI reports that tree as one line. Requests from TF Serving clients do not go through
this parser: their names and versions arrive already split (REST path, gRPC ``ModelSpec``) and are
turned into TF Serving's own errors where they are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tfscachectl.errors import ConfigError

#: TF Serving versions are int64 and version directories are non-negative integers.
MAX_VERSION = 2**63 - 1
#: Names become directory names in the store and the disk cache.
MAX_NAME_LENGTH = 255

_VERSION_SEPARATOR = ":"
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_FORBIDDEN_IN_NAME = frozenset("/\\:")


def validate_name(name: str) -> str:
    """Return ``name`` if it can name a model, else raise ``ConfigError`` saying why.

    A name is what TF Serving's REST API accepts (``[^/:]+``) and what can be a directory name:
    no ``/``, ``\\`` or ``:``, no whitespace or control characters, not ``.`` or ``..``.
    """
    if not name:
        raise ConfigError("model name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"model name is longer than {MAX_NAME_LENGTH} characters: {name[:40]!r}...")
    if name in (".", ".."):
        raise ConfigError(f"model name cannot be {name!r}")
    for char in name:
        if char in _FORBIDDEN_IN_NAME:
            raise ConfigError(f"model name {name!r} contains {char!r}")
        if char.isspace() or not char.isprintable():
            raise ConfigError(f"model name {name!r} contains whitespace or a control character")
    return name


def validate_version(version: int) -> int:
    """Return ``version`` if it is a valid TF Serving version (0 to 2**63-1), else raise ``ConfigError``."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"model version must be an integer, not {version!r}")
    if not 0 <= version <= MAX_VERSION:
        raise ConfigError(f"model version {version} is out of range (0 to {MAX_VERSION})")
    return version


def _parse_version(text: str, whole: str) -> int:
    if not text:
        raise ConfigError(f"model reference {whole!r} has an empty version after ':'")
    if not _DIGITS.fullmatch(text):
        raise ConfigError(f"model reference {whole!r}: version {text!r} is not a non-negative integer")
    return validate_version(int(text))


@dataclass(frozen=True, slots=True, order=True)
class ModelKey:
    """A concrete model version: what is fetched, cached and loaded."""

    name: str
    version: int

    def __post_init__(self) -> None:
        validate_name(self.name)
        validate_version(self.version)

    @classmethod
    def parse(cls, text: str) -> ModelKey:
        """Parse ``"name:7"``; the version is required."""
        name, sep, version = text.partition(_VERSION_SEPARATOR)
        if not sep:
            raise ConfigError(f"model key {text!r} has no version (expected 'name:version')")
        return cls(validate_name(name), _parse_version(version, text))

    @property
    def ref(self) -> ModelRef:
        """The reference that names exactly this version."""
        return ModelRef(self.name, self.version)

    def __str__(self) -> str:
        return f"{self.name}{_VERSION_SEPARATOR}{self.version}"


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model as requested: a name and a version, or ``None`` for the latest version."""

    name: str
    version: int | None = None

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.version is not None:
            validate_version(self.version)

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse ``"name"`` (latest) or ``"name:7"``; raise ``ConfigError`` with the reason otherwise."""
        name, sep, version = text.partition(_VERSION_SEPARATOR)
        if not name:
            raise ConfigError(f"model reference {text!r} has an empty model name")
        validate_name(name)
        if not sep:
            return cls(name)
        return cls(name, _parse_version(version, text))

    @property
    def is_latest(self) -> bool:
        """True when no version is named: the latest version in the store is meant."""
        return self.version is None

    def key(self) -> ModelKey:
        """The concrete key this reference names; it must name a version."""
        if self.version is None:
            raise ValueError(f"model reference {self} names no version; resolve it with resolve()")
        return ModelKey(self.name, self.version)

    def resolve(self, latest: int) -> ModelKey:
        """The concrete key: the named version, or ``latest`` (found by the caller) when none is named."""
        return ModelKey(self.name, latest if self.version is None else self.version)

    def __str__(self) -> str:
        if self.version is None:
            return self.name
        return f"{self.name}{_VERSION_SEPARATOR}{self.version}"
