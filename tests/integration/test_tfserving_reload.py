"""Reload semantics of the bundled backend (``ModelService/HandleReloadConfigRequest``), on a real process.

Every test starts its own backend on a model directory it owns (copies of the generated models in
``tmp_path``), so it can add and remove version directories. The behaviour is TF Serving's ServerCore
(``../shared/TFSERVING.md`` section 1c): whole-list replacement, when the call returns, the label rule,
failed loads, missing base paths, start-up failure, and requests in flight while their model is unloaded.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from tests.harness.model_config import AllVersions, ModelConfigEntry, model_server_config_text
from tests.harness.processes import ProcessRegistry, wait_until
from tests.harness.serving import ServingBackend
from tfscachectl.modelgen.store import ModelStoreTree

pytestmark = pytest.mark.integration

State = get_model_status_pb2.ModelVersionStatus.State
RPC_TIMEOUT_S = 30.0
# A reload that must not return: how long the client waits before its deadline ends the call.
BLOCKED_RELOAD_DEADLINE_S = 3.0
# Loading a tiny model takes well under a second; this bounds a reload that must return.
LOAD_BUDGET_S = 15.0
# How long a state change that follows at once (an unload, a poll) may take to show.
STATE_CHANGE_TIMEOUT_S = 15.0
# The in-flight request should last about this long, and at least long enough to be seen.
SLOW_REQUEST_S = 2.0
SLOW_CALIBRATION_ITERATIONS = 200_000
SLOW_MAX_ITERATIONS = 200_000_000
# The backend exits with this status when an initial model fails (TF Serving's -1).
EXIT_START_FAILED = 255
START_FAILURE_TIMEOUT_S = 90.0
FAST_RETRIES = ("--max_num_load_retries=0",)


# ----- a backend with its own model directory -------------------------------------------------------------


class Backend:
    """A running backend, its model directory and gRPC/REST clients."""

    def __init__(self, server: ServingBackend, models: Path) -> None:
        self.server = server
        self.models = models
        self.channel = grpc.insecure_channel(server.grpc_target)
        self.model_service = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.rest = httpx.Client(base_url=server.rest_url, timeout=RPC_TIMEOUT_S, trust_env=False)

    def close(self) -> None:
        self.rest.close()
        self.channel.close()

    def path(self, name: str) -> Path:
        return self.models / name

    def entry(self, name: str, **options: Any) -> ModelConfigEntry:
        return ModelConfigEntry(name, self.path(name), **options)

    def reload(self, entries: Iterable[ModelConfigEntry], timeout: float = RPC_TIMEOUT_S) -> Any:
        request = model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(server_config(entries))
        return self.model_service.HandleReloadConfigRequest(request, timeout=timeout)

    def status(self, name: str, version: int | None = None) -> list[tuple[int, int, int, str]]:
        """GetModelStatus as (version, state, error_code, error_message), highest version first."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        response = self.model_service.GetModelStatus(request, timeout=RPC_TIMEOUT_S)
        return [
            (s.version, s.state, s.status.error_code, s.status.error_message)
            for s in response.model_version_status
        ]

    def states(self, name: str) -> list[tuple[int, int]]:
        return [(version, state) for version, state, _, _ in self.status(name)]

    def wait_for_states(self, name: str, expected: list[tuple[int, int]]) -> None:
        wait_until(
            lambda: self.states(name) == expected,
            STATE_CHANGE_TIMEOUT_S,
            f"{name} to reach {expected}",
            process=self.server.process,
        )

    def predict(self, name: str, *, label: str = "", timeout: float = RPC_TIMEOUT_S, **inputs: Any) -> Any:
        return self.prediction.Predict(predict_request(name, label=label, **inputs), timeout=timeout)


def server_config(entries: Iterable[ModelConfigEntry]) -> Any:
    """A ``ModelServerConfig`` with this ``model_config_list`` (the same text the config file holds)."""
    return text_format.Parse(model_server_config_text(entries), model_server_config_pb2.ModelServerConfig())


def tensor(value: Any, dtype: Any) -> Any:
    import tensorflow as tf

    return tf.make_tensor_proto(np.asarray(value, dtype=dtype))


def predict_request(name: str, *, label: str = "", **inputs: Any) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if label:
        request.model_spec.version_label = label
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(value)
    return request


def half_plus_two_x(value: float = 2.0) -> Any:
    return tensor([value], np.float32)


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def add_version(source: Path, target: Path) -> None:
    """Copy a version directory to ``target`` atomically: a poll never sees half of it."""
    staging = target.parent.parent / f".staging-{target.parent.name}-{target.name}"
    shutil.copytree(source, staging / target.name)
    if target.parent.exists():
        (staging / target.name).rename(target)
        staging.rmdir()
    else:
        staging.rename(target.parent)


