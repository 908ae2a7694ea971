"""``tfscachectl models``: what the model store holds (names, versions, sizes, labels)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from tfscachectl.cli.admin_client import DEFAULT_ADMIN_URL
from tfscachectl.cli.admin_options import AdminToken, AdminUrl, Output, call_admin
from tfscachectl.cli.output import OutputFormat, emit, fitted, human_bytes, new_table, plural, stdout_console


def render_models(document: Mapping[str, Any]) -> RenderableType:
    """One row per model version, from ``GET /v1/models``, and where the listing came from."""
    models: list[Mapping[str, Any]] = list(document.get("models", []))
    versions = sum(len(m.get("versions", [])) for m in models)
    summary = Text(
        f"{plural(len(models), 'model')}, {plural(versions, 'version')} in {document.get('store', '?')} "
        f"(listed by {document.get('node', '?')})",
        style="dim",
    )
    parts: list[RenderableType] = []
    if models:
        table = new_table("MODEL", "VERSION", "SIZE", "LABELS", right=("VERSION", "SIZE"), wrap=("LABELS",))
        for model in models:
            labels: Mapping[str, int] = model.get("labels", {})
            by_version: dict[int, list[str]] = {}
            for label, version in sorted(labels.items()):
                by_version.setdefault(version, []).append(label)
            rows = model.get("versions", []) or [{"version": None, "bytes": None}]
            for index, version in enumerate(rows):
                table.add_row(
                    model["name"] if index == 0 else "",
                    "-" if version["version"] is None else str(version["version"]),
                    human_bytes(version["bytes"]),
                    ", ".join(by_version.get(version["version"], [])),
                )
        parts.append(fitted(table))
    parts.append(summary)
    if document.get("truncated"):
        parts.append(Text("The store holds more models: list more with --limit.", style="yellow"))
    return Group(*parts)


def models(
    limit: Annotated[
        int | None, typer.Option(min=1, help="List at most this many models (default: the agent's, 10,000).")
    ] = None,
    admin: AdminUrl = DEFAULT_ADMIN_URL,
    token: AdminToken = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """List what the model store holds: every model, its versions with their sizes, and its labels. A node
    agent reads the store for the daemon (for S3, a listing per model and version).

    Example: tfscachectl models

    Example: tfscachectl models --limit 100 -o yaml
    """
    document = call_admin(admin, token, lambda client: client.models(limit))
    emit(stdout_console(), document, output, render_models)
