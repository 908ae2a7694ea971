"""How the operator commands print what the daemon answered: rich tables, or the document as JSON or YAML.

``-o json`` and ``-o yaml`` print the admin API's document unchanged (for scripts); ``-o table`` renders it
for people. Rendering functions are pure: a document in, a renderable out (no I/O, ``now`` passed in).
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any

import yaml
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

#: Shown for a value that does not apply or is unknown (no limit, never used, unreachable node).
NONE = "-"
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
#: The width tables get when printed into a pipe or a file: no terminal to fit, so wide enough to not wrap.
PIPED_WIDTH = 250


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


def stdout_console() -> Console:
    """A console on stdout: the terminal's width, or (piped, and no ``COLUMNS``) ``PIPED_WIDTH``."""
    console = Console(soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        return Console(soft_wrap=True, width=PIPED_WIDTH)
    return console


def new_table(
    *headers: str, title: str | None = None, right: Collection[str] = (), wrap: Collection[str] = ()
) -> Table:
    """A borderless table (headers in bold) with these columns, ``right`` ones right-aligned. Only the
    ``wrap`` columns may wrap onto more lines on a narrow terminal: once the rows are in, ``fitted`` keeps
    every other column (names, versions, counts) whole."""
    table = Table(
        title=title, title_justify="left", title_style="bold", box=None, pad_edge=False, header_style="bold"
    )
    for header in headers:
        table.add_column(
            header,
            justify="right" if header in right else "left",
            no_wrap=header not in wrap,
        )
    return table


def fitted(table: Table) -> Table:
    """``table`` with every column that does not wrap (see ``new_table``) as wide as its longest cell."""
    for column in table.columns:
        if column.no_wrap:
            cells = [cell if isinstance(cell, Text) else Text(str(cell)) for cell in column.cells]
            column.min_width = max([len(str(column.header)), *(cell.cell_len for cell in cells)])
    return table


def emit(
    console: Console,
    document: Mapping[str, Any],
    output: OutputFormat,
    table: Callable[[Mapping[str, Any]], RenderableType],
) -> None:
    """Print ``document`` as ``output``: ``table`` renders it for the table format."""
    if output is OutputFormat.JSON:
        console.print_json(json.dumps(document), indent=2, highlight=False)
    elif output is OutputFormat.YAML:
        console.print(yaml.safe_dump(dict(document), sort_keys=False).rstrip(), markup=False, highlight=False)
    else:
        console.print(table(document))


def human_bytes(count: int | None) -> str:
    """``1536`` -> ``1.5 KiB``; None -> ``-``."""
    if count is None:
        return NONE
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def used_of(used: int | None, limit: int | None, bytes_: bool = False) -> str:
    """``used / limit`` (``-`` for no limit), in bytes units when ``bytes_``."""
    show = human_bytes if bytes_ else (lambda n: NONE if n is None else str(n))
    return f"{show(used)} / {show(limit)}"


def ago(when: float | None, now: float) -> str:
    """How long before ``now`` the unix time ``when`` was: ``4 s ago``, ``3 min ago``; 0/None: ``never``."""
    if not when:
        return "never"
    seconds = max(0.0, now - when)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def ratio(value: float | None) -> str:
    return NONE if value is None else f"{100 * value:.1f}%"


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else many or word + 's'}"
