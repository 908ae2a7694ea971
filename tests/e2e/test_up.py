"""``tfscachectl up`` as a user runs it: a real process, its printed commands, SIGINT and SIGTERM, a crash.

Each test runs ``python -m tfscachectl up`` on free loopback ports in its own directory, waits for the ready
banner (polling its output), and checks that when it ends every child it started is gone and every port
it used is free again. Children are found in the supervisor's state file (``.tfscache/run/stack.json``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.processes import (
    LOOPBACK,
    ManagedProcess,
    ProcessRegistry,
    free_port,
    live_group_members,
    pid_alive,
    wait_until,
)
from tests.harness.serving import REPO_ROOT
from tfscachectl.modelgen.store import ModelStoreTree
from tfscachectl.modelgen.tenants import tenant_weights

pytestmark = pytest.mark.e2e

READY_BANNER = "tfscache is ready"
# Starting two TensorFlow backends, two agents and the daemon on two cores; more with model generation.
UP_READY_TIMEOUT_S = 180.0
UP_FIRST_RUN_READY_TIMEOUT_S = 240.0
UP_EXIT_TIMEOUT_S = 60.0
CLIENT_TIMEOUT_S = 120.0
QUICK_EXIT_TIMEOUT_S = 60.0
# tenant-0001 is y = 1*x + 0.25; the printed examples send [1.0, 2.0].
EXPECTED = [tenant_weights(1).predict(x) for x in (1.0, 2.0)]


@dataclass
class RunningUp:
    """One ``tfscachectl up`` process and its directory."""

    process: ManagedProcess
    work_dir: Path

    @property
    def state_file(self) -> Path:
        return self.work_dir / ".tfscache" / "run" / "stack.json"

    def output(self) -> str:
        return self.process.log_text()

    def line_starting(self, prefix: str) -> str:
        lines = [line.strip() for line in self.output().splitlines() if line.strip().startswith(prefix)]
        assert lines, f"no line starting with {prefix!r} in:\n{self.output()}"
        return lines[-1]

    def line_containing(self, *parts: str) -> str:
        lines = [line.strip() for line in self.output().splitlines() if all(p in line for p in parts)]
        assert lines, f"no line with {parts!r} in:\n{self.output()}"
        return lines[-1]

    def state(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.state_file.read_text())
        return document

    def wait_ready(self, timeout: float = UP_READY_TIMEOUT_S) -> None:
        wait_until(
            lambda: READY_BANNER in self.output(),
            timeout,
            "tfscachectl up's ready banner",
            process=self.process,
        )

    def wait_exit(self, timeout: float = UP_EXIT_TIMEOUT_S) -> int:
        wait_until(lambda: self.process.exited, timeout, "tfscachectl up to exit")
        code = self.process.returncode
        assert code is not None
        return code


def _up_env() -> dict[str, str]:
    return {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
    }


@pytest.fixture
def start_up(processes: ProcessRegistry, tmp_path: Path) -> Iterator[Any]:
    """``start_up(*options)``: ``python -m tfscachectl up`` with free ports, in a fresh directory.

    At teardown, anything a failed test left running (the supervisor, then its children) is stopped.
    """
    started: list[RunningUp] = []

    def start(*options: str, work_dir: Path | None = None) -> RunningUp:
        directory = work_dir or tmp_path / f"up-{len(started) + 1}"
        directory.mkdir(parents=True, exist_ok=True)
        ports = [
            f"--rest-port={free_port()}",
            f"--grpc-port={free_port()}",
            f"--admin-port={free_port()}",
            f"--admin-api-port={free_port()}",
        ]
        argv = [sys.executable, "-m", "tfscachectl", "up", *ports, *options]
        process = processes.create(f"up-{len(started) + 1}", argv, env=_up_env(), cwd=directory).start()
        running = RunningUp(process, directory)
        started.append(running)
        return running

    yield start
    for running in started:
        running.process.stop()
        if running.state_file.exists():
            for child in running.state()["children"]:
                if live_group_members(child["pgid"]):
                    os.killpg(child["pgid"], signal.SIGKILL)


@pytest.fixture(scope="module")
def model_dir(generated_models: ModelStoreTree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small store: three tenants and half_plus_two."""
    root = tmp_path_factory.mktemp("up-models")
    for name in ["tenant-0001", "tenant-0002", "tenant-0003", "half_plus_two"]:
        shutil.copytree(generated_models.base_path(name), root / name)
    return root


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _assert_everything_gone(state: dict[str, Any]) -> None:
    """Every child of ``state`` is dead, its process group empty, and every port of the stack free."""
    assert len(state["children"]) >= 6, state  # 2 backends, 2 agents, the daemon, Envoy
    alive = [c["name"] for c in state["children"] if pid_alive(c["pid"]) or live_group_members(c["pgid"])]
    assert not alive, f"still running after up exited: {alive}"
    taken = [port for port in state["ports"] if not _port_is_free(port)]
    assert not taken, f"ports still taken after up exited: {taken}"


