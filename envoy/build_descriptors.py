"""Write ``envoy/tfserving_descriptors.pb``: TF Serving's gRPC API as a FileDescriptorSet, for Envoy.

Envoy's ``grpc_field_extraction`` filter reads ``model_spec`` out of gRPC request bodies; it needs the
descriptors of the services and of every message they use. They are taken from the installed
``tensorflow_serving`` pb2 modules (the descriptor pool), so they match the client API exactly:
``prediction_service.proto`` and ``model_service.proto`` with all their dependencies, each file after the
files it imports.

Run it again after upgrading ``tensorflow-serving-api`` and commit the result::

    .venv/bin/python envoy/build_descriptors.py

It imports TensorFlow (through the pb2 modules), so it takes a few seconds.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: The pb2 modules whose services Envoy must know.
SERVICE_MODULES = (
    "tensorflow_serving.apis.prediction_service_pb2",
    "tensorflow_serving.apis.model_service_pb2",
)
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "tfserving_descriptors.pb"


def files_in_dependency_order(roots: Iterable[Any]) -> list[Any]:
    """The root file descriptors and everything they import, each file after its dependencies.

    Files are visited in name order at each level, so the result does not depend on import order.
    """
    ordered: list[Any] = []
    seen: set[str] = set()

    def visit(file: Any) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in sorted(file.dependencies, key=lambda d: d.name):
            visit(dependency)
        ordered.append(file)

    for root in sorted(roots, key=lambda f: f.name):
        visit(root)
    return ordered


def descriptor_set_bytes(module_names: Iterable[str] = SERVICE_MODULES) -> bytes:
    """The serialized FileDescriptorSet of the modules' ``.proto`` files and their dependencies."""
    from google.protobuf import descriptor_pb2

    roots = [importlib.import_module(name).DESCRIPTOR for name in module_names]
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    for file in files_in_dependency_order(roots):
        file.CopyToProto(descriptor_set.file.add())
    result: bytes = descriptor_set.SerializeToString(deterministic=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the set")
    options = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the pb2 modules import TensorFlow
    data = descriptor_set_bytes()
    options.output.write_bytes(data)
    print(f"wrote {options.output} ({len(data)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
