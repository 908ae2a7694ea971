"""Warm-up requests replayed at load, as TF Serving does (``assets.extra/tf_serving_warmup_requests``).

The file is a TFRecord of ``PredictionLog`` protos. Each record's request is run once against the freshly
loaded model before it becomes AVAILABLE; a failing warm-up request fails the load.
"""

from __future__ import annotations

from typing import Any

from tfscachectl.errors import Code, ServingError
from tfscachectl.tfserving import inference
from tfscachectl.tfserving.servable import LoadedModel

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000


def replay_warmup_requests(model: LoadedModel) -> int:
    """Replay the model's warm-up requests, if it has any; returns how many ran."""
    path = model.path / WARMUP_FILE
    if not path.is_file():
        return 0
    from tensorflow_serving.apis import prediction_log_pb2

    count = 0
    for raw in _records(str(path)):
        if count >= MAX_WARMUP_RECORDS:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}",
            )
        record = prediction_log_pb2.PredictionLog()
        record.ParseFromString(raw)
        _replay(model, record)
        count += 1
    return count


def _records(path: str) -> Any:
    import tensorflow as tf

    try:
        for raw in tf.data.TFRecordDataset(path):
            yield raw.numpy()
    except tf.errors.OpError as exc:
        raise ServingError(
            Code.DATA_LOSS, f"Failed to read warmup requests at {path}: {exc.message}"
        ) from exc


def _replay(model: LoadedModel, record: Any) -> None:
    which = record.WhichOneof("log_type")
    if which == "predict_log":
        inference.predict(model, record.predict_log.request, None)
    elif which == "classify_log":
        inference.classify(model, record.classify_log.request, None)
    elif which == "regress_log":
        inference.regress(model, record.regress_log.request, None)
    elif which == "multi_inference_log":
        inference.multi_inference(model, record.multi_inference_log.request, None)
    else:
        raise ServingError(Code.UNIMPLEMENTED, f"Unsupported log_type for warmup: {which}")
