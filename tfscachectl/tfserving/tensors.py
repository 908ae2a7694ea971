"""TensorProto <-> numpy, filled as TF Serving fills responses (``AsProtoField``: typed repeated fields)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tfscachectl.errors import Code, ServingError


def _tf() -> Any:
    import tensorflow as tf

    return tf


def dtype_name(dtype_enum: int) -> str:
    """TF's ``DataTypeString``: ``DT_FLOAT`` -> ``float``."""
    from tensorflow.core.framework import types_pb2

    try:
        return str(types_pb2.DataType.Name(dtype_enum))[3:].lower()
    except ValueError:
        return f"unknown dtype enum ({dtype_enum})"


def to_ndarray(proto: Any) -> Any:
    """A numpy array from a TensorProto (any of its encodings)."""
    tf = _tf()
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as exc:
        raise ServingError(Code.INVALID_ARGUMENT, f"Cannot parse tensor from proto: {exc}") from exc


# numpy kind/size -> (DataType enum name, repeated field)
_FIELDS: dict[str, tuple[str, str]] = {
    "float32": ("DT_FLOAT", "float_val"),
    "float64": ("DT_DOUBLE", "double_val"),
    "int32": ("DT_INT32", "int_val"),
    "int16": ("DT_INT16", "int_val"),
    "int8": ("DT_INT8", "int_val"),
    "uint8": ("DT_UINT8", "int_val"),
    "uint16": ("DT_UINT16", "int_val"),
    "int64": ("DT_INT64", "int64_val"),
    "uint32": ("DT_UINT32", "uint32_val"),
    "uint64": ("DT_UINT64", "uint64_val"),
    "bool": ("DT_BOOL", "bool_val"),
    "complex64": ("DT_COMPLEX64", "scomplex_val"),
    "complex128": ("DT_COMPLEX128", "dcomplex_val"),
}


def to_proto_field(array: Any) -> Any:
    """A TensorProto with the values in its typed repeated field, as TF Serving answers Predict."""
    from tensorflow.core.framework import tensor_pb2, types_pb2

    arr = np.asarray(array)
    proto = tensor_pb2.TensorProto()
    for size in arr.shape:
        proto.tensor_shape.dim.add().size = int(size)
    flat = arr.reshape(-1)
    if arr.dtype.kind in ("O", "S", "U"):
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
        return proto
    if arr.dtype == np.float16:
        proto.dtype = types_pb2.DT_HALF
        proto.half_val.extend(int(v) for v in flat.view(np.uint16))
        return proto
    name = arr.dtype.name
    if name not in _FIELDS:
        # bfloat16 and other exotic types: fall back on TensorFlow's own encoding
        return _tf().make_tensor_proto(arr)
    enum_name, field = _FIELDS[name]
    proto.dtype = types_pb2.DataType.Value(enum_name)
    values = getattr(proto, field)
    if field in ("scomplex_val", "dcomplex_val"):
        for v in flat:
            values.extend([float(v.real), float(v.imag)])
    else:
        values.extend(flat.tolist())
    return proto
