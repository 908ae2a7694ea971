"""The harness itself: etcd, the S3 server and Envoy start, work, restart and leave nothing behind."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.harness import (
    LOOPBACK,
    AllVersions,
    EnvoyProcess,
    EtcdServer,
    LatestVersions,
    ModelConfigEntry,
    MotoServer,
    NotReadyError,
    ProcessRegistry,
    S3Bucket,
    SpecificVersions,
    free_port,
    free_ports,
    list_sizes,
    live_group_members,
    model_server_config_text,
    pid_alive,
    port_accepts,
    upload_tree,
    wait_until,
    write_bootstrap,
)
from tests.harness.s3 import MIN_PART_SIZE
from tfscachectl.errors import ConfigError
from tfscachectl.tfserving.launcher import (
    TF_SERVING_BINARY_ENV,
    format_flag,
    serving_backend_argv,
    serving_backend_command,
)

pytestmark = pytest.mark.integration

HTTP_TIMEOUT_S = 10.0
CHILD_PYTEST_TIMEOUT_S = 60.0
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def proxy_bootstrap(listener_port: int, upstream_port: int) -> str:
    """A static Envoy bootstrap: one HTTP listener routing everything to one upstream on loopback."""
    return f"""
static_resources:
  listeners:
  - name: ingress
    address:
      socket_address: {{address: {LOOPBACK}, port_value: {listener_port}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM_TYPE}
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: upstream}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": {ROUTER_TYPE}
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: {LOOPBACK}, port_value: {upstream_port}}}
"""


# --- processes ----------------------------------------------------------------------------------------------


def test_free_ports_are_distinct_and_unused() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert not any(port_accepts(port) for port in ports)


def test_stop_kills_the_whole_group_even_when_sigterm_is_ignored(processes: ProcessRegistry) -> None:
    # The shell and its background child both ignore SIGTERM (ignored signals survive exec).
    process = processes.start("stubborn", ["sh", "-c", "trap '' TERM; sleep 300 & sleep 300"])
    wait_until(
        lambda: len(live_group_members(process.pid)) == 3, 5, "the shell and both sleeps", process=process
    )
    members = live_group_members(process.pid)
    process.stop(grace=0.2)
    assert not any(pid_alive(pid) for pid in members)
    assert live_group_members(process.pid) == []


def test_kill_is_a_crash(processes: ProcessRegistry) -> None:
    process = processes.start("victim", ["sh", "-c", "trap 'echo got SIG$((7+8))' TERM; sleep 300 & wait"])
    wait_until(
        lambda: len(live_group_members(process.pid)) == 2, 5, "the shell and its sleep", process=process
    )
    assert process.kill() == -9
    assert "got SIG15" not in process.log_text()
    assert live_group_members(process.pid) == []


def test_wait_until_reports_an_exited_process_with_its_log(processes: ProcessRegistry) -> None:
    process = processes.start("crasher", ["sh", "-c", "echo the reason it died; exit 3"])
    with pytest.raises(NotReadyError, match="exited first") as failure:
        wait_until(lambda: False, 10, "the crasher", process=process)
    assert "exited with code 3" in str(failure.value)
    assert "the reason it died" in str(failure.value)


def test_wait_until_times_out_with_the_last_probe_error() -> None:
    port = free_port()

    def probe() -> bool:
        return port_accepts(port) or _refuse(port)

    with pytest.raises(NotReadyError, match=r"timed out after 0.2 s") as failure:
        wait_until(probe, 0.2, "nothing")
    assert "ConnectionRefusedError" in str(failure.value)


def _refuse(port: int) -> bool:
    raise ConnectionRefusedError(f"nothing listens on {port}")


def test_processes_are_gone_after_teardown(tmp_path: Path) -> None:
    registry = ProcessRegistry(tmp_path / "processes")
    etcd = EtcdServer(registry, tmp_path / "etcd").start()
    moto = MotoServer(registry).start()
    envoy = EnvoyProcess(registry, proxy_bootstrap(free_port(), moto.port), tmp_path / "envoy").start()
    pids = [p.pid for p in registry.processes]
    assert all(pid_alive(pid) for pid in pids)
    ports = [etcd.client_port, moto.port, int(envoy.admin_address.rsplit(":", 1)[1])]

    registry.stop_all()

    assert not any(pid_alive(pid) for pid in pids)
    assert all(live_group_members(pid) == [] for pid in pids)
    assert not any(port_accepts(port) for port in ports)


# --- etcd ---------------------------------------------------------------------------------------------------


def test_etcd_put_get_survives_a_restart(etcd: EtcdServer) -> None:
    etcd.etcdctl("put", "/tfscache/test", "hello")
    assert etcd.etcdctl("get", "/tfscache/test", "--print-value-only").strip() == "hello"
    first_pid = etcd.process.pid

    etcd.stop()
    assert not pid_alive(first_pid)
    assert not port_accepts(etcd.client_port)

    etcd.start()
    assert etcd.process.pid != first_pid
    assert etcd.etcdctl("get", "/tfscache/test", "--print-value-only").strip() == "hello"


def test_aetcd_talks_to_etcd(etcd: EtcdServer) -> None:
    aetcd = pytest.importorskip("aetcd")

    async def roundtrip() -> bytes:
        async with aetcd.Client(host=LOOPBACK, port=etcd.client_port) as client:
            await client.put(b"/tfscache/aetcd", b"value")
            result = await client.get(b"/tfscache/aetcd")
            return bytes(result.value)

    assert asyncio.run(roundtrip()) == b"value"


# --- S3 -----------------------------------------------------------------------------------------------------


def test_upload_tree_lists_back_with_sizes_including_multipart(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    tree = tmp_path / "model"
    (tree / "00000123" / "variables").mkdir(parents=True)
    (tree / "00000123" / "saved_model.pb").write_bytes(b"\x08\x01" * 1000)
    (tree / "00000123" / "variables" / "variables.index").write_bytes(b"index")
    big = tree / "00000123" / "variables" / "variables.data-00000-of-00001"
    big.write_bytes(os.urandom(MIN_PART_SIZE + 12345))

    uploaded = upload_tree(s3_bucket.client, s3_bucket.name, "models/half_plus_two", tree)

    expected = {
        "models/half_plus_two/00000123/saved_model.pb": 2000,
        "models/half_plus_two/00000123/variables/variables.index": 5,
        "models/half_plus_two/00000123/variables/variables.data-00000-of-00001": MIN_PART_SIZE + 12345,
    }
    assert uploaded == expected
    assert list_sizes(s3_bucket.client, s3_bucket.name, "models/") == expected
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=next(k for k in expected if "data-" in k))
    assert head["ETag"].strip('"').endswith("-2"), "the big file should have gone up in two parts"
    body = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=next(k for k in expected if "data-" in k))
    assert body["Body"].read() == big.read_bytes()


def test_each_test_gets_a_fresh_bucket(s3_bucket: S3Bucket) -> None:
    assert list_sizes(s3_bucket.client, s3_bucket.name) == {}


# --- Envoy --------------------------------------------------------------------------------------------------


def test_envoy_proxies_to_the_s3_server(
    start_envoy: Callable[..., EnvoyProcess], s3_server: MotoServer, s3_bucket: S3Bucket
) -> None:
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="through-envoy.txt", Body=b"hi")
    listener_port = free_port()
    envoy = start_envoy(proxy_bootstrap(listener_port, s3_server.port), log_level="warning")

    with httpx.Client(timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
        listing = client.get(f"http://{LOOPBACK}:{listener_port}/{s3_bucket.name}?list-type=2")
    assert listing.status_code == 200
    assert "through-envoy.txt" in listing.text
    assert "upstream" in envoy.admin_get("/clusters")


def test_several_envoys_run_at_once(start_envoy: Callable[..., EnvoyProcess], s3_server: MotoServer) -> None:
    first = start_envoy(proxy_bootstrap(free_port(), s3_server.port))
    second = start_envoy(proxy_bootstrap(free_port(), s3_server.port))
    assert first.live()
    assert second.live()
    assert first.admin_address != second.admin_address


def test_bootstrap_must_stay_on_loopback(tmp_path: Path) -> None:
    bootstrap = proxy_bootstrap(free_port(), free_port()).replace(
        f"address: {LOOPBACK}, port_value", "address: 0.0.0.0, port_value", 1
    )
    with pytest.raises(ValueError, match="loopback"):
        write_bootstrap(bootstrap, tmp_path / "bootstrap.yaml")


# --- serving backend command and model config -----------------------------------------------------------


def test_launcher_runs_the_bundled_backend_by_default() -> None:
    argv = serving_backend_argv([format_flag("port", 8500), format_flag("enable_model_warmup", False)], {})
    assert argv[1:] == ["-m", "tfscachectl", "tf-serving", "--port=8500", "--enable_model_warmup=false"]
    assert serving_backend_command({TF_SERVING_BINARY_ENV: ""}).bundled


def test_launcher_runs_the_named_binary(tmp_path: Path) -> None:
    binary = tmp_path / "tensorflow_model_server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    by_path = serving_backend_command({TF_SERVING_BINARY_ENV: str(binary)})
    assert by_path.program == (str(binary),)
    assert not by_path.bundled
    by_name = serving_backend_command(
        {TF_SERVING_BINARY_ENV: "tensorflow_model_server", "PATH": str(tmp_path)}
    )
    assert by_name.program == (str(binary),)


@pytest.mark.parametrize("named", ["/nonexistent/tensorflow_model_server", "no-such-program-anywhere"])
def test_launcher_refuses_a_missing_binary(named: str) -> None:
    with pytest.raises(ConfigError, match=TF_SERVING_BINARY_ENV):
        serving_backend_command({TF_SERVING_BINARY_ENV: named, "PATH": "/nonexistent"})


def test_model_config_text_is_a_model_server_config() -> None:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    text = model_server_config_text(
        [
            ModelConfigEntry("a", "/models/a"),
            ModelConfigEntry("b", Path("/models/b"), AllVersions()),
            ModelConfigEntry("c", "/models/c", SpecificVersions((1, 2)), labels={"stable": 1, "canary": 2}),
            ModelConfigEntry('we"ird', "/models/d", LatestVersions(2)),
        ]
    )
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    a, b, c, d = config.model_config_list.config
    assert (a.name, a.base_path, a.model_platform) == ("a", "/models/a", "tensorflow")
    assert not a.HasField("model_version_policy")
    assert b.model_version_policy.HasField("all")
    assert list(c.model_version_policy.specific.versions) == [1, 2]
    assert dict(c.version_labels) == {"stable": 1, "canary": 2}
    assert (d.name, d.model_version_policy.latest.num_versions) == ('we"ird', 2)
    empty = text_format.Parse(model_server_config_text([]), model_server_config_pb2.ModelServerConfig())
    assert empty.HasField("model_config_list")
    assert len(empty.model_config_list.config) == 0


# --- failure reports ----------------------------------------------------------------------------------------

FAILING_TEST = """
def test_fails(processes):
    processes.start("talker", ["sh", "-c", "echo a line from the talker; sleep 300"])
    from tests.harness import wait_until
    wait_until(lambda: "a line" in processes.processes[0].log_text(), 10, "the talker's line")
    assert False, "deliberate"
"""


def test_a_failed_test_shows_its_process_logs(tmp_path: Path) -> None:
    # A throwaway test directory whose conftest is ours: run it in a child pytest and read its report.
    repo = Path(__file__).resolve().parents[2]
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(repo)!r})\n"
        "from tests.conftest import *  # noqa: F403\n"
        "from tests.conftest import _session_process_logs, pytest_runtest_makereport  # noqa: F401\n"
    )
    (suite / "test_fails.py").write_text(FAILING_TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(suite)],
        capture_output=True,
        text=True,
        cwd=suite,
        timeout=CHILD_PYTEST_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Captured process logs (call)" in result.stdout
    assert "a line from the talker" in result.stdout
