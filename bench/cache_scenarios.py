"""The scenarios through the cache, each on a one-node stack of its own (``tests.harness.stack.start_stack``).

- (c) ``hits``: the bench model resident with its fast-path routes ACKed by Envoy, then ``measure``; the
  daemon's ext_proc counter must not move meanwhile (hits never reach Python).
- (c) ``hits_among_routes``: the same with 1,000 more resident models, each with its versioned and its
  unversioned route (2,002 fast-path routes in all); against the stand-in only (the issue's criterion), as
  its setup takes about half a minute.
- (d) ``ext_proc_every_request``: the fast path off, so every request goes through ext_proc while the model
  is resident.
- ``cold_misses``: the first predict of models not yet resident, through the cache and against a bare fetch
  and load on a backend without the cache; and the time from a load to its fast-path route being used.

Against the bundled backend a stack forwards to its own backend; against the nginx stand-in the daemon is
told to forward to nginx (``serving_addresses``) while the agent still loads every model into the real
backend. Against the stand-in, each point of (c) is measured right after the same point of (b) through a
static Envoy of its own (``PAIRED_UPSTREAMS``), for the overhead comparison.

Every model in the store is a copy: the bench model, and one generated tenant SavedModel under 1,000 + 10
names (a SavedModel does not hold its model name).
"""

from __future__ import annotations

import asyncio
import http.client
import shutil
import statistics
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

from bench.payloads import MODEL_NAME, REST_CONTENT_TYPE, rest_predict_body, rest_predict_path
from bench.report import DaemonTraffic, Row, Section
from bench.scenarios import (
    BUNDLED_KEY,
    STAND_IN_KEY,
    STATIC_ENVOY,
    BenchContext,
    Scenario,
    Side,
    Upstream,
    check_grpc,
    check_rest,
    envoy_workers,
    measure_sides,
    write_models,
)
from bench.static_envoy import LOG_LEVEL as STATIC_ENVOY_LOG_LEVEL
from bench.static_envoy import start_static_envoy
from tests.harness.envoy import EnvoyProcess
from tests.harness.model_config import ModelConfigEntry
from tests.harness.processes import LOOPBACK, NotReadyError, wait_until
from tests.harness.serving import ServingBackend
from tests.harness.stack import Stack, start_stack
from tfscachectl.agent.api.client import AgentClient
from tfscachectl.errors import ProcessError
from tfscachectl.modelgen.tenants import TENANT_VERSION, tenant_name
from tfscachectl.stores.disk_cache import version_path
from xds.fastpath import FastKey

HITS = "(c) cache, hits"
HITS_AMONG_ROUTES = "(c) cache, hits, 1,000 more models routed"
EXT_PROC_EVERY_REQUEST = "(d) cache, fast path off (ext_proc)"
NODE = "node-1"
ROUTED_MODELS = 1000
COLD_MODELS = 10
#: Versioned and unversioned routes of the bench model and of each routed model.
ROUTES_PER_MODEL = 2
SOURCE_TENANT = tenant_name(1)
#: Room above the resident models so that nothing is evicted during a measurement.
SPARE_MODELS = 16
PRELOAD_PARALLELISM = 64
ROUTE_REQUEST_THREADS = 64
METRICS_TIMEOUT_S = 10.0
#: A first request through the cache loads its model: seconds on the bundled backend.
HTTP_TIMEOUT_S = 120.0
ROUTE_TIMEOUT_S = 30.0
#: Envoy's fast-path counters reach the daemon every recency interval (1 s by default).
FAST_PATH_COUNT_TIMEOUT_S = 15.0
PRELOAD_TIMEOUT_S = 600.0
ROUTES_TIMEOUT_S = 300.0
#: The route histogram's count is taken as settled when it has not moved for this long.
SETTLED_S = 1.0
#: How long to look for the first request served on a fresh fast-path route after a cold miss.
FIRST_FAST_TIMEOUT_S = 10.0
BARE_RELOAD_TIMEOUT_S = 300.0
BARE_STATUS_TIMEOUT_S = 5.0
BARE_AVAILABLE_TIMEOUT_S = 120.0
BARE_BACKEND_FLAGS = ("--max_num_load_retries=0",)
#: How often a load is looked at (its files, the backend's status) while a first predict is timed.
LOAD_WATCH_INTERVAL_S = 0.002
LOAD_WATCH_JOIN_S = 10.0
#: The issue's bar: a cold miss through the cache costs under this much more than a bare fetch + load.
COLD_OVERHEAD_LIMIT_S = 0.100
#: The upstreams against which each point of (c) is measured right after the same point of (b).
PAIRED_UPSTREAMS = frozenset({STAND_IN_KEY})
#: Every daemon of the bench: no admin API (its fixed default port may be taken by another run).
DAEMON_SETTINGS: Mapping[str, Any] = MappingProxyType({"admin_listen": None})
_REQUESTS = "tfscache_daemon_requests_total"
_FAST_PATH_REQUESTS = "tfscache_daemon_fast_path_requests_total"
_FAST_PATH_ROUTES = "tfscache_daemon_fast_path_routes"
_ROUTE_SECONDS = "tfscache_daemon_fast_path_route_seconds"
_MS = 1000.0


