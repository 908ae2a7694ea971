"""Version directories and version policies, as TF Serving's file-system source reads them (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_INT64_MAX = 2**63 - 1


def parse_version_dir(name: str) -> int | None:
    """The version a directory name stands for, or None when it is not a version.

    TF Serving parses names with ``SimpleAtoi`` into an int64: ``00000123`` is 123; names that are not
    base-10 integers, or overflow, are ignored.
    """
    if not name or not name.isascii() or not name.isdigit():
        return None
    value = int(name)
    return value if value <= _INT64_MAX else None


@dataclass(frozen=True)
class Latest:
    """The ``num_versions`` highest versions (TF Serving's default, with 1)."""

    num_versions: int = 1


@dataclass(frozen=True)
class AllVersions:
    """Every version on disk."""


@dataclass(frozen=True)
class Specific:
    """Exactly these versions, those of them that are on disk."""

    versions: frozenset[int]


VersionPolicy = Latest | AllVersions | Specific


def aspired_versions(policy: VersionPolicy, on_disk: Iterable[int]) -> frozenset[int]:
    """The versions TF Serving wants loaded under ``policy`` given the versions found on disk."""
    found = sorted(set(on_disk), reverse=True)
    if isinstance(policy, Latest):
        return frozenset(found[: max(policy.num_versions, 1)])
    if isinstance(policy, AllVersions):
        return frozenset(found)
    return frozenset(v for v in found if v in policy.versions)


def versions_on_disk(children: Iterable[str]) -> dict[int, str]:
    """Version to directory name for the children of a base path; a later duplicate wins, as in TF Serving."""
    result: dict[int, str] = {}
    for child in sorted(children):
        version = parse_version_dir(child)
        if version is not None:
            result[version] = child
    return result


def policy_from_proto(policy: object) -> VersionPolicy:
    """Our policy from a ``FileSystemStoragePathSourceConfig.ServableVersionPolicy`` proto."""
    which = policy.WhichOneof("policy_choice")  # type: ignore[attr-defined]
    if which == "all":
        return AllVersions()
    if which == "specific":
        return Specific(frozenset(int(v) for v in policy.specific.versions))  # type: ignore[attr-defined]
    if which == "latest":
        return Latest(int(policy.latest.num_versions) or 1)  # type: ignore[attr-defined]
    return Latest(1)


def describe(versions: Mapping[int, str] | Iterable[int]) -> str:
    return "{" + ", ".join(str(v) for v in sorted(versions)) + "}"
