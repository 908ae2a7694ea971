"""A whole tfscache stack for end-to-end tests: serving backends, their agents, the daemon and Envoy.

Every part is a real process on free loopback ports, started in dependency order and waited for:
backends (REST answers), agents (their API port accepts), the daemon (its xDS port accepts), then Envoy
(admin says LIVE and both client listeners accept connections, i.e. the daemon's configuration arrived).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness.envoy import EnvoyProcess
from tests.harness.processes import (
    LOOPBACK,
    ManagedProcess,
    ProcessRegistry,
    free_port,
    port_accepts,
    wait_until,
)
from tests.harness.serving import REPO_ROOT, ServingBackend
from tfscachectl.envoy_launcher import BootstrapSettings, render_bootstrap

AGENT_READY_TIMEOUT_S = 90.0
DAEMON_READY_TIMEOUT_S = 60.0
LISTENERS_READY_TIMEOUT_S = 60.0
METRICS_TIMEOUT_S = 10.0


def _python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    env.update(extra or {})
    return env


@dataclass
class StackNode:
    id: str
    backend: ServingBackend
    agent: ManagedProcess
    agent_port: int
    cache_dir: Path


@dataclass
class Stack:
    nodes: list[StackNode]
    daemon: ManagedProcess
    envoy: EnvoyProcess
    rest_port: int
    grpc_port: int
    metrics_port: int
    settings_dir: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def rest_url(self) -> str:
        return f"http://{LOOPBACK}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    def daemon_metrics(self) -> dict[str, float]:
        """The daemon's ``/metrics`` page: each sample (name with its labels) and its value."""
        url = f"http://{LOOPBACK}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT_S) as reply:
            page = reply.read().decode()
        samples = {}
        for line in page.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def node_of_rest_address(self, address: str) -> StackNode:
        return next(n for n in self.nodes if f"{LOOPBACK}:{n.backend.rest_port}" == address)

    def stop(self) -> None:
        for process in [self.envoy.process, self.daemon] + [
            p for n in self.nodes for p in (n.agent, n.backend.process)
        ]:
            process.stop()