def routed_names() -> list[str]:
    return [f"t-{index:04d}" for index in range(ROUTED_MODELS)]


def cold_names() -> list[str]:
    return [f"cold-{index:02d}" for index in range(COLD_MODELS)]


# ----- the model store ----------------------------------------------------------------------------------


def model_store(ctx: BenchContext) -> Path:
    """The store every cache stack reads, written once per run: the bench model, and copies of one generated
    tenant model for the routed and the cold models."""
    store = ctx.work_dir / "store"
    complete = ctx.work_dir / "store.complete"
    if complete.exists():
        return store
    generated = ctx.work_dir / "generated"
    shutil.rmtree(store, ignore_errors=True)
    write_models(generated, [MODEL_NAME], tenants=1)
    shutil.copytree(generated / MODEL_NAME, store / MODEL_NAME)
    for name in [*routed_names(), *cold_names()]:
        shutil.copytree(generated / SOURCE_TENANT, store / name)
    complete.touch()
    return store


def _tree_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


# ----- the daemon's metrics and Envoy's counters --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricsPage:
    """One reading of the daemon's ``/metrics``: (sample name, labels, value) for every sample."""

    samples: tuple[tuple[str, Mapping[str, str], float], ...]

    def total(self, name: str) -> float:
        """The sum of a sample over all its labels (0 if absent)."""
        return sum(value for sample, _, value in self.samples if sample == name)

    def buckets(self, histogram: str) -> list[tuple[float, float]]:
        """A histogram's cumulative buckets: (upper bound in seconds, count), lowest first."""
        name = f"{histogram}_bucket"
        return sorted(
            (float(labels["le"]), value) for sample, labels, value in self.samples if sample == name
        )


def parse_metrics(text: str) -> MetricsPage:
    """A Prometheus text exposition as a ``MetricsPage``."""
    try:
        samples = tuple(
            (sample.name, dict(sample.labels), float(sample.value))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        )
    except ValueError as exc:
        raise ProcessError(f"the daemon's metrics page does not parse: {exc}") from exc
    return MetricsPage(samples)


def read_metrics(stack: Stack) -> MetricsPage:
    url = f"http://{LOOPBACK}:{stack.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT_S) as response:
            text = response.read().decode()
    except OSError as exc:
        raise ProcessError(f"cannot read the daemon's metrics at {url}: {exc}") from exc
    return parse_metrics(text)


def ext_proc_requests(stack: Stack) -> float:
    return read_metrics(stack).total(_REQUESTS)


def route_acks(stack: Stack) -> float:
    return read_metrics(stack).total(f"{_ROUTE_SECONDS}_count")


def fast_path_route_hits(envoy: EnvoyProcess, key: FastKey) -> int:
    """Requests Envoy served on ``key``'s fast-path routes (REST and gRPC listeners), from its admin."""
    pattern = rf"^vhost\.[^.]+\.route\.{key.stat_prefix}\.upstream_rq_completed$"
    text = envoy.admin_get(f"/stats?filter={urllib.parse.quote(pattern)}")
    total = 0
    for line in text.splitlines():
        _, separator, value = line.rpartition(": ")
        if separator and value.strip().isdigit():
            total += int(value)
    return total


