"""The local stack (``tfscachectl up``): Envoy, the daemon, node agents and serving backends as children.

Modules:

- ``settings``: ``StackSettings`` (a YAML file and the command's options)
- ``layout``: the state directory (``.tfscache``): example models, logs, this run's files
- ``ports``: fixed and free ports, checked before anything starts
- ``examples``: the example models, generated on first run
- ``plan``: the children in start order, their files and readiness probes (pure)
- ``readiness``: the probes
- ``child``, ``process_groups``: one child in its own process group, stopped with its group
- ``supervisor``: start tier by tier, watch, stop in reverse order; SIGINT/SIGTERM
- ``state``, ``previous_run``: the state file; a running stack or the orphans of a killed one
- ``endpoints``: what is printed when the stack is ready (endpoints, curl and gRPC examples)
- ``stack``: ``run_local_stack``, all of it in order
"""

from tfscachectl.local.endpoints import StackEndpoints
from tfscachectl.local.settings import StackSettings, load_stack_settings
from tfscachectl.local.stack import StackReporter, StackStopped, run_local_stack
from tfscachectl.local.supervisor import ChildExitedError, NotReadyError

__all__ = [
    "ChildExitedError",
    "NotReadyError",
    "StackEndpoints",
    "StackReporter",
    "StackSettings",
    "StackStopped",
    "load_stack_settings",
    "run_local_stack",
]
