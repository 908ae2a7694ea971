"""Fixtures shared by every test: real processes on loopback ports, generated models, the real testdata.

Processes register with a ``ProcessRegistry`` (one per test, one per session); each test's registry is
stopped at its teardown, and when a test fails its report gets the log tails of every registered process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.envoy import Bootstrap, EnvoyProcess
from tests.harness.etcd import EtcdServer
from tests.harness.model_config import ModelConfigEntry
from tests.harness.processes import ProcessRegistry
from tests.harness.s3 import MotoServer, S3Bucket
from tests.harness.serving import REPO_ROOT, ServingBackend
from tfscachectl.modelgen.store import ModelStoreTree, model_store_layout

# Tenant models written for the session (tenant-0001 .. tenant-0008).
GENERATED_TENANT_COUNT = 8
# Writing every generated model takes a few seconds, most of it importing TensorFlow.
MODELGEN_TIMEOUT_S = 180.0
TESTDATA_DIR = REPO_ROOT.parent / "shared" / "testdata"

_REGISTRIES = pytest.StashKey[list[ProcessRegistry]]()


def _registries(node: pytest.Item) -> list[ProcessRegistry]:
    return node.stash.setdefault(_REGISTRIES, [])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log tails of the test's processes to the report of a failed test."""
    report = yield
    if report.failed:
        logs = "\n\n".join(r.log_report() for r in item.stash.get(_REGISTRIES, []) if r.processes)
        if logs:
            report.sections.append((f"Captured process logs ({report.when})", logs))
    return report


@pytest.fixture(scope="session")
def session_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessRegistry]:
    """Processes shared by the whole session (the S3 server); stopped at the end of the session."""
    registry = ProcessRegistry(tmp_path_factory.mktemp("session-processes"))
    yield registry
    registry.stop_all()


@pytest.fixture(autouse=True)
def _session_process_logs(request: pytest.FixtureRequest) -> None:
    """Failed tests that use session processes (the S3 server) also show their logs."""
    if "session_processes" in request.fixturenames:
        _registries(request.node).append(request.getfixturevalue("session_processes"))


@pytest.fixture(scope="module")
def module_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessRegistry]:
    """Processes shared by the tests of one module (a backend many tests query); stopped at its end."""
    registry = ProcessRegistry(tmp_path_factory.mktemp("module-processes"))
    yield registry
    registry.stop_all()


@pytest.fixture(autouse=True)
def _module_process_logs(request: pytest.FixtureRequest) -> None:
    """Failed tests that use module processes also show their logs."""
    if "module_processes" in request.fixturenames:
        _registries(request.node).append(request.getfixturevalue("module_processes"))


@pytest.fixture
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessRegistry]:
    """This test's processes, with logs under its ``tmp_path``; every one is stopped at teardown."""
    registry = ProcessRegistry(tmp_path / "processes")
    _registries(request.node).append(registry)
    yield registry
    registry.stop_all()


@pytest.fixture
def etcd(processes: ProcessRegistry, tmp_path: Path) -> EtcdServer:
    """A fresh single-member etcd with its own data directory."""
    return EtcdServer(processes, tmp_path / "etcd-data").start()


@pytest.fixture(scope="session")
def s3_server(session_processes: ProcessRegistry) -> MotoServer:
    """moto's S3 server, one per session (tests use their own buckets)."""
    return MotoServer(session_processes).start()


@pytest.fixture
def s3_bucket(s3_server: MotoServer) -> S3Bucket:
    """A new, empty bucket on the session's S3 server, with a client."""
    return S3Bucket.create(s3_server.endpoint_url)


@pytest.fixture
def start_envoy(processes: ProcessRegistry, tmp_path: Path) -> Callable[..., EnvoyProcess]:
    """``start_envoy(bootstrap, log_level=..., concurrency=...)``: a running (LIVE) Envoy."""
    count = 0

    def start(bootstrap: Bootstrap, **options: Any) -> EnvoyProcess:
        nonlocal count
        count += 1
        name = options.pop("name", f"envoy-{count}")
        return EnvoyProcess(processes, bootstrap, tmp_path / name, name=name, **options).start()

    return start


@pytest.fixture
def start_serving_backend(processes: ProcessRegistry, tmp_path: Path) -> Callable[..., ServingBackend]:
    """``start_serving_backend(entries)`` (a model config file) or ``(model_name=, model_base_path=)``.

    Other keyword arguments go to ``ServingBackend`` (``file_system_poll_wait_seconds``, ``extra_flags``...).
    """
    count = 0

    def start(entries: Iterable[ModelConfigEntry] | None = None, **options: Any) -> ServingBackend:
        nonlocal count
        count += 1
        name = options.pop("name", f"serving-{count}")
        if entries is not None:
            backend = ServingBackend.with_models(processes, tmp_path / name, entries, name=name, **options)
        else:
            backend = ServingBackend(processes, name=name, **options)
        return backend.start()

    return start


@pytest.fixture(scope="session")
def generated_models(tmp_path_factory: pytest.TempPathFactory) -> ModelStoreTree:
    """Every catalog model plus a few tenant models, written once per session (in a child process, so the
    test process does not import TensorFlow for it)."""
    root = tmp_path_factory.mktemp("generated-models")
    argv = [
        sys.executable,
        "-m",
        "tfscachectl.modelgen",
        str(root),
        f"--tenants={GENERATED_TENANT_COUNT}",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=MODELGEN_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"writing the generated models failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return model_store_layout(root, tenant_count=GENERATED_TENANT_COUNT)


@pytest.fixture(scope="session")
def testdata_dir() -> Path:
    """TF Serving's real test models (``<repo>/../shared/testdata``); skips when they are absent."""
    if not TESTDATA_DIR.is_dir():
        pytest.skip(f"TF Serving's testdata is not at {TESTDATA_DIR}")
    return TESTDATA_DIR