class Settling:
    """A predicate for ``wait_until``: true once ``read`` has given the same value for ``quiet_s``."""

    def __init__(self, read: Callable[[], float], quiet_s: float) -> None:
        self._read = read
        self._quiet_s = quiet_s
        self._value: float | None = None
        self._since = time.monotonic()

    def __call__(self) -> bool:
        value, now = self._read(), time.monotonic()
        if value != self._value:
            self._value, self._since = value, now
            return False
        return now - self._since >= self._quiet_s


# ----- requests through the cache -----------------------------------------------------------------------


def _rest_address(stack: Stack) -> str:
    return f"{LOOPBACK}:{stack.rest_port}"


def post_predict(connection: http.client.HTTPConnection, model: str) -> int:
    """One REST predict of ``model`` on ``connection``; returns the HTTP status (the body is read)."""
    try:
        connection.request(
            "POST",
            rest_predict_path(model),
            body=rest_predict_body(),
            headers={"content-type": REST_CONTENT_TYPE},
        )
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ProcessError(
            f"REST predict of {model} at {connection.host}:{connection.port} failed: {exc}"
        ) from exc
    return response.status


def predict_once(address: str, model: str) -> None:
    """One REST predict of ``model`` on a connection of its own; an error unless it answers 200."""
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT_S)
    try:
        status = post_predict(connection, model)
    finally:
        connection.close()
    if status != http.HTTPStatus.OK:
        raise ProcessError(f"REST predict of {model} at {address} answered HTTP {status}")


def bypasses_daemon(stack: Stack, send: Callable[[], None]) -> bool:
    """Whether a request sent by ``send`` was served without reaching the daemon's ext_proc server."""
    before = ext_proc_requests(stack)
    send()
    return ext_proc_requests(stack) == before


def make_fast(stack: Stack) -> None:
    """Make the bench model resident with one REST and one gRPC predict through the cache (the unversioned
    REST one teaches the daemon its latest version), then wait until Envoy has ACKed its routes and both
    protocols are served without ext_proc."""
    acked = route_acks(stack)
    rest = _rest_address(stack)
    check_rest(rest, rest_predict_path())
    check_grpc(stack.grpc_target)
    wait_until(lambda: route_acks(stack) > acked, ROUTE_TIMEOUT_S, "Envoy to ACK the bench model's routes")
    sends: tuple[tuple[str, Callable[[], None]], ...] = (
        ("REST", partial(check_rest, rest, rest_predict_path())),
        ("gRPC", partial(check_grpc, stack.grpc_target)),
    )
    for protocol, send in sends:
        wait_until(
            partial(bypasses_daemon, stack, send),
            ROUTE_TIMEOUT_S,
            f"{protocol} predicts of {MODEL_NAME} on the fast path",
        )


def start_cache_stack(
    ctx: BenchContext,
    upstream: Upstream,
    name: str,
    *,
    agent_settings: dict[str, Any] | None = None,
    daemon_settings: dict[str, Any] | None = None,
) -> Stack:
    """One node: against the bundled backend, its own; against another upstream, forwarding there."""
    serving = None if upstream.key == BUNDLED_KEY else {NODE: (upstream.rest, upstream.grpc)}
    return start_stack(
        ctx.registry,
        ctx.work_dir / name,
        str(model_store(ctx)),
        nodes=1,
        agent_settings=agent_settings,
        daemon_settings={**DAEMON_SETTINGS, **(daemon_settings or {})},
        serving_addresses=serving,
        envoy_log_level=STATIC_ENVOY_LOG_LEVEL,  # as (b)'s static Envoy: no per-request logs in either
    )


#: Rounds of each paired point, (b) and (c) alternating (b c, c b, b c...): the criteria are judged on each
#: side's median round. Three rounds left the ratio of one point 5-7 points apart between two runs.
PAIRED_ROUNDS = 5


