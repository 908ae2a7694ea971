"""What the benchmark sends and what the stand-in answers: a small ``half_plus_two`` predict, both protocols.

The request is input ``x`` = [1.0, 2.0, 5.0] on the ``serving_default`` signature; ``half_plus_two``
answers ``y`` = 0.5x + 2 = [2.5, 3.0, 4.5]. REST sends TF Serving's row format (``{"instances": ...}``);
gRPC sends a ``PredictRequest`` in one gRPC message frame (a flag byte for compression, a 4-byte big-endian
length, the serialized message), which is what ``h2load -d FILE`` posts as the body.

The protobuf modules (which import all of TensorFlow) are imported only when a message is built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tensorflow.core.framework import tensor_pb2
    from tensorflow_serving.apis import predict_pb2

MODEL_NAME = "half_plus_two"
MODEL_VERSION = 123
SIGNATURE = "serving_default"
INPUT_NAME = "x"
OUTPUT_NAME = "y"
INPUTS = (1.0, 2.0, 5.0)
PREDICTIONS = (2.5, 3.0, 4.5)
GRPC_PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"
GRPC_CONTENT_TYPE = "application/grpc"
REST_CONTENT_TYPE = "application/json"
_FRAME_LENGTH_BYTES = 4
_UNCOMPRESSED = b"\x00"


def rest_predict_path(model: str = MODEL_NAME, version: int | None = None) -> str:
    """``/v1/models/<model>[/versions/<v>]:predict``."""
    versioned = f"/versions/{version}" if version is not None else ""
    return f"/v1/models/{model}{versioned}:predict"


def rest_predict_body() -> bytes:
    """The REST request body: ``{"instances": [1.0, 2.0, 5.0]}``."""
    return json.dumps({"instances": list(INPUTS)}).encode()


def rest_predict_answer() -> bytes:
    """TF Serving's REST answer to that request: ``{"predictions": [2.5, 3.0, 4.5]}``."""
    return json.dumps({"predictions": list(PREDICTIONS)}).encode()


def _float_tensor(values: tuple[float, ...]) -> tensor_pb2.TensorProto:
    from tensorflow.core.framework import tensor_pb2, types_pb2

    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=values)
    tensor.tensor_shape.dim.add().size = len(values)
    return tensor


def predict_request(model: str = MODEL_NAME, version: int | None = None) -> predict_pb2.PredictRequest:
    """The gRPC ``PredictRequest`` for ``model`` (any version unless ``version``)."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = SIGNATURE
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[INPUT_NAME].CopyFrom(_float_tensor(INPUTS))
    return request


def predict_response(model: str = MODEL_NAME, version: int = MODEL_VERSION) -> predict_pb2.PredictResponse:
    """The ``PredictResponse`` TF Serving gives for that request."""
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    response.model_spec.name = model
    response.model_spec.version.value = version
    response.model_spec.signature_name = SIGNATURE
    response.outputs[OUTPUT_NAME].CopyFrom(_float_tensor(PREDICTIONS))
    return response


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message."""
    return _UNCOMPRESSED + len(message).to_bytes(_FRAME_LENGTH_BYTES, "big") + message


def grpc_predict_body(model: str = MODEL_NAME, version: int | None = None) -> bytes:
    """The gRPC request body: the framed ``PredictRequest``."""
    return grpc_frame(predict_request(model, version).SerializeToString())


def grpc_predict_answer(model: str = MODEL_NAME) -> bytes:
    """The gRPC response body: the framed ``PredictResponse``."""
    return grpc_frame(predict_response(model).SerializeToString())


def predictions_of(response: predict_pb2.PredictResponse) -> tuple[float, ...]:
    """The ``y`` values of a ``PredictResponse`` (empty if it has no ``y``)."""
    if OUTPUT_NAME not in response.outputs:
        return ()
    return tuple(float(value) for value in response.outputs[OUTPUT_NAME].float_val)


@dataclass(frozen=True, slots=True)
class PayloadFiles:
    """Request bodies written to files, as ``h2load -d`` reads them."""

    rest_body: Path
    grpc_body: Path


def write_payloads(directory: Path, model: str = MODEL_NAME) -> PayloadFiles:
    """Write the REST and gRPC request bodies for ``model`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = PayloadFiles(rest_body=directory / f"{model}.json", grpc_body=directory / f"{model}.grpc")
    files.rest_body.write_bytes(rest_predict_body())
    files.grpc_body.write_bytes(grpc_predict_body(model))
    return files
