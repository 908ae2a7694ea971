"""What the stack runs, in order, computed from the settings: the children, their files, their probes.

Tiers start in this order and stop in the reverse one; the children of a tier start together:

1. the serving backends (the bundled one, or ``tensorflow_model_server``), each with an empty model list;
2. one node agent per backend, the only writer of that backend's model list;
3. the control daemon, with the static node list (xDS and ext_proc for Envoy);
4. Envoy, whose bootstrap points at the daemon; ready when its client listeners (from the daemon) open.

Nothing here starts a process; the files (settings, bootstrap, model configs) are written by the caller.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tfscachectl.envoy_launcher import BootstrapSettings, envoy_argv, render_bootstrap
from tfscachectl.local.child import ChildSpec
from tfscachectl.local.layout import StackLayout
from tfscachectl.local.ports import LOOPBACK, StackPorts
from tfscachectl.local.readiness import EnvoyReady, HttpAnswers, PortAccepts
from tfscachectl.local.settings import StackSettings
from tfscachectl.tfserving.launcher import TF_SERVING_BINARY_ENV, format_flag, serving_backend_command

#: A model list with no model: the agents add models as requests need them.
EMPTY_MODEL_CONFIG = "model_config_list {\n}\n"
#: Asked of a backend that serves nothing yet: any HTTP answer (a 404) means its REST API is up.
SERVING_PROBE_PATH = "/v1/models/readiness-probe"
ENVOY_LOG_LEVEL = "info"


@dataclass(frozen=True, slots=True)
class RunFile:
    """A file a child reads, written before the stack starts."""

    path: Path
    text: str


@dataclass(frozen=True, slots=True)
class Tier:
    """Children started together and waited for together, within ``ready_timeout`` seconds."""

    name: str
    children: tuple[ChildSpec, ...]
    ready_timeout: float


@dataclass(frozen=True, slots=True)
class StackPlan:
    tiers: tuple[Tier, ...]
    files: tuple[RunFile, ...]
    ports: StackPorts
    store: str
    node_ids: tuple[str, ...]


def node_ids(count: int) -> tuple[str, ...]:
    return tuple(f"node-{index + 1}" for index in range(count))


def child_environment(settings: StackSettings) -> dict[str, str]:
    """Environment the children get on top of the supervisor's own."""
    if settings.tf_serving_binary:
        return {TF_SERVING_BINARY_ENV: settings.tf_serving_binary}
    return {}


