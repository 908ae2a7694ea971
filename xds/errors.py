"""The xDS side's errors, in the project's tree (``tfscachectl.errors``)::

ConfigError
└── InconsistentSnapshotError   a snapshot names a resource it does not hold (a builder bug)
ProcessError
├── ConfigRejectedError         Envoy NACKed the current configuration (with its error detail)
└── ConfigNotAppliedError       Envoy did not acknowledge the current configuration in time
"""

from __future__ import annotations

from tfscachectl.errors import ConfigError, ProcessError


class InconsistentSnapshotError(ConfigError):
    """A snapshot refers to resources it does not contain; it is never served."""

    def __init__(self, version: str, problems: list[str]) -> None:
        super().__init__(f"snapshot {version} is inconsistent: {'; '.join(problems)}")
        self.version = version
        self.problems = problems


class ConfigRejectedError(ProcessError):
    """Envoy rejected (NACKed) a version of a resource type."""

    def __init__(self, node: str, type_url: str, version: str, detail: str) -> None:
        super().__init__(f"Envoy {node} rejected {type_url} version {version}: {detail}")
        self.node = node
        self.type_url = type_url
        self.version = version
        self.detail = detail


class ConfigNotAppliedError(ProcessError):
    """Envoy did not acknowledge the current configuration before the deadline."""