def copy_models(generated: ModelStoreTree, target: Path, names: Iterable[str]) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copytree(generated.base_path(name), target / name)
    return target


@pytest.fixture
def start_backend(
    processes: ProcessRegistry, generated_models: ModelStoreTree, tmp_path: Path
) -> Iterator[Callable[..., Backend]]:
    """``start_backend(copied, initial, flags...)``: copy ``copied`` generated models into this test's model
    directory and start a backend serving ``initial`` (names, or entries built on that directory)."""
    started: list[Backend] = []

    def start(
        copied: Iterable[str],
        initial: Iterable[str | ModelConfigEntry],
        *flags: str,
        poll_seconds: int = 1,
    ) -> Backend:
        models = copy_models(generated_models, tmp_path / "models", copied)
        entries = [ModelConfigEntry(e, models / e) if isinstance(e, str) else e for e in initial]
        server = ServingBackend.with_models(
            processes,
            tmp_path / f"config-{len(started)}",
            entries,
            file_system_poll_wait_seconds=poll_seconds,
            extra_flags=list(flags),
            name=f"serving-{len(started)}",
        ).start()
        backend = Backend(server, models)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.close()


# ----- whole-list replacement -----------------------------------------------------------------------------


def test_models_missing_from_the_new_list_are_unloaded(start_backend: Callable[..., Backend]) -> None:
    backend = start_backend(
        ["half_plus_two", "half_plus_three"], ["half_plus_two", "half_plus_three"], *FAST_RETRIES
    )
    backend.reload([backend.entry("half_plus_two")])
    # Unloading is asynchronous; the state of an unloaded version is kept: END with OK, not NOT_FOUND.
    backend.wait_for_states("half_plus_three", [(123, State.END)])
    assert backend.status("half_plus_three") == [(123, State.END, 0, "")]
    assert backend.status("half_plus_three", 123) == [(123, State.END, 0, "")]
    error = rpc_error(lambda: backend.predict("half_plus_three", x=tensor(2.0, np.float32)))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(half_plus_three)",
    )
    response = backend.rest.get("/v1/models/half_plus_three")
    assert response.status_code == 200
    assert response.json()["model_version_status"][0]["state"] == "END"
    # The model that stayed is untouched.
    assert backend.states("half_plus_two") == [(123, State.AVAILABLE)]
    assert list(backend.predict("half_plus_two", x=half_plus_two_x()).outputs["y"].float_val) == [3.0]
    # A set but empty list unloads everything.
    backend.reload([])
    backend.wait_for_states("half_plus_two", [(123, State.END)])


# ----- when the call returns ------------------------------------------------------------------------------


def test_with_a_single_poll_a_reload_that_adds_a_model_never_returns(
    start_backend: Callable[..., Backend],
) -> None:
    backend = start_backend(["half_plus_two", "half_plus_three"], ["half_plus_two"], poll_seconds=0)
    entries = [backend.entry("half_plus_two"), backend.entry("half_plus_three")]
    started = time.monotonic()
    error = rpc_error(lambda: backend.reload(entries, timeout=BLOCKED_RELOAD_DEADLINE_S))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started >= BLOCKED_RELOAD_DEADLINE_S * 0.9
    # The base path was never polled: the model has no version at all.
    error = rpc_error(lambda: backend.status("half_plus_three"))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model half_plus_three",
    )


def test_a_reload_that_adds_a_model_returns_once_it_is_available(
    start_backend: Callable[..., Backend],
) -> None:
    poll_seconds = 1
    backend = start_backend(
        ["half_plus_two", "half_plus_three"], ["half_plus_two"], poll_seconds=poll_seconds
    )
    started = time.monotonic()
    response = backend.reload([backend.entry("half_plus_two"), backend.entry("half_plus_three")])
    elapsed = time.monotonic() - started
    assert response.status.error_code == 0
    assert elapsed < poll_seconds + LOAD_BUDGET_S
    # Nothing to wait for: the model is AVAILABLE when the call returns.
    assert backend.states("half_plus_three") == [(123, State.AVAILABLE)]
    assert list(backend.predict("half_plus_three", x=tensor(2.0, np.float32)).outputs["y"].float_val) == [4.0]


# ----- labels ---------------------------------------------------------------------------------------------