def _rest_prediction_from_printed_curl(up: RunningUp, model: str | None = None) -> list[float]:
    command = up.line_starting("curl ")
    if model is not None:  # the printed command, for another model
        command = re.sub(r"/v1/models/[^:]+:predict", f"/v1/models/{model}:predict", command)
    result = subprocess.run(
        shlex.split(command), capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, result.stderr
    predictions: list[float] = json.loads(result.stdout)["predictions"]
    return predictions


def _grpc_prediction(target: str, model: str) -> list[float]:
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray([1.0, 2.0], dtype=np.float32)))
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=CLIENT_TIMEOUT_S)
    return list(response.outputs["y"].float_val)


def test_up_serves_the_printed_commands_and_stops_on_sigint(start_up: Any, model_dir: Path) -> None:
    up = start_up(f"--model-dir={model_dir}")
    up.wait_ready()
    state = up.state()
    assert state["ready"] is True
    assert state["supervisor_pid"] == up.process.pid
    assert {c["name"] for c in state["children"]} == {
        "serving-node-1",
        "serving-node-2",
        "agent-node-1",
        "agent-node-2",
        "daemon",
        "envoy",
    }

    assert _rest_prediction_from_printed_curl(up) == EXPECTED
    grpc_target = up.line_starting("gRPC").split()[-1]
    assert _grpc_prediction(grpc_target, "tenant-0001") == EXPECTED
    # The printed gRPC example is a command that works as printed, too.
    printed = up.line_containing(" -c ", "tensorflow_serving.apis")
    result = subprocess.run(
        printed,
        shell=True,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
        cwd=up.work_dir,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == EXPECTED

    os.kill(up.process.pid, signal.SIGINT)
    assert up.wait_exit() == 0
    assert "stopped (SIGINT)" in up.output()
    _assert_everything_gone(state)
    assert not up.state_file.exists()


# ----- the operator commands, as a new user tries them ---------------------------------------------

STATUS_TIMEOUT_S = 20.0  # fast-path hits reach the agents' counts through the recency feed, about 1 s


def _tfscachectl(up: RunningUp, *args: str) -> subprocess.CompletedProcess[str]:
    admin = up.line_starting("admin API").split()[-1]
    return subprocess.run(
        [sys.executable, "-m", "tfscachectl", *args, "--admin", admin],
        capture_output=True,
        text=True,
        env={**os.environ, **_up_env()},
        cwd=up.work_dir,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
    )


def _status(up: RunningUp) -> dict[str, Any]:
    result = _tfscachectl(up, "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _resident(document: dict[str, Any], model: str) -> list[dict[str, Any]]:
    return [
        {**m, "node": n["id"]}
        for n in document["nodes"]
        for m in n["models"]
        if m["name"] == model and m["state"] == "resident"
    ]


def _loads(document: dict[str, Any]) -> int:
    loads: int = document["totals"]["loads"]
    return loads


def test_a_new_user_operates_the_cache(start_up: Any, model_dir: Path) -> None:
    """The issue's story: the stack up, REST and gRPC answers, status shows the model resident with hits,
    evict makes the next request load it again, preload makes a cold model warm before its first request."""
    up = start_up(f"--model-dir={model_dir}")
    up.wait_ready()
    wait_until(lambda: "Ctrl-C stops everything" in up.output(), UP_READY_TIMEOUT_S, "the whole banner")
    state = up.state()
    assert _rest_prediction_from_printed_curl(up) == EXPECTED
    assert _grpc_prediction(up.line_starting("gRPC").split()[-1], "tenant-0001") == EXPECTED

    # status: the model is resident on a node, with hits (the gRPC call, and fast-path hits fed back)
    hits: list[dict[str, Any]] = []

    def resident_with_hits() -> bool:
        hits[:] = [m for m in _resident(_status(up), "tenant-0001") if m["hits"] > 0]
        return bool(hits)

    wait_until(resident_with_hits, STATUS_TIMEOUT_S, "tenant-0001 resident with hits in tfscachectl status")
    # the status command printed by up, as printed
    printed = up.line_containing("tfscachectl status")
    table = subprocess.run(
        printed,
        shell=True,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
        cwd=up.work_dir,
    )
    assert table.returncode == 0, table.stderr
    assert "tenant-0001" in table.stdout
    assert "resident" in table.stdout

    # evict: gone from every node; the next request loads it again
    before = _loads(_status(up))
    evicted = _tfscachectl(up, "evict", "tenant-0001")
    assert evicted.returncode == 0, evicted.stderr
    assert f"{hits[0]['node']}" in evicted.stdout
    assert _resident(_status(up), "tenant-0001") == []
    assert _rest_prediction_from_printed_curl(up, "tenant-0001") == EXPECTED
    after = _status(up)
    assert _loads(after) == before + 1
    assert len(_resident(after, "tenant-0001")) == 1

    # preload: a cold model is resident before its first request, which then loads nothing
    assert _resident(after, "tenant-0002") == []
    preloaded = _tfscachectl(up, "preload", "tenant-0002", "-o", "json")
    assert preloaded.returncode == 0, preloaded.stderr
    [node] = json.loads(preloaded.stdout)["models"][0]["nodes"]
    assert (node["key"], node["outcome"]) == ({"model": "tenant-0002", "version": 1}, "loaded")
    warm = _status(up)
    assert len(_resident(warm, "tenant-0002")) == 1
    assert _rest_prediction_from_printed_curl(up, "tenant-0002") == [
        tenant_weights(2).predict(x) for x in (1.0, 2.0)
    ]
    assert _loads(_status(up)) == _loads(warm)

    # what the store holds
    models = _tfscachectl(up, "models", "-o", "json")
    assert models.returncode == 0, models.stderr
    assert [m["name"] for m in json.loads(models.stdout)["models"]] == sorted(
        path.name for path in model_dir.iterdir()
    )

    os.kill(up.process.pid, signal.SIGINT)
    assert up.wait_exit() == 0
    _assert_everything_gone(state)


def test_up_stops_on_sigterm_with_a_config_file(start_up: Any, model_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "stack.yaml"
    config.write_text(f"model_dir: {model_dir}\nnodes: 2\nmax_models: 1\nexample_model: tenant-0002\n")
    up = start_up(f"--config={config}")
    up.wait_ready()
    state = up.state()
    assert "tenant-0002:predict" in up.line_starting("curl ")
    assert _grpc_prediction(up.line_starting("gRPC").split()[-1], "tenant-0001") == EXPECTED

    os.kill(up.process.pid, signal.SIGTERM)
    assert up.wait_exit() == 0
    assert "stopped (SIGTERM)" in up.output()
    _assert_everything_gone(state)


def test_up_exits_when_a_serving_backend_dies(start_up: Any, model_dir: Path) -> None:
    up = start_up(f"--model-dir={model_dir}")
    up.wait_ready()
    state = up.state()
    backend = next(c for c in state["children"] if c["name"] == "serving-node-1")

    os.killpg(backend["pgid"], signal.SIGKILL)
    code = up.wait_exit()
    assert code != 0
    output = up.output()
    assert "error:" in output
    assert "the serving backend of node-1 (serving-node-1" in output
    assert "killed by SIGKILL" in output
    assert "last lines of" in output
    assert "Traceback" not in output
    _assert_everything_gone(state)


def test_up_generates_the_example_models_on_first_run(start_up: Any) -> None:
    up = start_up("--example-tenants=2")
    up.wait_ready(UP_FIRST_RUN_READY_TIMEOUT_S)
    examples = up.work_dir / ".tfscache" / "models"
    names = sorted(path.name for path in examples.iterdir() if path.is_dir())
    assert names == [
        "counter",
        "half_plus_three",
        "half_plus_two",
        "half_plus_two_2_versions",
        "half_plus_two_tf2",
        "tenant-0001",
        "tenant-0002",
    ]
    assert "generating the example models" in up.output()
    assert _rest_prediction_from_printed_curl(up) == EXPECTED
    state = up.state()
    os.kill(up.process.pid, signal.SIGINT)
    assert up.wait_exit() == 0
    _assert_everything_gone(state)


def test_up_refuses_a_port_that_is_taken(start_up: Any, model_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = start_up(f"--model-dir={model_dir}", f"--xds-port={port}")
        assert up.wait_exit(QUICK_EXIT_TIMEOUT_S) == 2
    lines = [line for line in up.output().splitlines() if line and not line.startswith("=== ")]
    assert lines == [
        f"error: port {port} on {LOOPBACK} is already in use (choose another one with the options)"
    ]


def test_up_refuses_bad_settings(start_up: Any) -> None:
    up = start_up("--nodes=0")
    assert up.wait_exit(QUICK_EXIT_TIMEOUT_S) == 2
    lines = [line for line in up.output().splitlines() if line and not line.startswith("=== ")]
    assert len(lines) == 1
    assert lines[0].startswith("error: Invalid stack settings: nodes:")
