"""Signature method names and the pieces TF 1 exporters share to describe a signature."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfscachectl.modelgen._tensorflow import import_tensorflow

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

DEFAULT_SIGNATURE = "serving_default"

# The input and output keys TF Serving's Classify and Regress APIs look for.
CLASSIFY_INPUTS = "inputs"
CLASSIFY_SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"


def tensor_info(tensor: Any, *, declare_shape: bool = True, dtype: Any = None) -> Any:
    """A ``TensorInfo`` for a graph tensor.

    ``declare_shape=False`` leaves the shape unset and ``dtype`` overrides the declared type: very old
    exporters wrote signatures like that, and the equivalents of their models must too.
    """
    tf = import_tensorflow()
    info = tf.compat.v1.saved_model.utils.build_tensor_info(tensor)
    if not declare_shape:
        info.ClearField("tensor_shape")
    if dtype is not None:
        info.dtype = tf.as_dtype(dtype).as_datatype_enum
    return info


def signature_def(inputs: Mapping[str, Any], outputs: Mapping[str, Any], method_name: str) -> Any:
    """A ``SignatureDef`` from ``TensorInfo`` values keyed by input and output key."""
    tf = import_tensorflow()
    return tf.compat.v1.saved_model.signature_def_utils.build_signature_def(
        inputs=dict(inputs), outputs=dict(outputs), method_name=method_name
    )
