"""The benchmark's tools: the nginx stand-in (REST and real gRPC), h2load runs and their logs, static Envoy;
and, without any process, how the report compares scenarios and renders what the cache scenarios found.

The tests that run h2load or nginx are skipped when either is not installed (``bench/tools.sh``).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from bench.cache_scenarios import (
    EXT_PROC_EVERY_REQUEST,
    HITS,
    HITS_AMONG_ROUTES,
    ColdMiss,
    FirstPredict,
    Settling,
    cold_section,
    parse_metrics,
)
from bench.envoy_instructions import cache_bootstrap, callgrind_total
from bench.load import LoadSettings, Protocol, Result, grpc_target, parse_log, rest_target, run_load
from bench.payloads import (
    MODEL_NAME,
    MODEL_VERSION,
    OUTPUT_NAME,
    PREDICTIONS,
    PayloadFiles,
    predict_request,
    predictions_of,
    rest_predict_body,
    rest_predict_path,
    write_payloads,
)
from bench.report import DaemonTraffic, Row, daemon_traffic_section, overhead_section
from bench.scenarios import STAND_IN, STATIC_ENVOY, EnvoyUsage, check_grpc, check_rest
from bench.standin import NginxStandIn, find_nginx
from bench.static_envoy import start_static_envoy
from tests.harness.binaries import envoy_binary
from tests.harness.processes import LOOPBACK, ProcessRegistry, free_port, port_accepts, wait_until
from tfscachectl.errors import ProcessError

pytestmark = pytest.mark.integration

HTTP_TIMEOUT_S = 5.0
GRPC_TIMEOUT_S = 5.0
#: A tiny run: enough requests to have percentiles, short enough for the whole module to stay quick.
TINY_RUN = LoadSettings(duration_s=1.0, warm_up_s=0.2)


@pytest.fixture(scope="module")
def _tools() -> None:
    from bench.load import find_h2load

    for find in (find_h2load, find_nginx):
        try:
            find()
        except ProcessError as exc:
            pytest.skip(str(exc))


@pytest.fixture
def standin(_tools: None, processes: ProcessRegistry, tmp_path: Path) -> NginxStandIn:
    return NginxStandIn(processes, tmp_path / "nginx").start()


@pytest.fixture
def payloads(tmp_path: Path) -> PayloadFiles:
    return write_payloads(tmp_path / "payloads")


def _post(url: str, body: bytes, method: str = "POST") -> tuple[int, str, bytes]:
    request = urllib.request.Request(
        url,
        data=body if method == "POST" else None,
        method=method,
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as answer:
        with answer:
            return answer.code, answer.headers.get("content-type", ""), answer.read()


def test_standin_answers_rest_predict_for_any_model_and_version(standin: NginxStandIn) -> None:
    for path in (
        rest_predict_path(),
        rest_predict_path("tenant-0042", 7),
        "/v1/models/m/labels/stable:predict",
    ):
        status, content_type, body = _post(f"http://{standin.rest_address}{path}", rest_predict_body())
        assert (status, content_type) == (200, "application/json"), path
        assert json.loads(body) == {"predictions": list(PREDICTIONS)}

    assert _post(f"http://{standin.rest_address}{rest_predict_path()}", b"", method="GET")[0] == 403
    assert _post(f"http://{standin.rest_address}/v1/models/{MODEL_NAME}:classify", b"{}")[0] == 404


def test_standin_answers_a_real_grpc_client(standin: NginxStandIn) -> None:
    with grpc.insecure_channel(standin.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response, call = stub.Predict.with_call(predict_request(), timeout=GRPC_TIMEOUT_S)

    assert call.code() is grpc.StatusCode.OK
    assert response.model_spec.name == MODEL_NAME
    assert response.model_spec.version.value == MODEL_VERSION
    assert [dim.size for dim in response.outputs[OUTPUT_NAME].tensor_shape.dim] == [len(PREDICTIONS)]
    assert predictions_of(response) == PREDICTIONS


def test_parse_log_counts_failures_and_takes_nearest_rank_percentiles() -> None:
    lines = [f"1700000000{n:06d}\t200\t{1000 * n}" for n in range(1, 101)]
    lines += ["1700000001000000\t503\t50", "1700000001000001\t-1\t70", "garbage"]

    result = parse_log(lines, seconds=2.0)

    assert (result.requests, result.errors, result.seconds) == (102, 2, 2.0)
    assert result.rps == 50.0
    assert (result.p50_ms, result.p99_ms) == (50.0, 99.0)
    nothing = parse_log([], seconds=1.0)
    assert (nothing.requests, nothing.rps) == (0, 0.0)
    assert math.isnan(nothing.p50_ms)


def test_h2load_tiny_runs_against_the_standin_both_protocols(
    standin: NginxStandIn, payloads: PayloadFiles, tmp_path: Path
) -> None:
    for target in (
        rest_target(standin.rest_address, rest_predict_path(), payloads.rest_body),
        grpc_target(standin.grpc_address, payloads.grpc_body),
    ):
        result = run_load(target, 2, TINY_RUN, tmp_path / "h2load")

        assert result.errors == 0, target
        assert result.requests > 100, target
        assert result.rps == pytest.approx(result.requests / TINY_RUN.duration_s)
        assert 0 < result.p50_ms <= result.p99_ms < 1000
        (log,) = (tmp_path / "h2load").glob(f"h2load-{target.protocol.value}-*.log")
        assert len(log.read_text().splitlines()) == result.requests


def test_h2load_non_2xx_answers_are_errors(
    standin: NginxStandIn, payloads: PayloadFiles, tmp_path: Path
) -> None:
    missing = rest_target(standin.rest_address, "/v1/models/m:nothing", payloads.rest_body)

    result = run_load(missing, 1, LoadSettings(duration_s=0.5, warm_up_s=0.1), tmp_path / "h2load")

    assert result.requests > 0
    assert result.errors == result.requests
    assert result.rps == 0.0
    assert missing.protocol is Protocol.REST


def test_static_envoy_forwards_both_protocols_to_the_standin(
    standin: NginxStandIn, processes: ProcessRegistry, tmp_path: Path
) -> None:
    envoy = start_static_envoy(processes, tmp_path / "envoy", standin.rest_address, standin.grpc_address)

    check_rest(envoy.rest_address, rest_predict_path(MODEL_NAME, MODEL_VERSION))
    check_grpc(envoy.grpc_address)
    status, _, _ = _post(f"http://{envoy.rest_address}/v1/models/m:nothing", b"{}")
    assert status == 404  # nginx's answer, passed through
    assert "upstream_rest" in envoy.envoy.admin_get("/clusters")
    usage = EnvoyUsage.read(envoy.envoy)
    assert usage.requests == 3  # the two checks and the 404; admin reads are not counted
    assert usage.cpu_s > 0
    assert EnvoyUsage(1.0, 10).cpu_us_per_request(EnvoyUsage(1.5, 1010)) == pytest.approx(500.0)
    assert EnvoyUsage(1.0, 10).cpu_us_per_request(EnvoyUsage(1.5, 10)) is None


def test_the_cache_configuration_made_static_serves_hits_from_the_standin(
    standin: NginxStandIn, processes: ProcessRegistry, tmp_path: Path
) -> None:
    """``bench.envoy_instructions`` counts what Envoy does with the daemon's configuration made static:
    Envoy must accept it and serve hits of both protocols with it (here without valgrind)."""
    rest_port, grpc_port = free_port(), free_port()
    config = tmp_path / "cache.pb"
    models = [MODEL_NAME, "other-model"]
    bootstrap = cache_bootstrap(rest_port, grpc_port, standin.rest_address, standin.grpc_address, models)
    config.write_bytes(bytes(bootstrap))
    argv = [
        str(envoy_binary()),
        "--config-path",
        str(config),
        "--use-dynamic-base-id",
        "--log-level",
        "warning",
    ]
    envoy = processes.create("envoy-cache-static", argv).start()
    try:
        wait_until(
            lambda: port_accepts(rest_port) and port_accepts(grpc_port), 30.0, "the listeners", process=envoy
        )
        # Each model is routed without version and at version 1 (anything else would ask ext_proc: none here).
        check_rest(f"{LOOPBACK}:{rest_port}", rest_predict_path(MODEL_NAME))
        check_rest(f"{LOOPBACK}:{rest_port}", rest_predict_path("other-model", 1))
        check_grpc(f"{LOOPBACK}:{grpc_port}")
    finally:
        envoy.stop()


def test_callgrind_total_reads_the_summary_or_the_totals() -> None:
    assert callgrind_total("version: 1\ncmd: envoy\nevents: Ir\nsummary: 4169000\n") == 4_169_000
    assert callgrind_total("events: Ir\nfl=x\n0 3\ntotals: 12\n") == 12
    with pytest.raises(ValueError, match="no summary"):
        callgrind_total("events: Ir\n")


# ----- the cache scenarios' findings and the report's comparisons (no process) ---------------------------


def _result(rps: float, p50_ms: float) -> Result:
    return Result(rps=rps, p50_ms=p50_ms, p99_ms=p50_ms * 2, requests=round(rps), errors=0, seconds=1.0)


def test_overhead_section_marks_every_point_against_the_criteria() -> None:
    rows = [
        Row(STATIC_ENVOY, STAND_IN, Protocol.REST, 1, _result(1000, 0.200)),
        Row(STATIC_ENVOY, STAND_IN, Protocol.REST, 16, _result(10000, 1.000)),
        Row(HITS, STAND_IN, Protocol.REST, 1, _result(950, 0.250)),
        Row(HITS, STAND_IN, Protocol.REST, 16, _result(8000, 1.600)),
        Row(HITS, "TF Serving (bundled backend)", Protocol.REST, 1, _result(10, 50.0)),
    ]

    section = overhead_section(
        rows,
        title="Cache overhead",
        upstream=STAND_IN,
        baseline=STATIC_ENVOY,
        candidates=[HITS, HITS_AMONG_ROUTES],
    )

    assert f"| {HITS} | REST | 1 | (b) rows | 1,000 | 950 | 95.0 % | yes |" in section.body
    assert "| 80.0 % | **no** |" in section.body
    assert "| +0.050 | yes |" in section.body
    assert "| +0.600 | **no** |" in section.body
    assert "REST c=16 throughput 80.0 %; REST c=16 p50 +0.600 ms" in section.body
    assert f"{HITS_AMONG_ROUTES}: not compared" in section.body
    nothing = overhead_section(
        rows[2:], title="t", upstream=STAND_IN, baseline=STATIC_ENVOY, candidates=[HITS]
    )
    assert "|---|" not in nothing.body
    paired = overhead_section(
        rows[2:],
        title="t",
        upstream=STAND_IN,
        baseline=STATIC_ENVOY,
        candidates=[HITS],
        paired={HITS: [Row(STATIC_ENVOY, STAND_IN, Protocol.REST, 1, _result(950, 0.250))]},
    )
    assert f"| {HITS} | REST | 1 | paired | 950 | 950 | 100.0 % | yes |" in paired.body
    assert f"{HITS}: the criteria are met at all 1 points." in paired.body


def test_daemon_traffic_is_as_expected_when_hits_skip_ext_proc_and_misses_do_not() -> None:
    hits = DaemonTraffic(HITS, STAND_IN, 1000, 0, 1200, fast_path_on=True)
    leaked = DaemonTraffic(HITS, STAND_IN, 1000, 3, 1200, fast_path_on=True)
    every = DaemonTraffic(EXT_PROC_EVERY_REQUEST, STAND_IN, 1000, 1100, 0, fast_path_on=False)

    assert (hits.as_expected, leaked.as_expected, every.as_expected) == (True, False, True)
    body = daemon_traffic_section("Hits", [hits, leaked, every]).body
    assert "| 1,000 | 3 | 1,200 | **no** (none reach ext_proc) |" in body


def test_metrics_page_sums_labels_and_lists_histogram_buckets() -> None:
    page = parse_metrics(
        "# TYPE tfscache_daemon_requests_total counter\n"
        'tfscache_daemon_requests_total{protocol="rest"} 3.0\n'
        'tfscache_daemon_requests_total{protocol="grpc"} 4.0\n'
        "# TYPE tfscache_daemon_fast_path_route_seconds histogram\n"
        'tfscache_daemon_fast_path_route_seconds_bucket{le="0.01"} 1.0\n'
        'tfscache_daemon_fast_path_route_seconds_bucket{le="+Inf"} 2.0\n'
        "tfscache_daemon_fast_path_route_seconds_count 2.0\n"
        "tfscache_daemon_fast_path_route_seconds_sum 0.03\n"
    )

    assert page.total("tfscache_daemon_requests_total") == 7.0
    assert page.total("tfscache_daemon_fast_path_route_seconds_count") == 2.0
    assert page.buckets("tfscache_daemon_fast_path_route_seconds") == [(0.01, 1.0), (math.inf, 2.0)]
    assert page.total("absent") == 0.0


def test_settling_is_true_once_the_value_stops_moving() -> None:
    values = iter([1.0, 2.0, 2.0])
    settled = Settling(lambda: next(values), quiet_s=0.0)

    assert [settled(), settled(), settled()] == [False, False, True]


def test_cold_section_compares_the_paths_without_the_poll_wait() -> None:
    cache = [ColdMiss(f"cold-{n}", FirstPredict(0.9, 0.85), 0.02, 1) for n in range(3)]
    bare = [FirstPredict(1.0, 0.97) for _ in range(3)]

    body = cold_section(cache, bare, model_bytes=14 * 1024).body

    assert "| through the cache | 900.0 | 900.0 | 850.0 | 50.0 | 50.0 | 3 |" in body
    assert "| bare fetch + load | 1,000.0 | 1,000.0 | 970.0 | 30.0 | 30.0 | 3 |" in body
    assert "**20.0 ms**; the criterion (under 100 ms) is met." in body
    assert "the medians differ by -100.0 ms" in body
    assert FirstPredict(1.0, None).without_poll_wait_s is None
