"""The measured scenarios, each against an upstream; every one returns report rows.

- (a) ``direct``: straight to the upstream's REST and gRPC ports.
- (b) ``static_envoy``: through an Envoy with one static route per protocol and no cache logic.

Two upstreams: the bundled serving backend (``tfscachectl tf-serving``) serving a generated
``half_plus_two``, and the nginx stand-in that answers the same predict with a fixed response in
microseconds. ``measure`` is the shared part (a real client's check, then one h2load run per concurrency and
protocol), for any scenario that has a REST and a gRPC address to send to.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import grpc

from bench.load import LoadSettings, LoadTarget, Protocol, grpc_target, rest_target, run_load
from bench.payloads import (
    MODEL_NAME,
    PREDICTIONS,
    REST_CONTENT_TYPE,
    PayloadFiles,
    predict_request,
    predictions_of,
    rest_predict_body,
    rest_predict_path,
)
from bench.report import Findings, Row
from bench.standin import NginxStandIn
from bench.static_envoy import start_static_envoy
from tests.harness.envoy import EnvoyProcess
from tests.harness.model_config import ModelConfigEntry
from tests.harness.processes import LOOPBACK, ProcessRegistry
from tests.harness.serving import REPO_ROOT, ServingBackend
from tfscachectl.errors import Code, ProcessError, ServingError
from xds.names import LISTENER_GRPC_MISS

#: Writing a model imports TensorFlow in a child process: seconds, more on a cold disk cache.
MODELGEN_TIMEOUT_S = 300.0
#: One check request before a load (the bundled backend's first predict warms its model up).
CHECK_TIMEOUT_S = 30.0
DEFAULT_CONCURRENCIES = (1, 16, 64)
BUNDLED_BACKEND = "TF Serving (bundled backend)"
STAND_IN = "nginx stand-in"
BUNDLED_KEY = "bundled"
STAND_IN_KEY = "stand-in"
DIRECT = "(a) direct"
#: Envoy's count of requests, per HTTP connection manager. Client requests only: the admin interface's own are
#: left out, and so are those of the internal listener gRPC misses pass through (the gRPC listener counted
#: each of them already).
_DOWNSTREAM_REQUESTS = r"^http\.[^.]+\.downstream_rq_total$"
_NOT_CLIENT_STATS = ("http.admin.", f"http.{LISTENER_GRPC_MISS}.")
#: utime and stime in ``/proc/<pid>/stat``, counted after the command name's closing parenthesis.
_UTIME_FIELD = 11
_STIME_FIELD = 12
_MICROS = 1_000_000
STATIC_ENVOY = "(b) Envoy, static route"


@dataclass(frozen=True, slots=True)
class BenchContext:
    """What every scenario shares: the processes' owner, a work directory, the bodies, how to load, and
    where to leave what it found besides its rows."""

    registry: ProcessRegistry
    work_dir: Path
    payloads: PayloadFiles
    settings: LoadSettings
    concurrencies: tuple[int, ...] = DEFAULT_CONCURRENCIES
    findings: Findings = field(default_factory=Findings)


@dataclass(frozen=True, slots=True)
class Upstream:
    """A running upstream: a key for file names, its name in the report, its REST and gRPC ``host:port``."""

    key: str
    name: str
    rest: str
    grpc: str


def _python_env() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}


def write_model(root: Path, model: str = MODEL_NAME) -> Path:
    """Write the generated ``model`` under ``root`` in a child process; returns its base path."""
    write_models(root, [model])
    return root / model


def write_models(root: Path, models: Sequence[str], tenants: int = 0) -> None:
    """Write generated catalog ``models`` and tenants 1..``tenants`` under ``root``, in a child process.
    Whatever ``root`` held before is removed first (a kept work directory is reused)."""
    shutil.rmtree(root, ignore_errors=True)
    what = ", ".join([*models, *([f"{tenants} tenant(s)"] if tenants else [])])
    argv = [
        sys.executable,
        "-m",
        "tfscachectl.modelgen",
        str(root),
        f"--models={','.join(models)}",
        f"--tenants={tenants}",
    ]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env={**os.environ, **_python_env()},
            cwd=REPO_ROOT,
            timeout=MODELGEN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProcessError(f"writing the models {what} took more than {MODELGEN_TIMEOUT_S:g} s") from exc
    if done.returncode != 0:
        raise ProcessError(f"writing the models {what} failed ({done.returncode}): {done.stderr[-2000:]}")


def start_bundled_backend(ctx: BenchContext) -> Upstream:
    """``tfscachectl tf-serving`` serving a freshly generated ``half_plus_two``."""
    base_path = write_model(ctx.work_dir / "models")
    backend = ServingBackend.with_models(
        ctx.registry,
        ctx.work_dir / "serving",
        [ModelConfigEntry(MODEL_NAME, base_path)],
        name="serving",
    ).start()
    return Upstream(BUNDLED_KEY, BUNDLED_BACKEND, f"{LOOPBACK}:{backend.rest_port}", backend.grpc_target)


def start_standin(ctx: BenchContext) -> Upstream:
    """The nginx stand-in (one worker)."""
    standin = NginxStandIn(ctx.registry, ctx.work_dir / "nginx").start()
    return Upstream(STAND_IN_KEY, STAND_IN, standin.rest_address, standin.grpc_address)


def check_rest(address: str, path: str) -> None:
    """One REST predict with an ordinary HTTP client: a 200 with the expected predictions, or an error."""
    request = urllib.request.Request(
        f"http://{address}{path}",
        data=rest_predict_body(),
        headers={"content-type": REST_CONTENT_TYPE},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=CHECK_TIMEOUT_S) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            raise ProcessError(
                f"REST predict at {address}{path}: HTTP {exc.code}: {exc.read()[:500]!r}"
            ) from exc
    except (OSError, ValueError) as exc:
        raise ProcessError(f"REST predict at {address}{path} failed: {exc}") from exc
    predictions = tuple(answer.get("predictions", ())) if isinstance(answer, dict) else ()
    if predictions != PREDICTIONS:
        raise ProcessError(f"REST predict at {address}{path} answered {answer!r}, not {PREDICTIONS}")


def check_grpc(address: str, model: str = MODEL_NAME) -> None:
    """One gRPC ``Predict`` with grpcio: OK (``grpc-status: 0``) and the expected ``y``, else an error."""
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(predict_request(model), timeout=CHECK_TIMEOUT_S)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise ServingError(Code(code.value[0]), f"gRPC Predict at {address}: {details}") from exc
    predictions = predictions_of(response)
    if predictions != PREDICTIONS:
        raise ProcessError(f"gRPC Predict at {address} answered y = {predictions}, not {PREDICTIONS}")


def envoy_workers(envoy: EnvoyProcess) -> int:
    """Envoy's worker thread count (``--concurrency``, or its default), from the admin ``/server_info``."""
    try:
        info = json.loads(envoy.admin_get("/server_info"))
        return int(info["command_line_options"]["concurrency"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProcessError(f"cannot read Envoy's worker count from its /server_info: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Side:
    """What one measurement sends to: its scenario and upstream (for the rows), the REST and gRPC
    ``host:port`` the clients send to (an upstream, an Envoy...), and the Envoy in the path, if any, whose
    CPU time per request is read."""

    scenario: str
    upstream: str
    rest: str
    grpc: str
    envoy: EnvoyProcess | None = None

    def target(self, ctx: BenchContext, protocol: Protocol) -> LoadTarget:
        if protocol is Protocol.REST:
            return rest_target(self.rest, rest_predict_path(), ctx.payloads.rest_body)
        return grpc_target(self.grpc, ctx.payloads.grpc_body)


@dataclass(frozen=True, slots=True)
class EnvoyUsage:
    """One reading of an Envoy: its process's CPU seconds (all threads) and the requests its HTTP
    connection managers have counted."""

    cpu_s: float
    requests: int

    @classmethod
    def read(cls, envoy: EnvoyProcess) -> EnvoyUsage:
        try:
            fields = Path(f"/proc/{envoy.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            stats = envoy.admin_get(f"/stats?filter={urllib.parse.quote(_DOWNSTREAM_REQUESTS)}")
        except (OSError, IndexError) as exc:
            raise ProcessError(f"cannot read Envoy's CPU time and request count: {exc}") from exc
        ticks = int(fields[_UTIME_FIELD]) + int(fields[_STIME_FIELD])
        requests = sum(
            int(line.rpartition(": ")[2])
            for line in stats.splitlines()
            if ": " in line and not line.startswith(_NOT_CLIENT_STATS)
        )
        return cls(ticks / os.sysconf("SC_CLK_TCK"), requests)

    def cpu_us_per_request(self, later: EnvoyUsage) -> float | None:
        handled = later.requests - self.requests
        return (later.cpu_s - self.cpu_s) / handled * _MICROS if handled > 0 else None


def check(target: LoadTarget) -> None:
    """One predict with a real client of the target's protocol."""
    if target.protocol is Protocol.REST:
        check_rest(target.address, target.path)
    else:
        check_grpc(target.address)


def _load(ctx: BenchContext, side: Side, target: LoadTarget, concurrency: int) -> Row:
    before = EnvoyUsage.read(side.envoy) if side.envoy is not None else None
    result = run_load(target, concurrency, ctx.settings, ctx.work_dir / "h2load")
    cpu_us = None
    if side.envoy is not None and before is not None:
        cpu_us = before.cpu_us_per_request(EnvoyUsage.read(side.envoy))
    return Row(side.scenario, side.upstream, target.protocol, concurrency, result, cpu_us)


def measure_sides(ctx: BenchContext, sides: Sequence[Side], rounds: int = 1) -> list[list[Row]]:
    """``measure`` for several sides at once, interleaved: each protocol is checked on every side, then each
    concurrency is loaded on every side in turn, ``rounds`` times, so that the sides of one point share the
    machine's state (other work on it comes and goes). The order of the sides is reversed every other round
    (A B, B A, A B...), so that neither side is always the one that runs right after the other. Each side's
    row of a point is its round of median throughput (``median_round``). Returns each side's rows, in the
    order of ``sides``."""
    rows: list[list[Row]] = [[] for _ in sides]
    for protocol in Protocol:
        targets = [side.target(ctx, protocol) for side in sides]
        for target in targets:
            check(target)
        for concurrency in ctx.concurrencies:
            measured: list[list[Row]] = [[] for _ in sides]
            for round_index in range(rounds):
                turns = list(zip(sides, targets, measured, strict=True))
                for side, target, side_rounds in turns if round_index % 2 == 0 else reversed(turns):
                    side_rounds.append(_load(ctx, side, target, concurrency))
            for side_rows, side_rounds in zip(rows, measured, strict=True):
                side_rows.append(median_round(side_rounds))
    return rows


def median_round(rounds: Sequence[Row]) -> Row:
    """The round of median throughput (the lower middle one of an even number), kept whole: its requests/s,
    percentiles and Envoy CPU were measured together; ``round_rps`` lists every round's requests/s."""
    ordered = sorted(rounds, key=lambda row: row.result.rps)
    chosen = ordered[(len(ordered) - 1) // 2]
    return dataclasses.replace(chosen, round_rps=tuple(row.result.rps for row in rounds))


def measure(
    ctx: BenchContext,
    scenario: str,
    upstream: str,
    rest: str,
    grpc_address: str,
    envoy: EnvoyProcess | None = None,
) -> list[Row]:
    """Check each protocol once with a real client, then load it at every concurrency.

    ``rest`` and ``grpc_address`` are the ``host:port`` the clients send to (an upstream, an Envoy...);
    ``envoy``, the Envoy in the path if any (its CPU time per request goes into the rows).
    """
    (rows,) = measure_sides(ctx, [Side(scenario, upstream, rest, grpc_address, envoy)])
    return rows


def direct(ctx: BenchContext, upstream: Upstream) -> list[Row]:
    """(a) Straight to the upstream."""
    return measure(ctx, DIRECT, upstream.name, upstream.rest, upstream.grpc)


def static_envoy(ctx: BenchContext, upstream: Upstream) -> list[Row]:
    """(b) Through Envoy with a static route to the upstream, no cache logic."""
    name = f"envoy-static-{upstream.key}"
    envoy = start_static_envoy(ctx.registry, ctx.work_dir / name, upstream.rest, upstream.grpc, name=name)
    try:
        ctx.findings.envoy_workers[STATIC_ENVOY] = envoy_workers(envoy.envoy)
        return measure(ctx, STATIC_ENVOY, upstream.name, envoy.rest_address, envoy.grpc_address, envoy.envoy)
    finally:
        envoy.stop()


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario's label in the report, the function that measures it against one upstream, and the keys of
    the upstreams it is measured against (None: every one)."""

    label: str
    run: Callable[[BenchContext, Upstream], list[Row]]
    upstreams: frozenset[str] | None = None

    def runs_against(self, upstream: Upstream) -> bool:
        return self.upstreams is None or upstream.key in self.upstreams


SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        "a": Scenario(DIRECT, direct),
        "b": Scenario(STATIC_ENVOY, static_envoy),
    }
)

#: The upstreams every scenario is measured against, started once per run, in this order.
UPSTREAMS: tuple[Callable[[BenchContext], Upstream], ...] = (start_bundled_backend, start_standin)
