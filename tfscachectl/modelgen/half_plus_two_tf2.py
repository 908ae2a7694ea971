"""``half_plus_two_tf2``: native TF 2 (``tf.saved_model.save`` of a ``tf.Module``).

The equivalent of TF Serving's ``saved_model_half_plus_two_tf2_cpu``: the signatures of ``half_plus_two``
with the same names, keys and values, written the way TF 2 writes them. Every method name is
``tensorflow/serving/predict`` (TF 2 knows no other), ``serving_default`` declares ``x`` with shape ``[1]``,
the ``x2`` signatures take shape ``[1]`` and the tf.Example signatures a string vector.
"""

from __future__ import annotations

from pathlib import Path

from tfscachectl.modelgen._tensorflow import import_tensorflow
from tfscachectl.modelgen.signatures import CLASSIFY_SCORES, REGRESS_OUTPUTS
from tfscachectl.modelgen.tf1_export import ASSET_CONTENT, ASSET_FILENAME, asset_source_dir

A, B, C = 0.5, 2.0, 3.0


def write_half_plus_two_tf2(export_dir: Path) -> None:
    """Write one version of ``half_plus_two_tf2`` into ``export_dir``, which must not exist."""
    tf = import_tensorflow()
    module = tf.Module(name="half_plus_two")
    module.a = tf.Variable(A, name="a")
    module.b = tf.Variable(B, name="b")
    module.c = tf.Variable(C, name="c")

    vector = tf.TensorSpec([1], tf.float32)
    examples = tf.TensorSpec([None], tf.string)

    def parse_x(serialized: object) -> object:
        return tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]

    # TF 2 takes each input key from the argument name: ``x`` for serving_default, ``inputs`` (the key
    # Classify and Regress expect) for the others.
    def serving_default(x: object) -> object:
        return {"y": module.a * x + module.b}

    def regress_x_to_y(inputs: object) -> object:
        return {REGRESS_OUTPUTS: module.a * parse_x(inputs) + module.b}

    def regress_x_to_y2(inputs: object) -> object:
        return {REGRESS_OUTPUTS: module.a * parse_x(inputs) + module.c}

    def regress_x2_to_y3(inputs: object) -> object:
        return {REGRESS_OUTPUTS: module.a * inputs + module.c}

    def classify_x_to_y(inputs: object) -> object:
        return {CLASSIFY_SCORES: module.a * parse_x(inputs) + module.b}

    def classify_x2_to_y3(inputs: object) -> object:
        return {CLASSIFY_SCORES: module.a * inputs + module.c}

    functions = {
        "serving_default": (serving_default, vector),
        "regress_x_to_y": (regress_x_to_y, examples),
        "regress_x_to_y2": (regress_x_to_y2, examples),
        "regress_x2_to_y3": (regress_x2_to_y3, vector),
        "classify_x_to_y": (classify_x_to_y, examples),
        "classify_x2_to_y3": (classify_x2_to_y3, vector),
    }
    signatures = {
        name: tf.function(function, input_signature=[spec]).get_concrete_function()
        for name, (function, spec) in functions.items()
    }
    with asset_source_dir() as scratch:
        source = Path(scratch) / ASSET_FILENAME
        source.write_text(ASSET_CONTENT)
        module.asset = tf.saved_model.Asset(str(source))
        tf.saved_model.save(
            module,
            str(export_dir),
            signatures=signatures,
        )
