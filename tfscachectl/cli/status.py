"""``tfscachectl status``: the nodes, the models each one holds, and the cache's totals."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from tfscachectl.cli.admin_client import DEFAULT_ADMIN_URL
from tfscachectl.cli.admin_options import AdminToken, AdminUrl, Output, call_admin
from tfscachectl.cli.output import (
    NONE,
    OutputFormat,
    ago,
    emit,
    fitted,
    human_bytes,
    new_table,
    plural,
    ratio,
    stdout_console,
    used_of,
)

#: Model states in the order a table lists them, per node.
_STATE_ORDER = {"resident": 0, "loading": 1, "unloading": 2, "cached": 3}
_STATE_STYLE = {"resident": "green", "loading": "yellow", "unloading": "yellow", "cached": "dim"}


def node_health(node: Mapping[str, Any]) -> tuple[str, str]:
    """A node's health in a word, and its style: ``ok`` (its agent answers) or ``unreachable``."""
    if not node.get("reachable"):
        return "unreachable", "red"
    return "ok", "green"


def render_status(document: Mapping[str, Any], now: float) -> RenderableType:
    """The nodes table, the models table and the totals line, from ``GET /v1/status``."""
    nodes: list[Mapping[str, Any]] = list(document.get("nodes", []))
    counted = ("HITS", "MISSES", "LOADS", "EVICTIONS")
    table = new_table(
        "NODE",
        "HEALTH",
        "MODELS",
        "MEMORY",
        "DISK CACHE",
        *counted,
        title="Nodes",
        right=counted,
        wrap=("MEMORY", "DISK CACHE"),
    )
    problems: list[Text] = []
    for node in nodes:
        health, style = node_health(node)
        if not node.get("reachable"):
            table.add_row(node["id"], Text(health, style), *([NONE] * 7))
            problems.append(Text(f"{node['id']}: {node.get('error') or health}", style="red"))
            continue
        counters: Mapping[str, int] = node.get("counters", {})
        table.add_row(
            node["id"],
            Text(health, style),
            used_of(node.get("used_models"), node.get("max_models")),
            used_of(node.get("used_bytes"), node.get("max_bytes"), bytes_=True),
            used_of(node.get("disk_used_bytes"), node.get("disk_budget_bytes"), bytes_=True),
            *(str(counters.get(name, 0)) for name in ("hits", "misses", "loads", "evictions")),
        )
    parts: list[RenderableType] = [fitted(table), *problems, render_models(nodes, now), totals_line(document)]
    return Group(*parts)


def render_models(nodes: list[Mapping[str, Any]], now: float) -> RenderableType:
    """Every model of every node: state, version, sizes, last use, hits, loads, pin."""
    rows = [
        (node["id"], model)
        for node in nodes
        for model in sorted(
            node.get("models", []),
            key=lambda m: (_STATE_ORDER.get(m["state"], 9), m["name"], m["version"]),
        )
    ]
    if not rows:
        return Text("No model is loaded or cached on any node.", style="dim")
    table = new_table(
        *("NODE", "MODEL", "VERSION", "STATE", "MEMORY", "DISK", "LAST USE", "HITS", "LOADS", "PINNED"),
        title="Models",
        right=("VERSION", "MEMORY", "DISK", "HITS", "LOADS"),
        wrap=("MEMORY", "DISK", "LAST USE"),
    )
    for node_id, model in rows:
        state = model["state"]
        table.add_row(
            node_id,
            model["name"],
            str(model["version"]),
            Text(state, _STATE_STYLE.get(state, "")),
            human_bytes(model.get("memory_bytes")) if state != "cached" else NONE,
            human_bytes(model.get("disk_bytes")) if model.get("disk_bytes") else NONE,
            ago(model.get("last_used"), now),
            str(model.get("hits", 0)),
            str(model.get("loads", 0)),
            "yes" if model.get("pinned") else "",
        )
    return fitted(table)


def totals_line(document: Mapping[str, Any]) -> Text:
    """``Totals: 12 hits, 3 misses (hit ratio 80.0%), 3 loads, 1 eviction; 2 fast-path routes``."""
    totals: Mapping[str, Any] = document.get("totals", {})
    daemon: Mapping[str, Any] = document.get("daemon", {})
    text = Text("Totals: ", style="bold")
    text.append(
        f"{plural(totals.get('hits', 0), 'hit')}, {plural(totals.get('misses', 0), 'miss', 'misses')} "
        f"(hit ratio {ratio(totals.get('hit_ratio'))}), {plural(totals.get('loads', 0), 'load')}, "
        f"{plural(totals.get('evictions', 0), 'eviction')}; "
        f"{plural(totals.get('resident_models', 0), 'resident model')} on "
        f"{plural(daemon.get('nodes', 0), 'node')}; "
        f"{plural(daemon.get('fast_path_routes', 0), 'fast-path route')}",
        style="",
    )
    return text


def status(
    admin: AdminUrl = DEFAULT_ADMIN_URL, token: AdminToken = None, output: Output = OutputFormat.TABLE
) -> None:
    """Show the cache: every node (health, models and memory used of its capacity, disk cache, counters),
    the models each node holds (state, version, size, last use, hits) and the totals (hit ratio, loads,
    evictions). Asks the daemon's admin API (--admin, or TFSCACHE_ADMIN_URL).

    Hits served by Envoy alone (the fast path) reach the counts within about a second.

    Example: tfscachectl status

    Example: tfscachectl status --admin http://10.0.0.5:18002 --token "$TOKEN" -o json
    """
    document = call_admin(admin, token, lambda client: client.status())
    emit(stdout_console(), document, output, lambda d: render_status(d, time.time()))
