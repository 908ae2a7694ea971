"""A serving backend process: the bundled TF Serving-compatible one, or the real binary.

The command comes from ``tfscachectl.tfserving.launcher`` (``TFSCACHE_TF_SERVING_BINARY`` picks the real
``tensorflow_model_server``); the flags are ``tensorflow_model_server``'s. Like TF Serving, the backend opens
its ports only after the initial models are loaded, so readiness is "the REST API answers".
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tests.harness.model_config import ModelConfigEntry, write_model_config
from tests.harness.processes import LOOPBACK, ManagedProcess, ProcessRegistry, free_port, wait_until
from tfscachectl.tfserving.launcher import FlagValue, format_flag, serving_backend_command

# TensorFlow's import alone takes seconds; loading the initial models can take tens of seconds.
SERVING_READY_TIMEOUT_S = 90.0
SERVING_PROBE_TIMEOUT_S = 2.0
REPO_ROOT = Path(__file__).resolve().parents[2]
# Asked for when no model is configured: any HTTP answer (a 404 too) means the REST API is up.
PROBE_MODEL = "readiness-probe"


class ServingBackend:
    """One serving backend on free loopback ports (gRPC and REST)."""

    def __init__(
        self,
        registry: ProcessRegistry,
        *,
        model_config_file: Path | None = None,
        model_name: str | None = None,
        model_base_path: Path | str | None = None,
        file_system_poll_wait_seconds: int | None = None,
        extra_flags: Sequence[str] = (),
        probe_model: str | None = None,
        name: str = "serving",
    ) -> None:
        if (model_config_file is None) == (model_base_path is None):
            raise ValueError("give either model_config_file or model_name/model_base_path")
        self.grpc_port = free_port()
        self.rest_port = free_port()
        self.model_config_file = model_config_file
        self.probe_model = probe_model or model_name or PROBE_MODEL
        command = serving_backend_command()
        flags: list[tuple[str, FlagValue]] = [("port", self.grpc_port), ("rest_api_port", self.rest_port)]
        if model_config_file is not None:
            flags.append(("model_config_file", model_config_file))
        else:
            flags += [("model_name", model_name or "default"), ("model_base_path", str(model_base_path))]
        if file_system_poll_wait_seconds is not None:
            flags.append(("file_system_poll_wait_seconds", file_system_poll_wait_seconds))
        if command.bundled:
            # The real binary always listens on every interface; the bundled one can stay on loopback.
            flags.append(("listen_address", LOOPBACK))
        argv = command.argv([*(format_flag(key, value) for key, value in flags), *extra_flags])
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        self.process: ManagedProcess = registry.create(name, argv, env=env, cwd=REPO_ROOT)

    @classmethod
    def with_models(
        cls,
        registry: ProcessRegistry,
        config_dir: Path,
        entries: Iterable[ModelConfigEntry],
        **options: Any,
    ) -> ServingBackend:
        """A backend serving ``entries`` from a config file it writes into ``config_dir``."""
        entries = list(entries)
        config = write_model_config(config_dir / "models.config", entries)
        probe = entries[0].name if entries else None
        return cls(
            registry, model_config_file=config, probe_model=options.pop("probe_model", probe), **options
        )

    @property
    def rest_url(self) -> str:
        return f"http://{LOOPBACK}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    def start(self, timeout: float = SERVING_READY_TIMEOUT_S) -> ServingBackend:
        self.process.start()
        wait_until(
            self.answers, timeout, f"serving backend REST API at {self.rest_url}", process=self.process
        )
        return self

    def stop(self) -> int | None:
        return self.process.stop()

    def answers(self) -> bool:
        """Whether ``GET /v1/models/<probe model>`` gets an HTTP answer (any status)."""
        try:
            with urllib.request.urlopen(
                f"{self.rest_url}/v1/models/{self.probe_model}", timeout=SERVING_PROBE_TIMEOUT_S
            ):
                return True
        except urllib.error.HTTPError as answer:
            answer.close()
            return True

    def model_status(self, name: str) -> Any:
        """The REST model status JSON (raises ``urllib.error.HTTPError`` for a non-200 answer)."""
        with urllib.request.urlopen(
            f"{self.rest_url}/v1/models/{name}", timeout=SERVING_PROBE_TIMEOUT_S
        ) as resp:
            return json.load(resp)
