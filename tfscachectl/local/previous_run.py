"""What a previous run left in the state directory: a stack still running, or children it left behind.

A supervisor that is still alive owns its state directory: a second ``up`` on it is refused. A supervisor
killed without a chance to stop its children (SIGKILL) leaves its state file behind; its children that are
still alive, recognised by their PID *and* their command line, are killed before the new run starts.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tfscachectl.errors import ConfigError, ProcessError
from tfscachectl.local.process_groups import command_line, live_group_members, pid_alive, signal_group
from tfscachectl.local.state import StackState, read_state, remove_state

#: How long the groups of orphaned children get to empty after SIGKILL.
ORPHAN_KILL_WAIT_S = 5.0
ORPHAN_POLL_INTERVAL_S = 0.05
SUPERVISOR_MARK = "tfscachectl"


def supervisor_alive(state: StackState) -> bool:
    """Whether the supervisor that wrote ``state`` is still running (and is another process)."""
    if state.supervisor_pid == os.getpid() or not pid_alive(state.supervisor_pid):
        return False
    argv = command_line(state.supervisor_pid)
    return argv is None or any(SUPERVISOR_MARK in part for part in argv)


def clear_previous_run(state_file: Path) -> list[str]:
    """Refuse to start next to a running stack; kill the orphans of a dead one. Returns their names.

    Raises ``ConfigError`` when another supervisor is running on this state directory.
    """
    state = read_state(state_file)
    if state is None:
        return []
    if supervisor_alive(state):
        raise ConfigError(
            f"a stack is already running from {state.state_dir} (pid {state.supervisor_pid}); "
            "stop it first, or give this one another --state-dir"
        )
    orphans = [
        child for child in state.children if pid_alive(child.pid) and command_line(child.pid) == child.argv
    ]
    for child in orphans:
        signal_group(child.pgid, signal.SIGKILL)
    deadline = time.monotonic() + ORPHAN_KILL_WAIT_S
    for child in orphans:
        while live_group_members(child.pgid):
            if time.monotonic() >= deadline:
                raise ProcessError(f"{child.name} left by a previous run (pid {child.pid}) does not go away")
            time.sleep(ORPHAN_POLL_INTERVAL_S)
    remove_state(state_file)
    return [f"{child.name} (pid {child.pid})" for child in orphans]