def measure_through(
    ctx: BenchContext,
    stack: Stack,
    scenario: str,
    upstream: Upstream,
    *,
    fast_path_on: bool,
    paired: bool = False,
) -> list[Row]:
    """``measure`` through the stack's Envoy, and what the daemon saw meanwhile (``ctx.findings``).

    ``paired``: a static Envoy of scenario (b) to the same upstream is measured too, point by point,
    alternating with the cache (``measure_sides``); its rows go to ``ctx.findings.paired_baselines`` for the
    overhead comparison, not to the tables.
    """
    ctx.findings.envoy_workers[scenario] = envoy_workers(stack.envoy)
    cache = Side(scenario, upstream.name, _rest_address(stack), stack.grpc_target, stack.envoy)
    static = None
    if paired:
        name = f"envoy-static-paired-{upstream.key}-{len(ctx.findings.paired_baselines)}"
        static = start_static_envoy(
            ctx.registry, ctx.work_dir / name, upstream.rest, upstream.grpc, name=name
        )
    before = read_metrics(stack)
    try:
        if static is None:
            (rows,) = measure_sides(ctx, [cache])
        else:
            baseline = Side(
                STATIC_ENVOY, upstream.name, static.rest_address, static.grpc_address, static.envoy
            )
            baseline_rows, rows = measure_sides(ctx, [baseline, cache], rounds=PAIRED_ROUNDS)
            ctx.findings.paired_baselines[scenario] = baseline_rows
    finally:
        if static is not None:
            static.stop()
    after = read_metrics(stack)
    measured = sum(row.result.requests for row in rows)
    fast_before = before.total(_FAST_PATH_REQUESTS)

    def fast_path_requests() -> float:
        return read_metrics(stack).total(_FAST_PATH_REQUESTS) - fast_before

    if fast_path_on:
        try:
            wait_until(
                lambda: fast_path_requests() >= measured,
                FAST_PATH_COUNT_TIMEOUT_S,
                "the daemon to read Envoy's fast-path counters",
            )
        except NotReadyError:
            pass  # reported as read: fewer than measured
    ctx.findings.daemon_traffic.append(
        DaemonTraffic(
            scenario=scenario,
            upstream=upstream.name,
            measured_requests=measured,
            ext_proc_requests=round(after.total(_REQUESTS) - before.total(_REQUESTS)),
            fast_path_requests=round(fast_path_requests()),
            fast_path_on=fast_path_on,
        )
    )
    return rows


# ----- (c) and (d) --------------------------------------------------------------------------------------


def _paired(upstream: Upstream) -> bool:
    """Whether (c) is measured paired with (b): against the fast upstream, where the issue's criteria are."""
    return upstream.key in PAIRED_UPSTREAMS


def hits(ctx: BenchContext, upstream: Upstream) -> list[Row]:
    """(c) Through the cache on hits: the fast path, no Python on the request path."""
    stack = start_cache_stack(ctx, upstream, f"stack-c-{upstream.key}")
    try:
        make_fast(stack)
        return measure_through(ctx, stack, HITS, upstream, fast_path_on=True, paired=_paired(upstream))
    finally:
        stack.stop()


@dataclass(frozen=True, slots=True)
class RoutesSetup:
    """How long installing the routes of the routed models took, by phase, in seconds."""

    preload_s: float
    requests_s: float
    routes_s: float
    routes: int

    @property
    def total_s(self) -> float:
        return self.preload_s + self.requests_s + self.routes_s


def _agent_address(stack: Stack) -> str:
    return f"{LOOPBACK}:{stack.nodes[0].agent_port}"


async def _preload(agent: str, names: Sequence[str]) -> None:
    async with AgentClient(agent) as client:
        gate = asyncio.Semaphore(PRELOAD_PARALLELISM)

        async def preload(name: str) -> None:
            async with gate:
                await client.preload(name)

        await asyncio.gather(*(preload(name) for name in names))


async def _resident(agent: str) -> set[str]:
    async with AgentClient(agent) as client:
        status = await client.status()
    return {model.name for model in status.models if model.state == "resident"}


