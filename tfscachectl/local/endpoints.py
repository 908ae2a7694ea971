"""What the stack prints when it is ready: its endpoints and commands a user can paste to call a model."""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

#: The inputs of the printed examples; the example models all take a float vector ``x`` and answer ``y``.
EXAMPLE_INPUTS = (1.0, 2.0)
EXAMPLE_INPUT_NAME = "x"
EXAMPLE_OUTPUT_NAME = "y"
#: The deadline of the printed gRPC example: a cold model is loaded first.
EXAMPLE_GRPC_TIMEOUT_S = 60


@dataclass(frozen=True, slots=True)
class StackEndpoints:
    """Where clients reach the stack, and where to look at it."""

    host: str
    rest_port: int
    grpc_port: int
    admin_address: str | None
    metrics_address: str
    example_model: str | None
    logs_dir: Path
    store: str
    nodes: int
    max_models: int | None
    python: str = sys.executable
    admin_api_address: str | None = None  # the daemon's admin API

    @property
    def admin_api_url(self) -> str | None:
        return None if self.admin_api_address is None else f"http://{self.admin_api_address}"

    def status_command(self, default_url: str) -> str:
        """``tfscachectl status`` (the console script next to this Python when there is one), with
        ``--admin`` when the admin API is not at ``default_url``."""
        script = Path(self.python).with_name("tfscachectl")
        program = shlex.quote(_short_path(str(script))) if script.is_file() else "tfscachectl"
        url = self.admin_api_url
        return f"{program} status" if url in (None, default_url) else f"{program} status --admin {url}"

    @property
    def client_host(self) -> str:
        """The address a client on this machine uses (the wildcard address means loopback)."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)

    @property
    def rest_url(self) -> str:
        host = f"[{self.client_host}]" if ":" in self.client_host else self.client_host
        return f"http://{host}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        host = f"[{self.client_host}]" if ":" in self.client_host else self.client_host
        return f"{host}:{self.grpc_port}"

    def curl_command(self, model: str | None = None) -> str:
        """``curl -d '{"instances": [1.0, 2.0]}' http://.../v1/models/<model>:predict``."""
        name = model or self.example_model or "MODEL"
        body = json.dumps({"instances": list(EXAMPLE_INPUTS)})
        return f"curl -d {shlex.quote(body)} {self.rest_url}/v1/models/{name}:predict"

    def grpc_python_command(self, model: str | None = None) -> str:
        """A ``python -c`` Predict call with TF Serving's own client stubs (``tensorflow_serving.apis``)."""
        name = model or self.example_model or "MODEL"
        program = "; ".join(
            [
                "import grpc, tensorflow as tf",
                "from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc as api",
                "r = predict_pb2.PredictRequest()",
                f"r.model_spec.name = {json.dumps(name)}",
                f"r.inputs[{json.dumps(EXAMPLE_INPUT_NAME)}].CopyFrom("
                f"tf.make_tensor_proto({list(EXAMPLE_INPUTS)}, tf.float32))",
                f"stub = api.PredictionServiceStub(grpc.insecure_channel({json.dumps(self.grpc_target)}))",
                f"print(list(stub.Predict(r, timeout={EXAMPLE_GRPC_TIMEOUT_S})"
                f".outputs[{json.dumps(EXAMPLE_OUTPUT_NAME)}].float_val))",
            ]
        )
        return f"{shlex.quote(_short_path(self.python))} -c {shlex.quote(program)}"


def _short_path(program: str) -> str:
    """``program`` relative to the current directory when it is below it (``.venv/bin/python``)."""
    path = Path(program)
    try:
        relative = path.relative_to(Path.cwd())
    except ValueError:
        return program
    return f".{os.sep}{relative}" if relative.parts[:1] != (".",) else str(relative)
