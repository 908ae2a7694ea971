"""Writing a ``--model_config_file``: a text-format ``ModelServerConfig`` with a ``model_config_list``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class LatestVersions:
    """``latest { num_versions: n }``: the n highest versions (TF Serving's default, n = 1)."""

    num_versions: int = 1

    def text(self) -> str:
        return f"latest {{ num_versions: {self.num_versions} }}"


@dataclass(frozen=True, slots=True)
class AllVersions:
    """``all {}``: every version on disk."""

    def text(self) -> str:
        return "all {}"


@dataclass(frozen=True, slots=True)
class SpecificVersions:
    """``specific { versions: ... }``: these versions (the ones present on disk)."""

    versions: tuple[int, ...]

    def text(self) -> str:
        listed = " ".join(f"versions: {version}" for version in self.versions)
        return f"specific {{ {listed} }}"


VersionPolicy = LatestVersions | AllVersions | SpecificVersions


@dataclass(frozen=True, slots=True)
class ModelConfigEntry:
    """One ``config { ... }`` of the list."""

    name: str
    base_path: Path | str
    version_policy: VersionPolicy | None = None
    labels: Mapping[str, int] = field(default_factory=dict)
    platform: str = "tensorflow"

    def text(self) -> str:
        lines = [
            "  config {",
            f"    name: {_quote(self.name)}",
            f"    base_path: {_quote(str(self.base_path))}",
            f"    model_platform: {_quote(self.platform)}",
        ]
        if self.version_policy is not None:
            lines.append(f"    model_version_policy {{ {self.version_policy.text()} }}")
        for label, version in self.labels.items():
            lines.append(f"    version_labels {{ key: {_quote(label)} value: {version} }}")
        lines.append("  }")
        return "\n".join(lines)


def model_server_config_text(entries: Iterable[ModelConfigEntry]) -> str:
    """The whole file. No entries gives an empty ``model_config_list`` (serve nothing)."""
    body = "\n".join(entry.text() for entry in entries)
    return f"model_config_list {{\n{body}\n}}\n" if body else "model_config_list {\n}\n"


def write_model_config(path: Path, entries: Iterable[ModelConfigEntry]) -> Path:
    """Write the file atomically (a poller reading it never sees half of it); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(model_server_config_text(entries))
    scratch.replace(path)
    return path


def _quote(text: str) -> str:
    # A JSON string literal is a valid text-format string literal for the characters used here.
    return json.dumps(text)
