"""The per-tenant demo models: ``tenant-0001``, ``tenant-0002``... each ``y = w*x + b`` (TF 2 SavedModel).

Each tenant's weights come from its number (``tenant_weights``), so a test can tell which model answered.
``serving_default`` takes ``x`` (float, shape ``[-1]``) and returns ``y``. Writing many is quick: one module
is traced once and saved again with new weights for every tenant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfscachectl.modelgen._tensorflow import import_tensorflow

TENANT_PREFIX = "tenant-"
TENANT_VERSION = 1


@dataclass(frozen=True, slots=True)
class TenantWeights:
    """The weights of one tenant's model: ``y = w*x + b``. Both are exact in float32."""

    w: float
    b: float

    def predict(self, x: float) -> float:
        return self.w * x + self.b


def tenant_name(number: int) -> str:
    """``tenant-0001`` for 1; numbers above 9999 get more digits."""
    if number < 0:
        raise ValueError(f"tenant numbers are not negative, got {number}")
    return f"{TENANT_PREFIX}{number:04d}"


def tenant_number(name: str) -> int:
    """The number in a tenant model's name (``tenant-0042`` -> 42)."""
    if not name.startswith(TENANT_PREFIX) or not name[len(TENANT_PREFIX) :].isdigit():
        raise ValueError(f"not a tenant model name: {name!r}")
    return int(name[len(TENANT_PREFIX) :])


def tenant_weights(number: int) -> TenantWeights:
    """Distinct weights per tenant: ``w = number``, ``b = number / 4`` (exact in float32 below 2**22)."""
    return TenantWeights(w=float(number), b=number / 4)


class TenantExporter:
    """Saves tenant models from one traced module, changing only the weights."""

    def __init__(self) -> None:
        tf = import_tensorflow()
        self._tf = tf
        module = tf.Module(name="tenant")
        module.w = tf.Variable(0.0, name="w")
        module.b = tf.Variable(0.0, name="b")

        def serving_default(x: object) -> object:
            return {"y": module.w * x + module.b}

        function = tf.function(serving_default, input_signature=[tf.TensorSpec([None], tf.float32)])
        module.serving_default = function
        self._module: Any = module
        self._signatures = {"serving_default": function.get_concrete_function()}

    def write(self, number: int, export_dir: Path) -> None:
        """Write tenant ``number``'s model into ``export_dir`` (a version directory that must not exist)."""
        weights = tenant_weights(number)
        self._module.w.assign(weights.w)
        self._module.b.assign(weights.b)
        self._tf.saved_model.save(self._module, str(export_dir), signatures=self._signatures)


def write_tenant_models(root: Path, numbers: Iterable[int]) -> dict[str, Path]:
    """Write ``<root>/tenant-NNNN/1/`` for each number; returns each model's base path by name."""
    exporter = TenantExporter()
    base_paths: dict[str, Path] = {}
    for number in numbers:
        base_path = root / tenant_name(number)
        base_path.mkdir(parents=True, exist_ok=True)
        exporter.write(number, base_path / str(TENANT_VERSION))
        base_paths[tenant_name(number)] = base_path
    return base_paths


def write_tenant_range(root: Path, count: int, first: int = 1) -> dict[str, Path]:
    """Write ``count`` tenant models numbered from ``first``."""
    return write_tenant_models(root, range(first, first + count))
