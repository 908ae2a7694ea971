"""One child process of the stack: started in its own session, logged to a file, stopped by its group.

The child leads a new session, so its process group id is its PID, a Ctrl-C in the terminal reaches only
the supervisor (which stops the children in order), and everything the child starts is stopped with it:
SIGTERM to the group, SIGKILL after a grace period, then SIGKILL to whatever the group still holds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfscachectl.errors import ProcessError
from tfscachectl.local.process_groups import live_group_members, signal_group
from tfscachectl.local.readiness import ReadinessProbe
from tfscachectl.local.state import ChildRecord

#: How long a process group gets to empty after SIGKILL.
KILL_WAIT_S = 5.0
#: Polling of a process group that is emptying.
GROUP_POLL_INTERVAL_S = 0.02
LOG_TAIL_LINES = 30


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What to run: a name (also its log's name), the command, extra environment, how to tell it is ready."""

    name: str
    what: str
    argv: tuple[str, ...]
    log_path: Path
    probe: ReadinessProbe | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()


class Child:
    """A started child process."""

    def __init__(self, spec: ChildSpec, process: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self._process = process

    @classmethod
    async def start(cls, spec: ChildSpec, cwd: Path | None = None) -> Child:
        """Start ``spec`` in a new session, its output (stdout and stderr) written to its log file."""
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **spec.env}
        with spec.log_path.open("wb") as log:
            log.write(f"=== {' '.join(spec.argv)}\n".encode())
            log.flush()
            try:
                process = await asyncio.create_subprocess_exec(
                    *spec.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ProcessError(f"cannot start {spec.what} ({spec.argv[0]}): {exc}") from exc
        return cls(spec, process)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def record(self) -> ChildRecord:
        return ChildRecord(
            name=self.name,
            pid=self.pid,
            pgid=self.pid,
            argv=self.spec.argv,
            log=str(self.spec.log_path),
            ports=self.spec.ports,
        )

    async def wait(self) -> int:
        return await self._process.wait()

    async def stop(self, grace: float, hurry: asyncio.Event | None = None) -> int:
        """SIGTERM to the group; SIGKILL after ``grace`` seconds (or at once when ``hurry`` is set).

        Then SIGKILL to whatever the group still holds, and wait until it is empty. Returns the exit code.
        """
        if self._process.returncode is None:
            signal_group(self.pid, signal.SIGTERM)
            if not await self._exits_within(grace, hurry):
                signal_group(self.pid, signal.SIGKILL)
        code = await self._process.wait()
        if signal_group(self.pid, signal.SIGKILL):
            await self._group_empty(KILL_WAIT_S)
        return code

    async def kill(self) -> int:
        """SIGKILL the group at once."""
        signal_group(self.pid, signal.SIGKILL)
        code = await self._process.wait()
        await self._group_empty(KILL_WAIT_S)
        return code

    async def _exits_within(self, seconds: float, hurry: asyncio.Event | None) -> bool:
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._process.wait())]
        if hurry is not None:
            waiters.append(asyncio.ensure_future(hurry.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        return self._process.returncode is not None

    async def _group_empty(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while live_group_members(self.pid):
            if loop.time() >= deadline:
                raise ProcessError(
                    f"{self.spec.what}: process group {self.pid} did not go away after SIGKILL"
                )
            await asyncio.sleep(GROUP_POLL_INTERVAL_S)

    def describe_exit(self) -> str:
        """``<what> (pid N) exited with code C`` or ``... was killed by SIGKILL``."""
        code = self.returncode
        if code is None:
            return f"{self.spec.what} (pid {self.pid}) is running"
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        return f"{self.spec.what} ({self.name}, pid {self.pid}) {how}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.spec.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
