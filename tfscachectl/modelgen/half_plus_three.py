"""``half_plus_three`` as a TF 1 graph, the equivalent of TF Serving's ``saved_model_half_plus_three``.

``y = a*x + b`` with ``a=0.5``, ``b=3``. Signatures: ``serving_default`` (predict, ``x`` -> ``y``) and an
old-style signature literally named ``tensorflow/serving/regress`` (regress, tf.Example -> ``outputs``).
Like the original file, the signatures declare no shapes (scalars, to a reader of the proto), and the regress
signature declares its serialized-example input as a float although the placeholder holds strings: old
exporters wrote that, TF Serving does not check it, and our equivalent must describe itself the same way.
"""

from __future__ import annotations

from pathlib import Path

from tfscachectl.modelgen._tensorflow import import_tensorflow
from tfscachectl.modelgen.signatures import (
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

A, B, C = 0.5, 3.0, 3.0

# The old signature name, kept because TF Serving still resolves it.
LEGACY_REGRESS_SIGNATURE = "tensorflow/serving/regress"


def write_half_plus_three(export_dir: Path) -> None:
    """Write one version of ``half_plus_three`` (TF 1 graph) into ``export_dir``, which must not exist."""
    tf = import_tensorflow()
    v1 = tf.compat.v1
    with Tf1Graph() as graph, asset_source_dir() as scratch:
        a = ref_variable(A, "a")
        b = ref_variable(B, "b")
        c = ref_variable(C, "c")
        serialized = v1.placeholder(tf.string, name="tf_example", shape=None)
        features = v1.parse_example(serialized, {"x": v1.FixedLenFeature([1], dtype=tf.float32)})
        x = tf.identity(features["x"], name="x")
        y = tf.identity(a * x + b, name="y")
        x2 = v1.placeholder(tf.float32, name="x2", shape=None)
        tf.identity(a * x2 + c, name="y2")
        regress_output = tf.identity(y)
        asset_path, assign_asset = asset_file_assignment(Path(scratch))
        signatures = {
            DEFAULT_SIGNATURE: signature_def(
                {"x": tensor_info(x, declare_shape=False)},
                {"y": tensor_info(y, declare_shape=False)},
                PREDICT_METHOD,
            ),
            LEGACY_REGRESS_SIGNATURE: signature_def(
                {REGRESS_INPUTS: tensor_info(serialized, declare_shape=False, dtype=tf.float32)},
                {REGRESS_OUTPUTS: tensor_info(regress_output, declare_shape=False)},
                REGRESS_METHOD,
            ),
        }
        save_tf1_model(graph, export_dir, signatures, assets=[asset_path], main_op=tf.group(assign_asset))