def install_routes(stack: Stack, names: Sequence[str]) -> RoutesSetup:
    """Preload ``names`` through the agent API, wait until all are resident, then send one unversioned REST
    predict per model through the cache (each gets its unversioned route too), and wait until the daemon
    has every route in its configuration and Envoy's ACKs have stopped coming."""
    agent, wanted = _agent_address(stack), set(names)
    started = time.monotonic()
    asyncio.run(_preload(agent, names))
    wait_until(
        lambda: wanted <= asyncio.run(_resident(agent)),
        PRELOAD_TIMEOUT_S,
        f"{len(names)} preloaded models to be resident",
    )
    preloaded = time.monotonic()
    rest = _rest_address(stack)
    with ThreadPoolExecutor(max_workers=ROUTE_REQUEST_THREADS) as pool:
        for _ in pool.map(lambda name: predict_once(rest, name), names):
            pass
    requested = time.monotonic()
    expected = ROUTES_PER_MODEL * (len(names) + 1)
    acks_settled = Settling(lambda: route_acks(stack), SETTLED_S)
    wait_until(
        lambda: read_metrics(stack).total(_FAST_PATH_ROUTES) >= expected and acks_settled(),
        ROUTES_TIMEOUT_S,
        f"{expected} fast-path routes, ACKed",
    )
    routed = time.monotonic()
    return RoutesSetup(
        preload_s=preloaded - started,
        requests_s=requested - preloaded,
        routes_s=routed - requested,
        routes=round(read_metrics(stack).total(_FAST_PATH_ROUTES)),
    )


def hits_among_routes(ctx: BenchContext, upstream: Upstream) -> list[Row]:
    """(c) again with 1,000 more resident models, each with both its routes in Envoy."""
    names = routed_names()
    stack = start_cache_stack(
        ctx,
        upstream,
        f"stack-c1000-{upstream.key}",
        agent_settings={"max_models": len(names) + 1 + SPARE_MODELS},
    )
    try:
        make_fast(stack)
        setup = install_routes(stack, names)
        ctx.findings.note(
            f"{HITS_AMONG_ROUTES} against the {upstream.name}: {setup.routes:,} fast-path routes in Envoy. "
            f"Setting them up took {setup.total_s:.1f} s: {setup.preload_s:.1f} s to preload the "
            f"{len(names):,} models through the agent API ({PRELOAD_PARALLELISM} calls at a time) until "
            f"all were resident, {setup.requests_s:.1f} s for one unversioned REST predict each through the "
            f"cache ({ROUTE_REQUEST_THREADS} threads), {setup.routes_s:.1f} s more until the daemon had "
            f"every route and Envoy's ACKs had stopped for {SETTLED_S:g} s."
        )
        wait_until(
            lambda: bypasses_daemon(stack, lambda: check_rest(_rest_address(stack), rest_predict_path())),
            ROUTE_TIMEOUT_S,
            f"{MODEL_NAME} still on the fast path",
        )
        return measure_through(
            ctx, stack, HITS_AMONG_ROUTES, upstream, fast_path_on=True, paired=_paired(upstream)
        )
    finally:
        stack.stop()


def ext_proc_every_request(ctx: BenchContext, upstream: Upstream) -> list[Row]:
    """(d) Through the cache with the fast path off: every request asks ext_proc, the model is resident."""
    stack = start_cache_stack(
        ctx, upstream, f"stack-d-{upstream.key}", daemon_settings={"fast_path": {"enabled": False}}
    )
    try:
        check_rest(_rest_address(stack), rest_predict_path())  # loads the model
        return measure_through(ctx, stack, EXT_PROC_EVERY_REQUEST, upstream, fast_path_on=False)
    finally:
        stack.stop()


# ----- cold misses and the way to the fast path ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FirstPredict:
    """A model's first predict, end to end, and how much of it the backend spent waiting for its file-system
    poll: from being asked to serve the model to first listing a version of it (None if not observed)."""

    seconds: float
    poll_wait_s: float | None

    @property
    def without_poll_wait_s(self) -> float | None:
        return None if self.poll_wait_s is None else self.seconds - self.poll_wait_s


