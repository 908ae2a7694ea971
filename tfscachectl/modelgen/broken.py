"""A model whose only version cannot be loaded: ``saved_model.pb`` is not a protocol buffer."""

from __future__ import annotations

from pathlib import Path

# Not a valid SavedModel proto: a load fails with a parse error, as with a truncated or corrupted upload.
GARBAGE = b"\xff\xfe this is not a SavedModel \x00\x01\x02\x03" * 4


def write_broken_model(export_dir: Path) -> None:
    """Write a version directory with a garbage ``saved_model.pb`` and an empty ``variables/``."""
    (export_dir / "variables").mkdir(parents=True)
    (export_dir / "saved_model.pb").write_bytes(GARBAGE)
