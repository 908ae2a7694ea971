"""The generated models, by name: what each one is, its versions, and the function that writes it."""

from __future__ import annotations

import enum
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from tfscachectl.modelgen.broken import write_broken_model
from tfscachectl.modelgen.counter import write_counter
from tfscachectl.modelgen.half_plus_three import write_half_plus_three
from tfscachectl.modelgen.half_plus_two import write_half_plus_two
from tfscachectl.modelgen.half_plus_two_tf2 import write_half_plus_two_tf2
from tfscachectl.modelgen.slow import write_slow

VersionWriter = Callable[[Path], None]


class VersionNaming(enum.Enum):
    """How version directories are named. TF Serving parses both to the same integer."""

    PADDED = "padded"  # 00000123, as in TF Serving's testdata
    PLAIN = "plain"  # 1

    def directory_name(self, version: int) -> str:
        if version < 0:
            raise ValueError(f"versions are not negative, got {version}")
        return f"{version:08d}" if self is VersionNaming.PADDED else str(version)


@dataclass(frozen=True, slots=True)
class GeneratedModel:
    """A model the generator can write: ``<base_path>/<version>/saved_model.pb ...`` for each version.

    Every version is written once by ``write_version`` and copied, so versions are byte-identical (as in TF
    Serving's two-version testdata, where only the version number tells them apart).
    """

    name: str
    versions: tuple[int, ...]
    write_version: VersionWriter
    description: str
    naming: VersionNaming = VersionNaming.PADDED
    testdata_name: str | None = None  # the TF Serving testdata directory it reproduces

    def version_path(self, base_path: Path, version: int) -> Path:
        return base_path / self.naming.directory_name(version)

    def write(self, base_path: Path) -> tuple[Path, ...]:
        """Write every version under ``base_path`` (created if needed); returns the version directories."""
        base_path.mkdir(parents=True, exist_ok=True)
        first, *others = [self.version_path(base_path, version) for version in self.versions]
        self.write_version(first)
        for path in others:
            shutil.copytree(first, path)
        return (first, *others)


CATALOG: Mapping[str, GeneratedModel] = MappingProxyType(
    {
        model.name: model
        for model in (
            GeneratedModel(
                "half_plus_two",
                (123,),
                write_half_plus_two,
                "TF 1 graph: y = 0.5x + 2, with regress/classify signatures on tf.Example",
                testdata_name="saved_model_half_plus_two_cpu",
            ),
            GeneratedModel(
                "half_plus_two_2_versions",
                (123, 124),
                write_half_plus_two,
                "half_plus_two in two byte-identical versions",
                testdata_name="saved_model_half_plus_two_2_versions",
            ),
            GeneratedModel(
                "half_plus_three",
                (123,),
                write_half_plus_three,
                "TF 1 graph: y = 0.5x + 3, scalar signatures and the old tensorflow/serving/regress",
                testdata_name="saved_model_half_plus_three",
            ),
            GeneratedModel(
                "half_plus_two_tf2",
                (123,),
                write_half_plus_two_tf2,
                "native TF 2 half_plus_two: same signatures, all predict",
                testdata_name="saved_model_half_plus_two_tf2_cpu",
            ),
            GeneratedModel(
                "counter",
                (123,),
                write_counter,
                "TF 1 stateful counter: get/incr/reset/incr_by",
                testdata_name="saved_model_counter",
            ),
            GeneratedModel(
                "broken",
                (1,),
                write_broken_model,
                "a version whose saved_model.pb is garbage: every load fails",
                naming=VersionNaming.PLAIN,
            ),
            GeneratedModel(
                "slow",
                (1,),
                write_slow,
                "TF 1 while_loop run `iterations` times: a request that lasts as long as asked",
                naming=VersionNaming.PLAIN,
            ),
        )
    }
)

# The models equivalent to TF Serving's testdata (not the broken or the slow one).
TESTDATA_EQUIVALENTS: tuple[str, ...] = tuple(
    name for name, model in CATALOG.items() if model.testdata_name is not None
)