class LoadWatch:
    """Watches one model's load from a thread of its own, polling every ``LOAD_WATCH_INTERVAL_S``: when its
    files appear at ``files`` (the agent's fetch renames a complete copy into place, then sends its reload)
    and when the backend's ``GetModelStatus`` first lists a version of it (its file-system poll found it).
    Times are ``time.perf_counter()`` values; the watch stops by itself once it has seen both."""

    def __init__(self, backend_grpc: str, model: str, files: Path | None = None) -> None:
        self._backend, self._model, self._files = backend_grpc, model, files
        self.files_at: float | None = None
        self.listed_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"load-watch-{model}", daemon=True)

    def __enter__(self) -> LoadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(LOAD_WATCH_JOIN_S)

    def _watch(self) -> None:
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self._model
        with grpc.insecure_channel(self._backend) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            while not self._stop.is_set():
                asked = time.perf_counter()
                if self._files is not None and self.files_at is None and self._files.is_dir():
                    self.files_at = asked
                if self.listed_at is None:
                    try:
                        response = stub.GetModelStatus(request, timeout=BARE_STATUS_TIMEOUT_S)
                    except grpc.RpcError:
                        response = None  # NOT_FOUND until the poll has found a version
                    if response is not None and len(response.model_version_status) > 0:
                        self.listed_at = asked
                if self.listed_at is not None and (self._files is None or self.files_at is not None):
                    return
                self._stop.wait(LOAD_WATCH_INTERVAL_S)

    def poll_wait(self, asked_at: float | None) -> float | None:
        """From ``asked_at`` (None: when the files appeared) to the backend listing the model."""
        start = self.files_at if asked_at is None else asked_at
        if start is None or self.listed_at is None:
            return None
        return max(0.0, self.listed_at - start)


@dataclass(frozen=True, slots=True)
class ColdMiss:
    """One model's first predict through the cache, and how soon its fast-path route served a request.

    ``first_fast_s``: from the cold answer to the start of the first request Envoy counted on the model's
    fast-path route (None if none was within ``FIRST_FAST_TIMEOUT_S``); ``slow_before_fast``: requests that
    still took the slow path before it.
    """

    model: str
    first: FirstPredict
    first_fast_s: float | None
    slow_before_fast: int


def cold_miss(stack: Stack, model: str) -> ColdMiss:
    """Time the first predict of ``model`` through the cache (client side, a fresh connection), then send
    predicts back to back on the same connection until one is counted on its fast-path route."""
    key = FastKey(model)
    node = stack.nodes[0]
    files = version_path(node.cache_dir, model, TENANT_VERSION)
    connection = http.client.HTTPConnection(LOOPBACK, stack.rest_port, timeout=HTTP_TIMEOUT_S)
    try:
        with LoadWatch(node.backend.grpc_target, model, files) as watch:
            sent = time.perf_counter()
            status = post_predict(connection, model)
            answered = time.perf_counter()
        if status != http.HTTPStatus.OK:
            raise ProcessError(f"the cold predict of {model} through the cache answered HTTP {status}")
        first = FirstPredict(answered - sent, watch.poll_wait(None))
        slow = 0
        while time.perf_counter() - answered < FIRST_FAST_TIMEOUT_S:
            started = time.perf_counter()
            status = post_predict(connection, model)
            if status != http.HTTPStatus.OK:
                raise ProcessError(f"a predict of {model} after its cold miss answered HTTP {status}")
            if fast_path_route_hits(stack.envoy, key) > 0:
                return ColdMiss(model, first, started - answered, slow)
            slow += 1
        return ColdMiss(model, first, None, slow)
    finally:
        connection.close()


