"""Where the local stack keeps its files, under its state directory (``.tfscache`` by default).

::

    .tfscache/
      models/                 the example models, generated on first run
      logs/<child>.log        one log per child process, rewritten at every start
      run/                    this run's files, cleared at every start
        stack.json            the supervisor's state: its PID, every child's PID, group and ports
        daemon.yaml  envoy-bootstrap.yaml  envoy-admin-address
        node-1/agent.yaml  node-1/models.config  node-1/cache/
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class StackLayout:
    """The paths of one state directory (absolute)."""

    root: Path

    @property
    def examples_dir(self) -> Path:
        return self.root / "models"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "stack.json"

    @property
    def daemon_settings(self) -> Path:
        return self.run_dir / "daemon.yaml"

    @property
    def envoy_bootstrap(self) -> Path:
        return self.run_dir / "envoy-bootstrap.yaml"

    @property
    def envoy_admin_address(self) -> Path:
        return self.run_dir / "envoy-admin-address"

    def node_dir(self, node_id: str) -> Path:
        return self.run_dir / node_id

    def agent_settings(self, node_id: str) -> Path:
        return self.node_dir(node_id) / "agent.yaml"

    def model_config(self, node_id: str) -> Path:
        return self.node_dir(node_id) / "models.config"

    def cache_dir(self, node_id: str) -> Path:
        return self.node_dir(node_id) / "cache"

    def log(self, child: str) -> Path:
        return self.logs_dir / f"{child}.log"
