"""Predict, Classify, Regress, MultiInference and GetModelMetadata on a loaded model, on protos.

Both the gRPC services and the REST API call these; they are synchronous (TensorFlow work) and must run in
an executor. Checks, their order and their messages follow TF Serving's ``predict_util``, ``classifier``,
``regressor``, ``multi_inference`` and ``get_model_metadata_impl``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from tfscachectl.errors import Code, ServingError
from tfscachectl.tfserving.servable import LoadedModel
from tfscachectl.tfserving.tensors import dtype_name, to_ndarray, to_proto_field

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def _apis() -> Any:
    from tensorflow_serving import apis

    return apis


def _signature_name(spec: Any) -> str:
    return str(spec.signature_name) or DEFAULT_SIGNATURE


def _fill_model_spec(target: Any, model: LoadedModel, signature_name: str) -> None:
    target.name = model.id.name
    target.signature_name = signature_name
    target.version.value = model.id.version


def _joined(keys: Iterable[str]) -> str:
    return ",".join(sorted(keys))


# ----- Predict -------------------------------------------------------------------------------------


def predict(model: LoadedModel, request: Any, timeout_ms: int | None) -> Any:
    from tensorflow_serving.apis import predict_pb2

    name = _signature_name(request.model_spec)
    signature = model.signatures.get(name)
    if signature is None:
        raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
    inputs, outputs = dict(request.inputs), list(request.output_filter)
    if len(inputs) > len(signature.inputs) or (
        len(inputs) < len(signature.inputs) and not len(signature.defaults)
    ):
        sent, wanted = set(inputs), set(signature.inputs)
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"input size does not match signature: {len(inputs)}!={len(wanted)} len({{{_joined(sent)}}}) "
            f"!= len({{{_joined(wanted)}}}). Sent extra: {{{_joined(sent - wanted)}}}. "
            f"Missing but required: {{{_joined(wanted - sent)}}}.",
        )
    feeds: dict[str, Any] = {}
    for index, (alias, tensor) in enumerate(sorted(inputs.items())):
        spec = signature.inputs.get(alias)
        if spec is None:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"input tensor alias not found in signature: {alias}. "
                f"Inputs expected to be in the set {{{_joined(signature.inputs)}}}.",
            )
        if tensor.dtype != spec.dtype:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Expects arg[{index}] to be {dtype_name(spec.dtype)} "
                f"but {dtype_name(tensor.dtype)} is provided",
            )
        feeds[spec.name] = to_ndarray(tensor)
    aliases: list[str] = []
    for alias in outputs:
        if alias not in signature.outputs:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {alias} "
                f"Outputs expected to be in the set {{{_joined(signature.outputs)}}}.",
            )
        if alias in aliases:
            raise ServingError(Code.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}")
        aliases.append(alias)
    if not aliases:
        aliases = sorted(signature.outputs)
    results = model.run(feeds, [signature.outputs[a].name for a in aliases], timeout_ms)
    response = predict_pb2.PredictResponse()
    _fill_model_spec(response.model_spec, model, name)
    for alias, value in zip(aliases, results, strict=True):
        response.outputs[alias].CopyFrom(to_proto_field(value))
    return response


# ----- Classify and Regress ------------------------------------------------------------------------


def _method_checked_signature(
    model: LoadedModel, spec: Any, method: str, kind: str, check_method_name: bool
) -> tuple[str, Any]:
    name = _signature_name(spec)
    signature = model.signatures.get(name)
    if signature is None:
        raise ServingError(Code.INVALID_ARGUMENT, f"No signature was found with the name: {name}")
    if check_method_name and signature.method_name != method:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}",
        )
    return name, signature


def _debug_string(message: Any) -> str:
    from google.protobuf import text_format

    return str(text_format.MessageToString(message))


def serialized_examples(request_input: Any) -> Any:
    """The examples of an ``Input`` as a DT_STRING batch of serialized ``tf.Example``."""
    which = request_input.WhichOneof("kind")
    if which == "example_list":
        examples = [e.SerializeToString() for e in request_input.example_list.examples]
    elif which == "example_list_with_context":
        with_context = request_input.example_list_with_context
        examples = []
        for example in with_context.examples:
            merged = type(with_context.context)()
            merged.CopyFrom(with_context.context)
            merged.MergeFrom(example)
            examples.append(merged.SerializeToString())
    else:
        examples = []
    if not examples:
        raise ServingError(Code.INVALID_ARGUMENT, "Input is empty.")
    return np.array(examples, dtype=object)


def classify(
    model: LoadedModel, request: Any, timeout_ms: int | None, check_method_name: bool = False
) -> Any:
    from tensorflow_serving.apis import classification_pb2

    name, signature = _method_checked_signature(
        model, request.model_spec, CLASSIFY_METHOD, "classification", check_method_name
    )
    response = classification_pb2.ClassificationResponse()
    _fill_model_spec(response.model_spec, model, name)
    response.result.CopyFrom(_classify(model, signature, request.input, timeout_ms))
    return response


def _classify(model: LoadedModel, signature: Any, request_input: Any, timeout_ms: int | None) -> Any:
    from tensorflow_serving.apis import classification_pb2

    if len(signature.inputs) != 1:
        raise ServingError(Code.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise ServingError(
            Code.INVALID_ARGUMENT, f"Expected one or two output Tensors, found {len(signature.outputs)}"
        )
    if "inputs" not in signature.inputs:
        raise ServingError(
            Code.FAILED_PRECONDITION,
            f"No classification inputs found in SignatureDef: {_debug_string(signature)}",
        )
    classes_spec = signature.outputs.get("classes")
    scores_spec = signature.outputs.get("scores")
    if classes_spec is None and scores_spec is None:
        raise ServingError(
            Code.FAILED_PRECONDITION,
            'Expected classification signature outputs to contain at least one of "classes" or "scores". '
            f"Signature was: {_debug_string(signature)}",
        )
    examples = serialized_examples(request_input)
    wanted = [s for s in (classes_spec, scores_spec) if s is not None]
    values = model.run({signature.inputs["inputs"].name: examples}, [s.name for s in wanted], timeout_ms)
    classes = values[0] if classes_spec is not None else None
    scores = values[-1] if scores_spec is not None else None
    count = len(examples)
    for label, tensor, kind in (("classes", classes, "O"), ("scores", scores, "f")):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Expected Tensor shape: [batch_size num_classes] but got {_shape(tensor)}",
            )
        if (kind == "O") != (tensor.dtype.kind in "OSU") or (kind == "f" and tensor.dtype != np.float32):
            expected = "DT_STRING" if kind == "O" else "DT_FLOAT"
            raise ServingError(
                Code.INVALID_ARGUMENT, f"Expected {label} Tensor of {expected}. Got: {tensor.dtype}"
            )
        if tensor.shape[0] != count:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Expected {label} output batch size of {count}. Got: {tensor.shape[0]}",
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            "Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}",
        )
    width = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    result = classification_pb2.ClassificationResult()
    for i in range(count):
        row = result.classifications.add()
        for c in range(width):
            item = row.classes.add()
            if classes is not None:
                item.label = _text(classes[i, c])
            if scores is not None:
                item.score = float(scores[i, c])
    return result


def regress(model: LoadedModel, request: Any, timeout_ms: int | None, check_method_name: bool = False) -> Any:
    from tensorflow_serving.apis import regression_pb2

    name, signature = _method_checked_signature(
        model, request.model_spec, REGRESS_METHOD, "regression", check_method_name
    )
    response = regression_pb2.RegressionResponse()
    _fill_model_spec(response.model_spec, model, name)
    response.result.CopyFrom(_regress(model, signature, request.input, timeout_ms))
    return response


def _regress(model: LoadedModel, signature: Any, request_input: Any, timeout_ms: int | None) -> Any:
    from tensorflow_serving.apis import regression_pb2

    if len(signature.inputs) != 1:
        raise ServingError(Code.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise ServingError(Code.INVALID_ARGUMENT, "Expected one output Tensor.")
    if "inputs" not in signature.inputs:
        raise ServingError(
            Code.FAILED_PRECONDITION,
            f"No regression inputs found in SignatureDef: {_debug_string(signature)}",
        )
    if "outputs" not in signature.outputs:
        raise ServingError(
            Code.FAILED_PRECONDITION,
            f"No regression outputs found in SignatureDef: {_debug_string(signature)}",
        )
    examples = serialized_examples(request_input)
    (values,) = model.run(
        {signature.inputs["inputs"].name: examples}, [signature.outputs["outputs"].name], timeout_ms
    )
    if values.dtype != np.float32:
        raise ServingError(Code.INVALID_ARGUMENT, f"Expected output Tensor of DT_FLOAT.  Got: {values.dtype}")
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise ServingError(
            Code.INVALID_ARGUMENT,
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{_shape(values)}",
        )
    if values.shape[0] != len(examples):
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Input batch size did not match output batch size: {len(examples)} vs. {values.shape[0]}",
        )
    result = regression_pb2.RegressionResult()
    for value in values.reshape(-1):
        result.regressions.add().value = float(value)
    return result


def _shape(array: Any) -> str:
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# ----- MultiInference ------------------------------------------------------------------------------


def multi_inference(
    model: LoadedModel, request: Any, timeout_ms: int | None, check_method_name: bool = False
) -> Any:
    from tensorflow_serving.apis import inference_pb2

    if not request.tasks:
        raise ServingError(Code.INVALID_ARGUMENT, "MultiInferenceRequest must contain at least one task.")
    first = request.tasks[0].model_spec
    seen: set[str] = set()
    response = inference_pb2.MultiInferenceResponse()
    plans = []
    for task in request.tasks:
        spec = task.model_spec
        if spec.name != first.name:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
            )
        name = _signature_name(spec)
        if name in seen:
            raise ServingError(Code.INVALID_ARGUMENT, f"Duplicate evaluation of signature: {name}")
        seen.add(name)
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(Code.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}")
        kind = "classification" if task.method_name == CLASSIFY_METHOD else "regression"
        name, signature = _method_checked_signature(model, spec, task.method_name, kind, check_method_name)
        plans.append((task.method_name, name, signature))
    for method, name, signature in plans:
        result = response.results.add()
        _fill_model_spec(result.model_spec, model, name)
        if method == CLASSIFY_METHOD:
            result.classification_result.CopyFrom(_classify(model, signature, request.input, timeout_ms))
        else:
            result.regression_result.CopyFrom(_regress(model, signature, request.input, timeout_ms))
    return response


# ----- GetModelMetadata ----------------------------------------------------------------------------

SIGNATURE_DEF_FIELD = "signature_def"


def validate_metadata_request(request: Any) -> None:
    """The checks TF Serving makes before it looks the model up."""
    if not request.metadata_field:
        raise ServingError(
            Code.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field"
        )
    for field in request.metadata_field:
        if field != SIGNATURE_DEF_FIELD:
            raise ServingError(Code.INVALID_ARGUMENT, f"Metadata field {field} is not supported")


def get_model_metadata(model: LoadedModel, request: Any) -> Any:
    from tensorflow_serving.apis import get_model_metadata_pb2

    validate_metadata_request(request)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = model.id.name
    response.model_spec.version.value = model.id.version
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, value in model.signatures.items():
        signatures.signature_def[key].CopyFrom(value)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
    return response
