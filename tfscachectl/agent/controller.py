"""The TF Serving controller: the single writer of one TF Serving's model config.

It keeps the *desired* model set (model name -> resident versions, and labels that name AVAILABLE
versions), sends it whole with ``ModelService/HandleReloadConfigRequest`` and reports when a version is
AVAILABLE, or why it is not, by watching ``GetModelStatus``. Three facts about TF Serving shape it
(``docs/tfserving.md``):

- A reload that adds a model name returns only when that model has loaded (or failed), and reloads are
  serialized by a lock inside TF Serving. So reloads are sent one at a time from one task, changes made
  meanwhile are coalesced into the next one, and callers never wait on the RPC itself: they wait on the
  model's status with their own deadline. Only one reload is ever outstanding, so TF Serving can never apply
  an older config after a newer one.
- A configured base path that does not exist blocks every reload and every version update in TF Serving.
  The controller never sends one: a name whose directory is missing on this node is left out and logged.
- Status is never forgotten: a version that failed before still reports its old error until TF Serving
  starts loading it again, so an old END is not taken for the outcome of a new load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from tfscachectl.core.refs import ModelKey
from tfscachectl.errors import Code, ServingError

log = logging.getLogger(__name__)

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
_STATE_NAMES = {v: k for k, v in get_model_status_pb2.ModelVersionStatus.State.items()}


def code_of(number: int) -> Code:
    """A status code number from TF Serving as a ``Code`` (UNKNOWN if it is not one)."""
    try:
        return Code(number)
    except ValueError:
        return Code.UNKNOWN


@dataclass(frozen=True)
class ControllerTimeouts:
    """Per-phase timeouts, in seconds."""

    ready: float = 120.0  # TF Serving reachable at start
    reload_rpc: float = 600.0  # one HandleReloadConfigRequest (it blocks while new models load)
    status_rpc: float = 5.0  # one GetModelStatus
    poll_first: float = 0.02  # status polling while waiting for a version: first interval...
    poll_max: float = 0.25  # ...backing off to this


@dataclass(frozen=True)
class VersionState:
    version: int
    state: int
    error_code: int = 0
    error_message: str = ""

    @property
    def state_name(self) -> str:
        return str(_STATE_NAMES.get(self.state, self.state))

    @property
    def failed(self) -> bool:
        return self.state == END and self.error_code != 0


class TFServingController:
    def __init__(
        self,
        grpc_target: str,
        local_root: Path,
        served_root: PurePosixPath,
        timeouts: ControllerTimeouts | None = None,
    ) -> None:
        self._target = grpc_target
        self._local_root = local_root
        self._served_root = served_root
        self.timeouts = timeouts or ControllerTimeouts()
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._desired: dict[str, set[int]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._generation = 0  # bumped on every change of the desired config
        self._applied_generation = 0  # the generation of the last reload TF Serving answered
        self._last_error: ServingError | None = None
        self._dirty = asyncio.Event()
        self._reloaded = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    # ----- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, and wait up to ``timeouts.ready`` for TF Serving to answer."""
        self._channel = grpc.aio.insecure_channel(
            self._target, options=[("grpc.max_receive_message_length", 2**31 - 1)]
        )
        self._stub = model_service_pb2_grpc.ModelServiceStub(self._channel)
        try:
            await asyncio.wait_for(self._channel.channel_ready(), self.timeouts.ready)
        except TimeoutError as exc:
            raise ServingError(
                Code.UNAVAILABLE,
                f"TF Serving at {self._target} did not answer within {self.timeouts.ready:g} s",
            ) from exc
        self._task = asyncio.create_task(self._reload_loop(), name="tf-serving-reload")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._channel is not None:
            await self._channel.close()

    # ----- the desired config -------------------------------------------------------------------

    def desired(self) -> dict[str, frozenset[int]]:
        return {name: frozenset(v) for name, v in self._desired.items() if v}

    def adopt(self, keys: list[ModelKey], labels: Mapping[str, Mapping[str, int]]) -> None:
        """Take over what TF Serving already serves (restart recovery), without loading anything."""
        for key in keys:
            self._desired.setdefault(key.name, set()).add(key.version)
        self._labels = {name: dict(m) for name, m in labels.items()}
        self._changed()

    def add(self, key: ModelKey) -> int:
        """Ask for ``key`` to be loaded; returns the generation to pass to ``wait_available``."""
        self._desired.setdefault(key.name, set()).add(key.version)
        return self._changed()

    def remove(self, key: ModelKey) -> int:
        versions = self._desired.get(key.name, set())
        versions.discard(key.version)
        if not versions:
            self._desired.pop(key.name, None)
        labels = self._labels.get(key.name, {})
        for label in [label for label, version in labels.items() if version == key.version]:
            del labels[label]
        return self._changed()

    def set_labels(self, name: str, labels: Mapping[str, int]) -> None:
        """Labels for ``name``; only those naming a desired version are sent (TF Serving's label rule)."""
        wanted = {k: v for k, v in labels.items() if v in self._desired.get(name, set())}
        if wanted != self._labels.get(name, {}):
            self._labels[name] = wanted
            self._changed()

    def labels(self, name: str) -> dict[str, int]:
        return dict(self._labels.get(name, {}))

    def _changed(self) -> int:
        self._generation += 1
        self._dirty.set()
        return self._generation

    def build_config(self) -> Any:
        """The whole ``ModelServerConfig`` for the desired set; names with no directory here are left out."""
        config = model_server_config_pb2.ModelServerConfig()
        config.model_config_list.SetInParent()
        for name in sorted(self._desired):
            versions = self._desired[name]
            if not versions:
                continue
            if not (self._local_root / name).is_dir():
                log.error(
                    "base_path_missing model=%s path=%s (left out of the config)",
                    name,
                    self._local_root / name,
                )
                continue
            entry = config.model_config_list.config.add()
            entry.name = name
            entry.base_path = str(self._served_root / name)
            entry.model_platform = "tensorflow"
            entry.model_version_policy.specific.versions.extend(sorted(versions))
            for label, version in sorted(self._labels.get(name, {}).items()):
                if version in versions:
                    entry.version_labels[label] = version
        return config

    # ----- reloads ------------------------------------------------------------------------------

    async def _reload_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            generation = self._generation
            config = self.build_config()
            request = model_management_pb2.ReloadConfigRequest(config=config)
            started = time.monotonic()
            error: ServingError | None = None
            try:
                await self._stub.HandleReloadConfigRequest(request, timeout=self.timeouts.reload_rpc)
            except grpc.aio.AioRpcError as exc:
                error = ServingError(code_of(exc.code().value[0]), exc.details() or "")
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    # A label named a version TF Serving no longer has: drop labels, try again.
                    self._labels.clear()
                    self._dirty.set()
                log.warning(
                    "reload_failed code=%s error=%r models=%d",
                    error.code.name,
                    error.message,
                    len(config.model_config_list.config),
                )
            else:
                log.info(
                    "reload_done models=%d seconds=%.3f",
                    len(config.model_config_list.config),
                    time.monotonic() - started,
                )
            async with self._reloaded:
                self._applied_generation = generation
                self._last_error = error
                self._reloaded.notify_all()

    async def flush(self, timeout: float) -> None:
        """Wait until TF Serving has answered a reload with every change made so far."""
        generation = self._generation
        async with self._reloaded:
            await asyncio.wait_for(
                self._reloaded.wait_for(lambda: self._applied_generation >= generation), timeout
            )

    # ----- status -------------------------------------------------------------------------------

    async def version_states(self, name: str) -> dict[int, VersionState]:
        """TF Serving's status of every version of ``name`` it has seen (empty if none)."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        try:
            response = await self._stub.GetModelStatus(request, timeout=self.timeouts.status_rpc)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return {}
            raise ServingError(
                code_of(exc.code().value[0]), f"TF Serving status of {name} failed: {exc.details()}"
            ) from exc
        return {
            s.version: VersionState(s.version, s.state, s.status.error_code, s.status.error_message)
            for s in response.model_version_status
        }

    async def wait_available(
        self, key: ModelKey, generation: int, before: VersionState | None, timeout: float
    ) -> None:
        """Wait until TF Serving serves ``key``; raise with TF Serving's error if its load failed.

        ``before`` is the version's status before it was added: an END with an error that was already there
        is an old outcome, not this load's, until TF Serving has been seen loading it again or has answered
        the reload that added it.
        """
        deadline = time.monotonic() + timeout
        interval = self.timeouts.poll_first
        fresh = before is None or not before.failed
        while True:
            state = (await self.version_states(key.name)).get(key.version)
            if state is not None:
                if state.state == AVAILABLE:
                    return
                if state.state != END:
                    fresh = True
                elif state.failed and (fresh or self._applied_generation >= generation):
                    raise ServingError(code_of(state.error_code), state.error_message)
            if key.version not in self._desired.get(key.name, set()):
                raise ServingError(
                    Code.ABORTED, f"Load of {key} was cancelled: the model was removed meanwhile"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = state.state_name if state is not None else "not seen"
                raise ServingError(
                    Code.DEADLINE_EXCEEDED,
                    f"{key} did not become available in TF Serving within {timeout:g} s (state: {seen})",
                )
            async with self._reloaded:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reloaded.wait(), min(interval, remaining))
            interval = min(interval * 2, self.timeouts.poll_max)

    async def wait_unloaded(self, key: ModelKey, timeout: float) -> None:
        """Wait until TF Serving no longer holds ``key`` (END, or never seen)."""
        deadline = time.monotonic() + timeout
        interval = self.timeouts.poll_first
        while True:
            state = (await self.version_states(key.name)).get(key.version)
            if state is None or state.state == END:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServingError(
                    Code.DEADLINE_EXCEEDED,
                    f"{key} was not unloaded by TF Serving within {timeout:g} s (state: {state.state_name})",
                )
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 2, self.timeouts.poll_max)