def plan_stack(
    settings: StackSettings,
    layout: StackLayout,
    ports: StackPorts,
    store: str,
    envoy_binary: Path,
    environ: Mapping[str, str],
) -> StackPlan:
    """The whole stack for ``settings`` on ``ports``, serving the models of ``store``.

    ``environ`` is the environment the children will see (it picks the serving backend's program);
    an unknown ``tf_serving_binary`` is a ``ConfigError``.
    """
    ids = node_ids(settings.nodes)
    extra_env = child_environment(settings)
    serving = serving_backend_command({**environ, **extra_env})
    tfscachectl = (sys.executable, "-m", "tfscachectl")
    files: list[RunFile] = []
    backends: list[ChildSpec] = []
    agents: list[ChildSpec] = []
    for node_id, node in zip(ids, ports.nodes, strict=True):
        config = layout.model_config(node_id)
        files.append(RunFile(config, EMPTY_MODEL_CONFIG))
        flags = [
            format_flag("port", node.serving_grpc),
            format_flag("rest_api_port", node.serving_rest),
            format_flag("model_config_file", config),
            # The agent retries by itself; TF Serving's retries would hold its reload lock for minutes.
            format_flag("max_num_load_retries", 0),
            format_flag("file_system_poll_wait_seconds", 1),
        ]
        if serving.bundled:
            flags.append(format_flag("listen_address", LOOPBACK))
        backends.append(
            ChildSpec(
                name=f"serving-{node_id}",
                what=f"the serving backend of {node_id}",
                argv=tuple(serving.argv(flags)),
                log_path=layout.log(f"serving-{node_id}"),
                probe=HttpAnswers(f"http://{LOOPBACK}:{node.serving_rest}{SERVING_PROBE_PATH}"),
                env=extra_env,
                ports=(node.serving_grpc, node.serving_rest),
            )
        )
        agent_path = layout.agent_settings(node_id)
        files.append(RunFile(agent_path, _yaml(_agent_settings(settings, layout, node_id, ports, store))))
        agents.append(
            ChildSpec(
                name=f"agent-{node_id}",
                what=f"the node agent of {node_id}",
                argv=(*tfscachectl, "agent", "--config", str(agent_path)),
                log_path=layout.log(f"agent-{node_id}"),
                probe=PortAccepts(LOOPBACK, node.agent),
                env=extra_env,
                ports=(node.agent, node.agent_metrics),
            )
        )
    files.append(RunFile(layout.daemon_settings, _yaml(_daemon_settings(settings, ports, ids))))
    daemon = ChildSpec(
        name="daemon",
        what="the control daemon",
        argv=(*tfscachectl, "serve", "--config", str(layout.daemon_settings)),
        log_path=layout.log("daemon"),
        probe=PortAccepts(LOOPBACK, ports.xds),
        env=extra_env,
        ports=(ports.xds, ports.ext_proc, ports.metrics, ports.admin_api),
    )
    bootstrap = BootstrapSettings(
        xds_host=LOOPBACK, xds_port=ports.xds, admin_host=LOOPBACK, admin_port=ports.admin
    )
    files.append(RunFile(layout.envoy_bootstrap, render_bootstrap(bootstrap)))
    envoy = ChildSpec(
        name="envoy",
        what="Envoy",
        argv=tuple(
            envoy_argv(
                envoy_binary,
                layout.envoy_bootstrap,
                log_level=ENVOY_LOG_LEVEL,
                admin_address_path=layout.envoy_admin_address,
            )
        ),
        log_path=layout.log("envoy"),
        probe=EnvoyReady(layout.envoy_admin_address, settings.host, (ports.rest, ports.grpc)),
        ports=(ports.rest, ports.grpc, *((ports.admin,) if ports.admin else ())),
    )
    timeouts = settings.timeouts
    tiers = (
        Tier("serving backends", tuple(backends), timeouts.serving_ready),
        Tier("node agents", tuple(agents), timeouts.agent_ready),
        Tier("control daemon", (daemon,), timeouts.daemon_ready),
        Tier("Envoy", (envoy,), timeouts.envoy_ready),
    )
    return StackPlan(tiers=tiers, files=tuple(files), ports=ports, store=store, node_ids=ids)


def _agent_settings(
    settings: StackSettings, layout: StackLayout, node_id: str, ports: StackPorts, store: str
) -> dict[str, Any]:
    node = ports.nodes[node_ids(settings.nodes).index(node_id)]
    return {
        "node_id": node_id,
        "listen": f"{LOOPBACK}:{node.agent}",
        "metrics_listen": f"{LOOPBACK}:{node.agent_metrics}",
        "tf_serving_grpc": f"{LOOPBACK}:{node.serving_grpc}",
        "tf_serving_rest": f"{LOOPBACK}:{node.serving_rest}",
        "store": store,
        "s3": settings.s3.model_dump(),
        "cache_dir": str(layout.cache_dir(node_id)),
        "max_models": settings.max_models,
        "max_bytes": settings.max_bytes,
        "disk_bytes": settings.disk_bytes,
        "guard_window": settings.guard_window,
    }


def _daemon_settings(settings: StackSettings, ports: StackPorts, ids: tuple[str, ...]) -> dict[str, Any]:
    return {
        "xds_listen": f"{LOOPBACK}:{ports.xds}",
        "ext_proc_listen": f"{LOOPBACK}:{ports.ext_proc}",
        "metrics_listen": f"{LOOPBACK}:{ports.metrics}",
        "admin_listen": f"{LOOPBACK}:{ports.admin_api}",
        "rest_listen": f"{settings.host}:{ports.rest}",
        "grpc_listen": f"{settings.host}:{ports.grpc}",
        "replicas": settings.replicas,
        "timeouts": {"ensure": settings.timeouts.ensure},
        "nodes": [
            {
                "id": node_id,
                "rest": f"{LOOPBACK}:{node.serving_rest}",
                "grpc": f"{LOOPBACK}:{node.serving_grpc}",
                "agent": f"{LOOPBACK}:{node.agent}",
            }
            for node_id, node in zip(ids, ports.nodes, strict=True)
        ],
    }


def _yaml(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), sort_keys=False)
