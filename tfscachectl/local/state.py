"""The supervisor's state file (``run/stack.json``): who is running, so others can find and check it.

It names the supervisor's PID and, for every child, its name, PID, process group, log and ports. It is
rewritten as children start and removed when the stack has stopped. A file left behind by a supervisor that
was killed (SIGKILL cannot be caught) lets the next start stop the children it left.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tfscachectl.errors import ConfigError

STATE_FORMAT = 1


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """One child process as the state file names it."""

    name: str
    pid: int
    pgid: int
    argv: tuple[str, ...]
    log: str
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StackState:
    supervisor_pid: int
    state_dir: str
    ready: bool
    ports: tuple[int, ...]
    children: tuple[ChildRecord, ...]

    def to_json(self) -> str:
        document = {"format": STATE_FORMAT, **asdict(self)}
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StackState:
        try:
            document: dict[str, Any] = json.loads(text)
            if document.get("format") != STATE_FORMAT:
                raise ValueError(f"unknown format {document.get('format')!r}")
            return cls(
                supervisor_pid=int(document["supervisor_pid"]),
                state_dir=str(document["state_dir"]),
                ready=bool(document["ready"]),
                ports=tuple(int(p) for p in document["ports"]),
                children=tuple(
                    ChildRecord(
                        name=str(c["name"]),
                        pid=int(c["pid"]),
                        pgid=int(c["pgid"]),
                        argv=tuple(str(a) for a in c["argv"]),
                        log=str(c["log"]),
                        ports=tuple(int(p) for p in c["ports"]),
                    )
                    for c in document["children"]
                ),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"unreadable stack state: {exc}") from exc


def write_state(path: Path, state: StackState) -> None:
    """Replace the state file atomically (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(state.to_json())
    scratch.replace(path)


def read_state(path: Path) -> StackState | None:
    """The state in ``path``, or None if there is no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the stack state {path}: {exc}") from exc
    return StackState.from_json(text)


def remove_state(path: Path) -> None:
    path.unlink(missing_ok=True)
