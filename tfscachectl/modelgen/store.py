"""Writing a whole model store: ``<root>/<model>/<version>/saved_model.pb ...``.

The tree is what TF Serving reads from a base path, and what the local-directory and S3 model stores hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tfscachectl.modelgen.catalog import CATALOG
from tfscachectl.modelgen.tenants import tenant_name, write_tenant_range


@dataclass(frozen=True)
class ModelStoreTree:
    """A written model store: its root and the base path of each model in it."""

    root: Path
    base_paths: Mapping[str, Path]

    def base_path(self, name: str) -> Path:
        try:
            return self.base_paths[name]
        except KeyError:
            raise KeyError(f"model {name!r} is not in the store at {self.root}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.base_paths)


def model_store_layout(
    root: Path, models: Iterable[str] | None = None, *, tenant_count: int = 0
) -> ModelStoreTree:
    """Where ``write_model_store`` puts each model, without writing anything.

    Unknown model names raise ``KeyError``.
    """
    names = list(CATALOG) if models is None else list(models)
    unknown = [name for name in names if name not in CATALOG]
    if unknown:
        raise KeyError(f"not in the model catalog: {', '.join(unknown)} (known: {', '.join(CATALOG)})")
    if tenant_count < 0:
        raise ValueError(f"tenant_count must not be negative, got {tenant_count}")
    base_paths = {name: root / name for name in names}
    base_paths.update({tenant_name(n): root / tenant_name(n) for n in range(1, tenant_count + 1)})
    return ModelStoreTree(root=root, base_paths=base_paths)


def write_model_store(
    root: Path, models: Iterable[str] | None = None, *, tenant_count: int = 0
) -> ModelStoreTree:
    """Write catalog models (all of them by default) and tenants 1..``tenant_count`` under ``root``.

    Unknown model names raise ``KeyError`` before anything is written.
    """
    layout = model_store_layout(root, models, tenant_count=tenant_count)
    root.mkdir(parents=True, exist_ok=True)
    for name in layout.names:
        if name in CATALOG:
            CATALOG[name].write(layout.base_path(name))
    if tenant_count:
        write_tenant_range(root, tenant_count)
    return layout
