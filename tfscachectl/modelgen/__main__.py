"""``python -m tfscachectl.modelgen ROOT [--tenants N] [--models a,b]``: write a model store tree."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tfscachectl.modelgen.catalog import CATALOG
from tfscachectl.modelgen.store import write_model_store


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
    args = parser.parse_args(argv)
    names = [name for name in args.models.split(",") if name]
    try:
        tree = write_model_store(args.root.resolve(), names, tenant_count=args.tenants)
    except (KeyError, ValueError) as exc:
        parser.error(str(exc.args[0]) if exc.args else str(exc))
    for name in tree.names:
        print(f"{name}\t{tree.base_path(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
