"""``counter``: a stateful TF 1 graph, the equivalent of TF Serving's ``saved_model_counter``.

One float reference variable ``counter`` starting at 0, and four predict signatures whose output key is
``output``: ``get_counter`` (no inputs), ``incr_counter`` (+1, no inputs), ``reset_counter`` (= 0, no inputs)
and ``incr_counter_by`` (input ``delta``). Identical requests return different results.
"""

from __future__ import annotations

from pathlib import Path

from tfscachectl.modelgen._tensorflow import import_tensorflow
from tfscachectl.modelgen.signatures import PREDICT_METHOD, signature_def, tensor_info
from tfscachectl.modelgen.tf1_export import Tf1Graph, ref_variable, save_tf1_model

OUTPUT_KEY = "output"


def write_counter(export_dir: Path) -> None:
    """Write one version of ``counter`` (TF 1 graph) into ``export_dir``, which must not exist."""
    tf = import_tensorflow()
    v1 = tf.compat.v1
    with Tf1Graph() as graph:
        counter = ref_variable(0.0, "counter")
        with tf.name_scope("incr_counter_op"):
            incr = v1.assign_add(counter, 1.0)
        delta = v1.placeholder(tf.float32, name="delta", shape=None)
        with tf.name_scope("incr_counter_by_op"):
            incr_by = v1.assign_add(counter, delta)
        with tf.name_scope("reset_counter_op"):
            reset = v1.assign(counter, 0.0)

        def predict(inputs: dict[str, object], output: object) -> object:
            return signature_def(
                {key: tensor_info(tensor) for key, tensor in inputs.items()},
                {OUTPUT_KEY: tensor_info(output)},
                PREDICT_METHOD,
            )

        signatures = {
            "get_counter": predict({}, counter),
            "incr_counter": predict({}, incr),
            "incr_counter_by": predict({"delta": delta}, incr_by),
            "reset_counter": predict({}, reset),
        }
        save_tf1_model(graph, export_dir, signatures)