def test_a_label_must_name_an_available_version(start_backend: Callable[..., Backend]) -> None:
    name = "half_plus_two_2_versions"
    backend = start_backend([name, "half_plus_three"], [name])
    # The default policy serves the latest version only.
    assert backend.states(name) == [(124, State.AVAILABLE)]
    error = rpc_error(
        lambda: backend.reload(
            [backend.entry(name, labels={"stable": 123}), backend.entry("half_plus_three")]
        )
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        f"Request to assign label to version 123 of model {name}, which is not currently available "
        "for inference",
    )
    # Nothing was added: the model of the refused request was never configured.
    assert rpc_error(lambda: backend.status("half_plus_three")).code() == grpc.StatusCode.NOT_FOUND
    # First the version, then (once it is AVAILABLE) the label: TF Serving's documented procedure.
    backend.reload([backend.entry(name, version_policy=AllVersions())])
    backend.wait_for_states(name, [(124, State.AVAILABLE), (123, State.AVAILABLE)])
    backend.reload([backend.entry(name, version_policy=AllVersions(), labels={"stable": 123, "canary": 124})])
    metadata = backend.rest.get(f"/v1/models/{name}/labels/stable/metadata")
    assert metadata.status_code == 200
    assert metadata.json()["model_spec"]["version"] == "123"
    predicted = backend.rest.post(f"/v1/models/{name}/labels/stable:predict", content='{"instances": [2.0]}')
    assert (predicted.status_code, predicted.text) == (200, '{\n    "predictions": [3.0\n    ]\n}')
    assert backend.predict(name, label="stable", x=half_plus_two_x()).model_spec.version.value == 123
    assert backend.predict(name, label="canary", x=half_plus_two_x()).model_spec.version.value == 124


def test_allowing_labels_for_unavailable_versions(start_backend: Callable[..., Backend]) -> None:
    name = "half_plus_two_2_versions"
    backend = start_backend([name], [name], "--allow_version_labels_for_unavailable_models=true")
    # A new label may name a version that is not loaded, or not even on disk.
    backend.reload([backend.entry(name, labels={"canary": 124, "next": 125})])
    response = backend.rest.post(f"/v1/models/{name}/labels/next:predict", content='{"instances": [2.0]}')
    assert response.status_code == 404
    assert response.json() == {"error": f"Servable not found for request: Specific({name}, 125)"}
    # Moving an existing label to a version that is not available is still refused.
    error = rpc_error(lambda: backend.reload([backend.entry(name, labels={"canary": 123, "next": 125})]))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        f"Request to assign label to version 123 of model {name}, which is not currently available "
        "for inference",
    )
    # When version 125 appears and loads, the label serves it.
    add_version(backend.path(name) / "00000124", backend.path(name) / "00000125")
    wait_until(
        lambda: backend.predict(name, label="next", x=half_plus_two_x()).model_spec.version.value == 125,
        STATE_CHANGE_TIMEOUT_S,
        "the label to serve version 125",
        process=backend.server.process,
    )


# ----- failures -------------------------------------------------------------------------------------------


def test_a_model_that_fails_to_load(start_backend: Callable[..., Backend]) -> None:
    backend = start_backend(
        ["half_plus_two", "half_plus_three", "broken"],
        ["half_plus_two"],
        "--max_num_load_retries=1",
        "--load_retry_interval_micros=100000",
    )
    entries = [backend.entry("half_plus_two"), backend.entry("broken"), backend.entry("half_plus_three")]
    error = rpc_error(lambda: backend.reload(entries))
    assert error.code() == grpc.StatusCode.UNKNOWN
    assert error.details().startswith(
        "1 model(s) did not become available: {{name: broken version: 1} due to error: "
    )
    assert error.details().endswith("}, }")
    ((version, state, code, message),) = backend.status("broken")
    assert (version, state) == (1, State.END)
    assert code == grpc.StatusCode.DATA_LOSS.value[0]
    assert message.endswith("saved_model.pb as binary proto")
    assert message in error.details()
    # The other model of the same request is loaded.
    assert backend.states("half_plus_three") == [(123, State.AVAILABLE)]
    assert backend.states("half_plus_two") == [(123, State.AVAILABLE)]


def test_a_missing_base_path_blocks_the_reload_and_every_version_update(
    start_backend: Callable[..., Backend],
) -> None:
    backend = start_backend(["half_plus_two", "half_plus_three"], ["half_plus_two"], *FAST_RETRIES)
    missing = backend.path("not_yet")
    entries = [backend.entry("half_plus_two"), backend.entry("not_yet")]
    error = rpc_error(lambda: backend.reload(entries, timeout=BLOCKED_RELOAD_DEADLINE_S))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # While a configured base path is missing, every poll is abandoned: a new version of another model is
    # not picked up, and a model added by a later reload is not loaded (that reload blocks too).
    add_version(backend.path("half_plus_two") / "00000123", backend.path("half_plus_two") / "00000124")
    error = rpc_error(
        lambda: backend.reload(
            [*entries, backend.entry("half_plus_three")], timeout=BLOCKED_RELOAD_DEADLINE_S
        )
    )
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert backend.states("half_plus_two") == [(123, State.AVAILABLE)]
    assert rpc_error(lambda: backend.status("half_plus_three")).code() == grpc.StatusCode.NOT_FOUND
    # Once the path appears, polls resume: every model gets its versions.
    add_version(backend.path("half_plus_two") / "00000123", missing / "1")
    backend.wait_for_states("not_yet", [(1, State.AVAILABLE)])
    backend.wait_for_states("half_plus_two", [(124, State.AVAILABLE), (123, State.END)])
    backend.wait_for_states("half_plus_three", [(123, State.AVAILABLE)])


