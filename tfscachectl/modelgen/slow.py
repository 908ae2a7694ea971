"""``slow``: a tiny TF 1 graph whose requests last as long as the caller asks, for tests of in-flight work.

No variables. One predict signature, ``serving_default``: input ``iterations`` (int64 scalar), output
``count`` (int64 scalar). It runs a ``while_loop`` that many times and returns how many times it ran, so a
request can be made to last seconds (the cost of one iteration depends on the machine: callers time a
short request first and scale).
"""

from __future__ import annotations

from pathlib import Path

from tfscachectl.modelgen._tensorflow import import_tensorflow
from tfscachectl.modelgen.signatures import DEFAULT_SIGNATURE, PREDICT_METHOD, signature_def, tensor_info
from tfscachectl.modelgen.tf1_export import Tf1Graph, save_tf1_model

INPUT_KEY = "iterations"
OUTPUT_KEY = "count"


def write_slow(export_dir: Path) -> None:
    """Write one version of ``slow`` (TF 1 graph) into ``export_dir``, which must not exist."""
    tf = import_tensorflow()
    v1 = tf.compat.v1
    with Tf1Graph() as graph:
        iterations = v1.placeholder(tf.int64, name=INPUT_KEY, shape=[])
        start = tf.constant(0, dtype=tf.int64)
        count = v1.while_loop(lambda i: i < iterations, lambda i: i + 1, [start], back_prop=False)
        count = tf.identity(count, name=OUTPUT_KEY)
        signatures = {
            DEFAULT_SIGNATURE: signature_def(
                {INPUT_KEY: tensor_info(iterations)}, {OUTPUT_KEY: tensor_info(count)}, PREDICT_METHOD
            )
        }
        save_tf1_model(graph, export_dir, signatures)
