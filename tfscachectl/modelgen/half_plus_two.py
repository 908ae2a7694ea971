"""``half_plus_two`` as a TF 1 graph, the equivalent of TF Serving's ``saved_model_half_plus_two_*``.

Variables ``a=0.5``, ``b=2``, ``c=3``; ``y = a*x + b``, ``y2 = a*x + c``, ``y3 = a*x2 + c``. ``x`` and ``x2``
come from serialized ``tf.Example`` protos (float features ``x`` and ``x2``, ``x2`` defaulting to 0) fed to
the string placeholder ``tf_example``; ``x`` and ``x2`` can also be fed directly, which is what Predict on
``serving_default`` and Regress/Classify on the ``x2`` signatures do.

==================  ===========  =================  ==================
signature           method       input              output
==================  ===========  =================  ==================
serving_default     predict      ``x`` float        ``y`` = 0.5x+2
regress_x_to_y      regress      tf.Example         ``outputs`` = 0.5x+2
regress_x_to_y2     regress      tf.Example         ``outputs`` = 0.5x+3
regress_x2_to_y3    regress      ``x2`` float       ``outputs`` = 0.5x2+3
classify_x_to_y     classify     tf.Example         ``scores`` = 0.5x+2
classify_x2_to_y3   classify     ``x2`` float       ``scores`` = 0.5x2+3
==================  ===========  =================  ==================
"""

from __future__ import annotations

from pathlib import Path

from tfscachectl.modelgen._tensorflow import import_tensorflow
from tfscachectl.modelgen.signatures import (
    CLASSIFY_INPUTS,
    CLASSIFY_METHOD,
    CLASSIFY_SCORES,
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    REGRESS_INPUTS,
    REGRESS_METHOD,
    REGRESS_OUTPUTS,
    signature_def,
    tensor_info,
)
from tfscachectl.modelgen.tf1_export import (
    Tf1Graph,
    asset_file_assignment,
    asset_source_dir,
    ref_variable,
    save_tf1_model,
)

A, B, C = 0.5, 2.0, 3.0


def write_half_plus_two(export_dir: Path) -> None:
    """Write one version of ``half_plus_two`` (TF 1 graph) into ``export_dir``, which must not exist."""
    tf = import_tensorflow()
    v1 = tf.compat.v1
    with Tf1Graph() as graph, asset_source_dir() as scratch:
        a = ref_variable(A, "a")
        b = ref_variable(B, "b")
        c = ref_variable(C, "c")
        # Unknown rank, as the original exporter's signatures declare it.
        serialized = v1.placeholder(tf.string, name="tf_example", shape=None)
        features = v1.parse_example(
            serialized,
            {
                "x": v1.FixedLenFeature([1], dtype=tf.float32),
                "x2": v1.FixedLenFeature([1], dtype=tf.float32, default_value=[0.0]),
            },
        )
        x = tf.identity(features["x"], name="x")
        x2 = tf.identity(features["x2"], name="x2")
        for tensor in (x, x2):
            tensor.set_shape([None, 1])
        y = tf.identity(a * x + b, name="y")
        y2 = tf.identity(a * x + c, name="y2")
        y3 = tf.identity(a * x2 + c, name="y3")
        asset_path, assign_asset = asset_file_assignment(Path(scratch))

        def regression(inputs: object, outputs: object) -> object:
            return signature_def(
                {REGRESS_INPUTS: tensor_info(inputs)}, {REGRESS_OUTPUTS: tensor_info(outputs)}, REGRESS_METHOD
            )

        def classification(inputs: object, scores: object) -> object:
            return signature_def(
                {CLASSIFY_INPUTS: tensor_info(inputs)},
                {CLASSIFY_SCORES: tensor_info(scores)},
                CLASSIFY_METHOD,
            )

        signatures = {
            DEFAULT_SIGNATURE: signature_def({"x": tensor_info(x)}, {"y": tensor_info(y)}, PREDICT_METHOD),
            "regress_x_to_y": regression(serialized, y),
            "regress_x_to_y2": regression(serialized, y2),
            "regress_x2_to_y3": regression(x2, y3),
            "classify_x_to_y": classification(serialized, y),
            "classify_x2_to_y3": classification(x2, y3),
        }
        save_tf1_model(graph, export_dir, signatures, assets=[asset_path], main_op=tf.group(assign_asset))
