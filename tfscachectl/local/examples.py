"""The example models the stack serves when no store is given, generated on first run.

They are TF Serving's test models rebuilt (``half_plus_two``, ``half_plus_three``, ``counter``... but not the
``broken`` or the ``slow`` one) and ``tenant-0001``... ``tenant-NNNN`` (``y = w*x + b``, different weights per
tenant). They are written by ``python -m tfscachectl.modelgen`` in a child process (TensorFlow stays out of
the supervisor) into a scratch directory, which is renamed into place only when it is complete; a record
of what was generated (``.tfscache-examples.json``) lets the next run reuse them, or generate them again when
the number of tenants changed.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tfscachectl.local.child import ChildSpec
from tfscachectl.modelgen.catalog import TESTDATA_EQUIVALENTS
from tfscachectl.modelgen.tenants import tenant_name

RECORD_NAME = ".tfscache-examples.json"


@dataclass(frozen=True, slots=True)
class ExampleModels:
    """Which example models a store directory holds (or should)."""

    tenants: int
    models: tuple[str, ...] = TESTDATA_EQUIVALENTS

    @property
    def first_tenant(self) -> str:
        return tenant_name(1)

    def record_text(self) -> str:
        return json.dumps({"tenants": self.tenants, "models": list(self.models)}) + "\n"


def generated(directory: Path, wanted: ExampleModels) -> bool:
    """Whether ``directory`` holds exactly the ``wanted`` example models, completely written."""
    try:
        record = json.loads((directory / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record == json.loads(wanted.record_text())


def scratch_dir(directory: Path) -> Path:
    """Where the models are written before they are complete."""
    return directory.with_name(f".{directory.name}.partial")


def generation_spec(directory: Path, wanted: ExampleModels, log_path: Path) -> ChildSpec:
    """The child that writes ``wanted`` into the scratch directory of ``directory``."""
    return ChildSpec(
        name="modelgen",
        what="the example model generator",
        argv=(
            sys.executable,
            "-m",
            "tfscachectl.modelgen",
            str(scratch_dir(directory)),
            f"--tenants={wanted.tenants}",
            f"--models={','.join(wanted.models)}",
        ),
        log_path=log_path,
    )


def discard_scratch(directory: Path) -> None:
    shutil.rmtree(scratch_dir(directory), ignore_errors=True)


def install(directory: Path, wanted: ExampleModels) -> None:
    """Move the completed scratch directory into place (replacing older example models), with its record."""
    scratch = scratch_dir(directory)
    (scratch / RECORD_NAME).write_text(wanted.record_text())
    if directory.exists():
        shutil.rmtree(directory)
    scratch.rename(directory)
