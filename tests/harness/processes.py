"""Child processes for tests: started on loopback ports, polled until ready, stopped by PID.

Every process runs in its own process group (its own session), logs stdout and stderr to a file under the
test's temporary directory, and is stopped with SIGTERM to the whole group, then SIGKILL after a grace
period. A ``ProcessRegistry`` owns the processes of one test (or one session) and stops them all at teardown;
the ``pytest_runtest_makereport`` hook in ``tests/conftest.py`` shows their log tails when a test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tfscachectl.errors import ProcessError

LOOPBACK = "127.0.0.1"

# How long a process gets to exit after SIGTERM before its group gets SIGKILL.
STOP_GRACE_S = 5.0
# How long to wait for a process to be reaped after SIGKILL.
KILL_WAIT_S = 5.0
# Readiness polling: start fast, back off to this interval.
POLL_FIRST_INTERVAL_S = 0.01
POLL_MAX_INTERVAL_S = 0.2
LOG_TAIL_LINES = 60


class NotReadyError(ProcessError):
    """A process did not become ready in time, or exited first."""


# Ports handed out in this test run, so two processes started close together never get the same one.
_issued_ports: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and that this run has not handed out before."""
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((LOOPBACK, 0))
                port: int = probe.getsockname()[1]
            if port not in _issued_ports:
                _issued_ports.add(port)
                return port
    raise ProcessError("no free loopback port found")


def free_ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) from ``/proc/<pid>/stat``, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID is alive (a zombie, dead but not yet reaped, is not)."""
    if Path("/proc/self/stat").exists():
        stat = _proc_stat(pid)
        return stat is not None and stat[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_group_members(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) processes in process group ``pgid``."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


class ManagedProcess:
    """One child process: its command, environment, working directory and log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None
        self._group_cleared = False
        self.starts = 0

    def __repr__(self) -> str:
        state = "not started" if self._popen is None else f"pid {self._popen.pid}"
        return f"<{self.name} {state}>"

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise ProcessError(f"{self.name} was never started")
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def exited(self) -> bool:
        return self._popen is not None and self._popen.poll() is not None

    def start(self) -> ManagedProcess:
        """Start (or start again after ``stop``) in a new process group, appending to the log file."""
        if self.running:
            raise ProcessError(f"{self.name} is already running as pid {self.pid}")
        env = None
        if self.env is not None:
            env = {**os.environ, **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"=== start #{self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                self._popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ProcessError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from exc
        self._group_cleared = False
        return self

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds; returns the exit code.

        Also cleans up what the process left in its group after it exited. Safe to call twice.
        """
        if self._popen is None or self._group_cleared:
            return None if self._popen is None else self._popen.returncode
        pgid = self._popen.pid  # the leader of its own session: group id == its PID
        if self._popen.poll() is None:
            self._signal_group(pgid, signal.SIGTERM)
            try:
                self._popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(pgid, signal.SIGKILL)
                self._popen.wait(timeout=KILL_WAIT_S)
        # Children that outlived the leader (or ignored SIGTERM) go too; init reaps them.
        if self._signal_group(pgid, signal.SIGKILL):
            wait_until(
                lambda: not live_group_members(pgid), KILL_WAIT_S, f"{self.name}'s process group to go"
            )
        self._group_cleared = True
        return self._popen.returncode

    def kill(self) -> int | None:
        """SIGKILL the whole group at once, with no SIGTERM first: a crash, to anyone watching."""
        if self._popen is not None and self._popen.poll() is None:
            self._signal_group(self._popen.pid, signal.SIGKILL)
            self._popen.wait(timeout=KILL_WAIT_S)
        return self.stop()

    @staticmethod
    def _signal_group(pgid: int, signum: signal.Signals) -> bool:
        """Signal a process group; false if it no longer exists."""
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            return False
        return True

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def describe(self) -> str:
        """One line: name, PID and whether it is running or how it exited."""
        if self._popen is None:
            return f"{self.name}: not started"
        code = self._popen.poll()
        state = "running" if code is None else f"exited with code {code}"
        return f"{self.name} (pid {self._popen.pid}): {state}; log {self.log_path}"


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    process: ManagedProcess | None = None,
) -> None:
    """Poll ``predicate`` until it returns true; raise ``NotReadyError`` after ``timeout`` seconds.

    An exception from ``predicate`` counts as "not yet" (the last one is reported). With ``process``,
    waiting stops as soon as it exits, and the error shows its log tail.
    """
    deadline = time.monotonic() + timeout
    interval = POLL_FIRST_INTERVAL_S
    last_error: Exception | None = None
    while True:
        try:
            if predicate():
                return
            last_error = None
        except Exception as exc:  # a probe failing is the normal "not ready yet"
            last_error = exc
        if process is not None and process.exited:
            raise NotReadyError(_not_ready_message(what, "the process exited first", process, last_error))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotReadyError(
                _not_ready_message(what, f"timed out after {timeout:g} s", process, last_error)
            )
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, POLL_MAX_INTERVAL_S)


def _not_ready_message(
    what: str, reason: str, process: ManagedProcess | None, last_error: Exception | None
) -> str:
    parts = [f"{what}: {reason}"]
    if last_error is not None:
        parts.append(f"last probe error: {type(last_error).__name__}: {last_error}")
    if process is not None:
        parts.append(process.describe())
        parts.append(f"--- last lines of {process.log_path.name} ---\n{process.log_tail()}")
    return "\n".join(parts)


class ProcessRegistry:
    """The processes of one test (or one test session): started here, stopped together at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []

    def create(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        """Register a process (not started yet) with its own log file ``<log_dir>/<name>.log``."""
        log_path = self._unique_log_path(name)
        process = ManagedProcess(name, argv, log_path, env=env, cwd=cwd)
        self.processes.append(process)
        return process

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        return self.create(name, argv, env=env, cwd=cwd).start()

    def stop_all(self) -> None:
        """Stop every process, last started first. Every one is attempted even if one fails."""
        errors: list[BaseException] = []
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise ProcessError(f"could not stop every process: {errors}") from errors[0]

    def log_report(self, lines: int = LOG_TAIL_LINES) -> str:
        """Each process's state and the tail of its log, for a failed test's report."""
        sections = []
        for process in self.processes:
            sections.append(f"=== {process.describe()}\n{process.log_tail(lines)}")
        return "\n\n".join(sections)

    def _unique_log_path(self, name: str) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        path = self.log_dir / f"{safe}.log"
        counter = 2
        while path.exists() or any(p.log_path == path for p in self.processes):
            path = self.log_dir / f"{safe}-{counter}.log"
            counter += 1
        return path