def start_agent(
    registry: ProcessRegistry,
    work_dir: Path,
    node_id: str,
    backend: ServingBackend,
    store: str,
    agent_settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> StackNode:
    """Start the agent of ``node_id`` beside its (running) ``backend``; does not wait for it."""
    port = free_port()
    cache_dir = work_dir / node_id / "cache"
    settings = {
        "node_id": node_id,
        "listen": f"{LOOPBACK}:{port}",
        "tf_serving_grpc": backend.grpc_target,
        "tf_serving_rest": f"{LOOPBACK}:{backend.rest_port}",
        "store": store,
        "cache_dir": str(cache_dir),
        "guard_window": 0.0,
        **(agent_settings or {}),
    }
    path = work_dir / node_id / "agent.yaml"
    path.write_text(yaml.safe_dump(settings))
    agent = registry.create(
        f"agent-{node_id}",
        [sys.executable, "-m", "tfscachectl", "agent", "--config", str(path)],
        env=_python_env(env),
        cwd=REPO_ROOT,
    )
    agent.start()
    return StackNode(node_id, backend, agent, port, cache_dir)


def add_node(
    registry: ProcessRegistry,
    stack: Stack,
    node_id: str,
    store: str,
    *,
    agent_settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    backend_flags: Sequence[str] = ("--max_num_load_retries=0",),
) -> StackNode:
    """Start one more backend and agent (they join through discovery, not through the daemon's settings)."""
    backend = ServingBackend.with_models(
        registry, stack.settings_dir / node_id, [], name=f"serving-{node_id}", extra_flags=list(backend_flags)
    )
    backend.process.start()
    wait_until(backend.answers, 90, f"serving backend of {node_id}", process=backend.process)
    node = start_agent(registry, stack.settings_dir, node_id, backend, store, agent_settings, env)
    wait_until(
        lambda: port_accepts(node.agent_port),
        AGENT_READY_TIMEOUT_S,
        f"agent of {node_id}",
        process=node.agent,
    )
    stack.nodes.append(node)
    return node


def start_stack(
    registry: ProcessRegistry,
    work_dir: Path,
    store: str,
    *,
    nodes: int = 2,
    agent_settings: dict[str, Any] | None = None,
    daemon_settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    backend_flags: Sequence[str] = ("--max_num_load_retries=0",),
    serving_addresses: Mapping[str, tuple[str, str]] | None = None,
    envoy_log_level: str = "info",
) -> Stack:
    """Start ``nodes`` backends and agents on ``store``, the daemon and Envoy; wait until all are ready.

    ``serving_addresses`` maps a node id to the (REST, gRPC) ``host:port`` the daemon forwards that node's
    requests to instead of its backend (a stand-in upstream); the agents still manage the real backends.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    ids = [f"node-{index + 1}" for index in range(nodes)]
    unknown = set(serving_addresses or {}) - set(ids)
    if unknown:
        raise ValueError(f"serving_addresses names nodes the stack does not have: {sorted(unknown)}")
    backends = {
        node_id: ServingBackend.with_models(
            registry, work_dir / node_id, [], name=f"serving-{node_id}", extra_flags=list(backend_flags)
        )
        for node_id in ids
    }
    for backend in backends.values():
        backend.process.start()
    for node_id, backend in backends.items():
        wait_until(backend.answers, 90, f"serving backend of {node_id}", process=backend.process)
    stack_nodes = [
        start_agent(registry, work_dir, node_id, backend, store, agent_settings, env)
        for node_id, backend in backends.items()
    ]
    for node in stack_nodes:
        wait_until(
            lambda node=node: port_accepts(node.agent_port),
            AGENT_READY_TIMEOUT_S,
            f"agent of {node.id}",
            process=node.agent,
        )
    forward_to = {n.id: (f"{LOOPBACK}:{n.backend.rest_port}", n.backend.grpc_target) for n in stack_nodes}
    forward_to.update(serving_addresses or {})
    rest_port, grpc_port, xds_port, ext_proc_port, metrics_port = (free_port() for _ in range(5))
    daemon_config = {
        "xds_listen": f"{LOOPBACK}:{xds_port}",
        "ext_proc_listen": f"{LOOPBACK}:{ext_proc_port}",
        "metrics_listen": f"{LOOPBACK}:{metrics_port}",
        "admin_listen": f"{LOOPBACK}:{free_port()}",
        "rest_listen": f"{LOOPBACK}:{rest_port}",
        "grpc_listen": f"{LOOPBACK}:{grpc_port}",
        "nodes": [
            {
                "id": n.id,
                "rest": forward_to[n.id][0],
                "grpc": forward_to[n.id][1],
                "agent": f"{LOOPBACK}:{n.agent_port}",
            }
            for n in stack_nodes
        ],
        **(daemon_settings or {}),
    }
    daemon_path = work_dir / "daemon.yaml"
    daemon_path.write_text(yaml.safe_dump(daemon_config))
    daemon = registry.create(
        "daemon",
        [sys.executable, "-m", "tfscachectl", "serve", "--config", str(daemon_path)],
        env=_python_env(env),
        cwd=REPO_ROOT,
    )
    daemon.start()
    wait_until(lambda: port_accepts(xds_port), DAEMON_READY_TIMEOUT_S, "daemon xDS server", process=daemon)
    bootstrap = render_bootstrap(
        BootstrapSettings(xds_host=LOOPBACK, xds_port=xds_port, admin_port=free_port())
    )
    envoy = EnvoyProcess(
        registry, bootstrap, work_dir / "envoy", name="envoy", log_level=envoy_log_level
    ).start()
    wait_until(
        lambda: port_accepts(rest_port) and port_accepts(grpc_port),
        LISTENERS_READY_TIMEOUT_S,
        "Envoy's client listeners (configured by the daemon)",
        process=envoy.process,
    )
    return Stack(stack_nodes, daemon, envoy, rest_port, grpc_port, metrics_port, work_dir)