def _reload(address: str, models: Mapping[str, Path]) -> None:
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.SetInParent()
    for name, base_path in models.items():
        entry = config.model_config_list.config.add()
        entry.name, entry.base_path, entry.model_platform = name, str(base_path), "tensorflow"
    with grpc.insecure_channel(address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        try:
            stub.HandleReloadConfigRequest(
                model_management_pb2.ReloadConfigRequest(config=config), timeout=BARE_RELOAD_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            raise ProcessError(f"HandleReloadConfigRequest at {address} failed: {exc}") from exc


def _available(address: str, model: str) -> bool:
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    with grpc.insecure_channel(address) as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            request, timeout=BARE_STATUS_TIMEOUT_S
        )
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    return any(status.state == available for status in response.model_version_status)


def bare_loads(ctx: BenchContext, store: Path, names: Sequence[str]) -> list[FirstPredict]:
    """The same first predicts without the cache, on a fresh bundled backend already serving the bench
    model: for each model, copy it from the store into the backend's model directory (the fetch),
    ``HandleReloadConfigRequest`` with it added, ``GetModelStatus`` until AVAILABLE, the first predict."""
    root = ctx.work_dir / "bare-models"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(store / MODEL_NAME, root / MODEL_NAME)
    backend = ServingBackend.with_models(
        ctx.registry,
        ctx.work_dir / "bare-serving",
        [ModelConfigEntry(MODEL_NAME, root / MODEL_NAME)],
        name="serving-bare",
        extra_flags=BARE_BACKEND_FLAGS,
    ).start()
    rest = f"{LOOPBACK}:{backend.rest_port}"
    served = {MODEL_NAME: root / MODEL_NAME}
    samples: list[FirstPredict] = []
    try:
        check_rest(rest, rest_predict_path())  # its first predict, as the cache's stack had
        for name in names:
            with LoadWatch(backend.grpc_target, name) as watch:
                started = time.perf_counter()
                shutil.copytree(store / name, root / name)
                served[name] = root / name
                asked = time.perf_counter()
                _reload(backend.grpc_target, served)
                wait_until(
                    partial(_available, backend.grpc_target, name),
                    BARE_AVAILABLE_TIMEOUT_S,
                    f"{name} AVAILABLE on the bare backend",
                    process=backend.process,
                )
                predict_once(rest, name)
                samples.append(FirstPredict(time.perf_counter() - started, watch.poll_wait(asked)))
    finally:
        backend.stop()
    return samples


def _ms(seconds: float) -> str:
    return f"{seconds * _MS:,.1f}"


def _median_max(values: Sequence[float | None]) -> tuple[str, str]:
    known = [value for value in values if value is not None]
    if not known:
        return "n/a", "n/a"
    return _ms(statistics.median(known)), _ms(max(known))


def _median(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def cold_section(misses: Sequence[ColdMiss], bare: Sequence[FirstPredict], model_bytes: int) -> Section:
    cache = [miss.first for miss in misses]
    rows = []
    for path, samples in (("through the cache", cache), ("bare fetch + load", bare)):
        median, longest = _median_max([sample.seconds for sample in samples])
        wait, _ = _median_max([sample.poll_wait_s for sample in samples])
        without, without_max = _median_max([sample.without_poll_wait_s for sample in samples])
        rows.append(
            f"| {path} | {median} | {longest} | {wait} | {without} | {without_max} | {len(samples)} |"
        )
    cache_without = _median([sample.without_poll_wait_s for sample in cache])
    bare_without = _median([sample.without_poll_wait_s for sample in bare])
    end_to_end = statistics.median(s.seconds for s in cache) - statistics.median(s.seconds for s in bare)
    if cache_without is None or bare_without is None:
        overhead = "could not be computed: the poll wait was not observed in every path."
    else:
        difference = cache_without - bare_without
        verdict = "met" if difference < COLD_OVERHEAD_LIMIT_S else "**not met**"
        limit = f"{COLD_OVERHEAD_LIMIT_S * _MS:g} ms"
        overhead = f"**{_ms(difference)} ms**; the criterion (under {limit}) is {verdict}."
    table = "\n".join(
        [
            "| path | median ms | max ms | of which poll wait, median ms | without the poll wait: median ms "
            "| max ms | samples |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    body = f"""\
The first REST predict of {len(misses)} models that are not resident anywhere yet (copies of one \
generated tenant SavedModel, {model_bytes / 1024:,.0f} KiB on disk each), one after the other, timed by the \
client from sending the request to reading the answer. Both backends are the bundled one, already serving \
`{MODEL_NAME}` (loaded and predicted once) and nothing else; the models come from a local directory store.

- Through the cache: Envoy asks ext_proc, the daemon asks the node's agent to ensure the model, the agent \
copies it from the store into its disk cache (verified and flushed, then renamed into place) and sends \
`HandleReloadConfigRequest`, waits until the backend reports it AVAILABLE, and the daemon answers Envoy, \
which forwards the predict.
- Bare fetch + load, no cache and no Envoy: copy the model into the backend's model directory, \
`HandleReloadConfigRequest` with it added, `GetModelStatus` until AVAILABLE, the first predict.

Like TF Serving, the bundled backend finds a newly configured model's versions only at its next file-system \
poll (`--file_system_poll_wait_seconds`, 1 s for both backends), so each load first waits for that poll, up \
to a second. Back-to-back cold misses fall at different points of the poll cycle in the two paths, so the \
end-to-end medians mostly compare where the loads fell in the cycle. The bench measures that wait in each \
sample: from the moment the backend is asked to serve the model (bare: the reload RPC sent; through the \
cache: the agent's copy appearing in its disk cache, just before the agent's reload RPC) to the first \
`GetModelStatus` (asked every {LOAD_WATCH_INTERVAL_S * _MS:g} ms from the bench) that lists a version of it. \
"Without the poll wait" subtracts it; the agent's work between its copy and its reload RPC counts as wait.

{table}

Overhead of the cache on a cold miss, without the poll wait (median through the cache - median bare): \
{overhead} End to end, the medians differ by {_ms(end_to_end)} ms.

End to end, each cold miss in ms: {", ".join(_ms(s.seconds) for s in cache)}; \
bare: {", ".join(_ms(s.seconds) for s in bare)}.
"""
    return Section("Cold miss", body)


def route_section(
    misses: Sequence[ColdMiss], buckets: Sequence[tuple[float, float]], sum_s: float
) -> Section:
    count = buckets[-1][1] if buckets else 0.0
    mean = f"{sum_s / count * _MS:,.1f} ms" if count else "n/a"
    rows = []
    for bound, cumulative in buckets:
        shown = "+Inf" if bound == float("inf") else f"{bound * _MS:g}"
        rows.append(f"| {shown} | {cumulative:g} |")
        if cumulative >= count:
            break
    found = [miss.first_fast_s for miss in misses if miss.first_fast_s is not None]
    slow = [miss.slow_before_fast for miss in misses if miss.first_fast_s is not None]
    missing = len(misses) - len(found)
    client = (
        f"the first request Envoy counted on the model's fast-path route started a median of "
        f"**{_ms(statistics.median(found))} ms** (max {_ms(max(found))} ms) after the cold answer; "
        f"requests that still took the slow path before it: median {statistics.median(slow):g}, "
        f"max {max(slow)}"
        if found
        else "no request was counted on a fast-path route"
    )
    if missing:
        client += f"; for {missing} model(s), none within {FIRST_FAST_TIMEOUT_S:g} s"
    table = "\n".join(["| le (ms) | routes ACKed (cumulative) |", "|---:|---:|", *rows])
    body = f"""\
(i) The daemon's histogram `{_ROUTE_SECONDS}`: from the publication of a snapshot with new fast-path routes \
to Envoy's ACK of it, read after the cold misses above (it also holds the bench model's routes): \
{count:g} observations, mean {mean}.

{table}

(ii) Client side: right after each cold miss's answer, REST predicts of the same model back to back on the \
same connection, each followed by a read of Envoy's admin `/stats` for the model's route counters \
(`vhost.*.route.<stat prefix>.upstream_rq_completed`): {client}. A delay is known to within one \
slow-path request (the route may have arrived while the previous request was in flight). Individual delays \
in ms: {", ".join(_ms(value) if value is not None else "none" for value in (m.first_fast_s for m in misses))}.
"""
    return Section("From load to fast path", body)


def cold_misses(ctx: BenchContext, upstream: Upstream) -> list[Row]:
    """Cold misses through the cache against bare fetch + load, and the way from a load to the fast path.
    Adds the sections "Cold miss" and "From load to fast path"; measures no load (no rows)."""
    names = cold_names()
    store = model_store(ctx)
    stack = start_cache_stack(
        ctx, upstream, "stack-cold", agent_settings={"max_models": len(names) + 1 + SPARE_MODELS}
    )
    try:
        make_fast(stack)  # the backend's first load and predict, and the bench model's routes settled
        misses = [cold_miss(stack, name) for name in names]
        page = read_metrics(stack)
    finally:
        stack.stop()
    bare = bare_loads(ctx, store, names)
    ctx.findings.sections += [
        cold_section(misses, bare, _tree_bytes(store / names[0])),
        route_section(misses, page.buckets(_ROUTE_SECONDS), page.total(f"{_ROUTE_SECONDS}_sum")),
    ]
    return []


CACHE_SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        "c": Scenario(HITS, hits),
        "c1000": Scenario(HITS_AMONG_ROUTES, hits_among_routes, frozenset({STAND_IN_KEY})),
        "d": Scenario(EXT_PROC_EVERY_REQUEST, ext_proc_every_request),
        "cold": Scenario("cold misses and the way to the fast path", cold_misses, frozenset({BUNDLED_KEY})),
    }
)