def test_later_reloads_wait_behind_a_blocked_one(start_backend: Callable[..., Backend]) -> None:
    backend = start_backend(["half_plus_two"], ["half_plus_two"], *FAST_RETRIES)
    blocked = [backend.entry("half_plus_two"), backend.entry("not_yet")]
    error = rpc_error(lambda: backend.reload(blocked, timeout=BLOCKED_RELOAD_DEADLINE_S))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Even a reload that would need nothing (dropping the missing model) waits for the first one.
    error = rpc_error(
        lambda: backend.reload([backend.entry("half_plus_two")], timeout=BLOCKED_RELOAD_DEADLINE_S)
    )
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_invalid_reload_requests(start_backend: Callable[..., Backend]) -> None:
    backend = start_backend(["half_plus_two"], ["half_plus_two"])
    unset = model_management_pb2.ReloadConfigRequest()
    error = rpc_error(lambda: backend.model_service.HandleReloadConfigRequest(unset, timeout=RPC_TIMEOUT_S))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is "
        "currently supported",
    )
    error = rpc_error(
        lambda: backend.reload([backend.entry("half_plus_two"), backend.entry("half_plus_two")])
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Illegal to list model half_plus_two multiple times in config list",
    )
    error = rpc_error(lambda: backend.reload([ModelConfigEntry("relative", "models/relative")]))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expected model relative to have an absolute path or URI; got base_path()=models/relative",
    )
    # Nothing changed.
    assert backend.states("half_plus_two") == [(123, State.AVAILABLE)]


def test_a_failing_initial_model_stops_start_up(
    processes: ProcessRegistry, generated_models: ModelStoreTree, tmp_path: Path
) -> None:
    server = ServingBackend.with_models(
        processes,
        tmp_path,
        [
            ModelConfigEntry("half_plus_two", generated_models.base_path("half_plus_two")),
            ModelConfigEntry("broken", generated_models.base_path("broken")),
        ],
        extra_flags=list(FAST_RETRIES),
        name="serving-broken",
    )
    process = server.process.start()
    wait_until(lambda: process.exited, START_FAILURE_TIMEOUT_S, "the backend to exit")
    assert process.returncode == EXIT_START_FAILED
    assert "Failed to start server. Error: " in process.log_text()


# ----- a request in flight while its model is unloaded ------------------------------------------------------


def test_a_request_in_flight_completes_while_its_model_is_unloaded(
    start_backend: Callable[..., Backend],
) -> None:
    backend = start_backend(["slow", "half_plus_two"], ["slow", "half_plus_two"], *FAST_RETRIES)

    def slow_request(iterations: int) -> Any:
        return predict_request("slow", iterations=tensor(iterations, np.int64))

    def count(iterations: int) -> int:
        response = backend.prediction.Predict(slow_request(iterations), timeout=RPC_TIMEOUT_S)
        return int(response.outputs["count"].int64_val[0])

    assert count(1) == 1  # the first call of a signature builds its callable: keep it out of the timing
    started = time.monotonic()
    assert count(SLOW_CALIBRATION_ITERATIONS) == SLOW_CALIBRATION_ITERATIONS
    per_iteration = (time.monotonic() - started) / SLOW_CALIBRATION_ITERATIONS
    iterations = min(
        max(int(SLOW_REQUEST_S / per_iteration), SLOW_CALIBRATION_ITERATIONS), SLOW_MAX_ITERATIONS
    )

    long_request = backend.prediction.Predict.future(slow_request(iterations), timeout=RPC_TIMEOUT_S)
    # A request sent after the long one on the same channel has made its round trip: the server has taken
    # the long one, which holds its model version.
    assert count(1) == 1
    assert not long_request.done()
    backend.reload([backend.entry("half_plus_two")])
    backend.wait_for_states("slow", [(1, State.UNLOADING)])
    assert not long_request.done(), "the request ended before the unload could wait for it"
    # The version is already hidden from new requests.
    error = rpc_error(lambda: count(1))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(slow)",
    )
    assert int(long_request.result(timeout=RPC_TIMEOUT_S).outputs["count"].int64_val[0]) == iterations
    backend.wait_for_states("slow", [(1, State.END)])
