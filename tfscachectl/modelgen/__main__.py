"""``python -m tfscachectl.modelgen ROOT [--tenants N] [--models a,b]``: write a model store tree."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tfscachectl.modelgen.catalog import CATALOG
from tfscachectl.modelgen.store import ModelStoreTree, write_model_store


def model_server_config_text(tree: ModelStoreTree) -> str:
    """A ``--model_config_file`` serving every model of ``tree`` (all versions of multi-version models)."""
    lines = ["model_config_list {"]
    for name in tree.names:
        model = CATALOG.get(name)
        if model is not None and model.testdata_name is None:
            continue  # the broken model would fail the server's start-up
        policy = " model_version_policy { all {} }" if model is not None and len(model.versions) > 1 else ""
        base_path = tree.base_path(name)
        lines.append(
            f'  config {{ name: "{name}" base_path: "{base_path}" model_platform: "tensorflow"{policy} }}'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tfscachectl.modelgen",
        description="Write generated SavedModels as a model store tree.",
    )
    parser.add_argument("root", type=Path, help="the store's root directory (created if missing)")
    parser.add_argument("--tenants", type=int, default=0, help="how many tenant-NNNN models to write")
    parser.add_argument(
        "--models",
        default=",".join(CATALOG),
        help=f"comma-separated catalog models to write (default: all of {', '.join(CATALOG)}; '' for none)",
    )
    parser.add_argument(
        "--model-config",
        type=Path,
        help="also write a text ModelServerConfig serving every written model to this file",
    )
    args = parser.parse_args(argv)
    names = [name for name in args.models.split(",") if name]
    try:
        tree = write_model_store(args.root.resolve(), names, tenant_count=args.tenants)
    except (KeyError, ValueError) as exc:
        parser.error(str(exc.args[0]) if exc.args else str(exc))
    for name in tree.names:
        print(f"{name}\t{tree.base_path(name)}")
    if args.model_config is not None:
        args.model_config.write_text(model_server_config_text(tree))
    return 0


if __name__ == "__main__":
    sys.exit(main())
