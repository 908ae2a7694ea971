"""Servable states as TF Serving reports them, and a monitor that never forgets a version."""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

from tfscachectl.errors import Code, ServingError


class State(enum.IntEnum):
    """``ModelVersionStatus.State`` (get_model_status.proto)."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: State
    error_code: Code = Code.OK
    error_message: str = ""


class StateMonitor:
    """Latest state of every version ever seen, per model (TF Serving's ServableStateMonitor).

    Versions are never forgotten: a removed model still reports its versions in END. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, dict[int, VersionStatus]] = {}
        self._changed = threading.Condition(self._lock)

    def publish(self, name: str, status: VersionStatus) -> None:
        with self._lock:
            self._states.setdefault(name, {})[status.version] = status
            self._changed.notify_all()

    def get(self, name: str, version: int) -> VersionStatus | None:
        with self._lock:
            return self._states.get(name, {}).get(version)

    def versions(self, name: str) -> list[VersionStatus]:
        """Every version ever seen of ``name``, highest first."""
        with self._lock:
            return sorted(self._states.get(name, {}).values(), key=lambda s: s.version, reverse=True)

    def model_status(self, name: str, version: int | None) -> list[VersionStatus]:
        """What GetModelStatus returns, or its NOT_FOUND error."""
        if version is None:
            found = self.versions(name)
            if not found:
                raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {name}")
            return found
        one = self.get(name, version)
        if one is None:
            raise ServingError(Code.NOT_FOUND, f"Could not find version {version} of model {name}")
        return [one]
