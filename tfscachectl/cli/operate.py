"""The commands that change the cache: ``evict``, ``preload``, ``pin`` and ``unpin``.

Each asks the daemon's admin API, prints what every node did (``-o`` as for ``status``) and exits with
status 1 when a node failed. An error of the whole request (an unknown model, a daemon that cannot be
reached, a bad token) is one line and a non-zero status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from tfscachectl.cli.admin_client import DEFAULT_ADMIN_URL, AdminClient, AdminError, AdminTimeouts
from tfscachectl.cli.admin_options import (
    AdminToken,
    AdminUrl,
    Node,
    Output,
    call_admin,
    model_ref,
)
from tfscachectl.cli.output import NONE, OutputFormat, emit, fitted, new_table, stdout_console
from tfscachectl.core.refs import ModelRef

Document = dict[str, Any]

ModelArgument = Annotated[
    str, typer.Argument(metavar="MODEL[:VERSION]", help="A model, and a version (default: the latest).")
]
WAIT_HELP = "Seconds to wait for the daemon's answer (loads included)."


# ----- rendering (pure) ---------------------------------------------------------------------------


def _key(key: Mapping[str, Any] | None) -> str:
    return NONE if not key else f"{key['model']}:{key['version']}"


def _version(key: Mapping[str, Any] | None) -> str:
    return NONE if not key else str(key["version"])


def _result(entry: Mapping[str, Any], done: str) -> Text:
    if entry.get("error"):
        return Text(f"{entry.get('code') or 'ERROR'}: {entry['error']}", style="red")
    return Text(done, style="green")


def render_evicted(document: Mapping[str, Any]) -> RenderableType:
    table = new_table("NODE", "EVICTED", "RESULT", wrap=("EVICTED", "RESULT"))
    for entry in document.get("nodes", []):
        evicted = ", ".join(_key(k) for k in entry.get("evicted", [])) or NONE
        table.add_row(entry["node"], evicted, _result(entry, "unloaded"))
    return fitted(table)


def _skipped(entries: Iterable[Mapping[str, Any]], model: str | None = None) -> list[Text]:
    """Nodes passed over because their agent could not be reached (the next node was used)."""
    where = f" for {model}" if model else ""
    return [Text(f"{e['node']} skipped{where}: {e.get('error')}", style="yellow") for e in entries]


def render_pins(document: Mapping[str, Any]) -> RenderableType:
    done = "pinned" if document.get("pinned") else "unpinned"
    table = new_table("NODE", "VERSION", "RESULT", wrap=("RESULT",))
    for entry in document.get("nodes", []):
        table.add_row(entry["node"], _version(entry.get("key")), _result(entry, done))
    return Group(fitted(table), *_skipped(document.get("skipped", [])))


def render_preloaded(document: Mapping[str, Any]) -> RenderableType:
    table = new_table(
        "MODEL",
        "NODE",
        "VERSION",
        "OUTCOME",
        "SECONDS",
        right=("SECONDS",),
        wrap=("OUTCOME",),
    )
    problems: list[Text] = []
    for model in document.get("models", []):
        name = model["model"] if model.get("version") is None else f"{model['model']}:{model['version']}"
        if model.get("error"):
            problems.append(Text(f"{name}: {model['error']}", style="red"))
            continue
        problems.extend(_skipped(model.get("skipped", []), name))
        for entry in model.get("nodes", []):
            seconds = entry.get("seconds")
            table.add_row(
                name,
                entry["node"],
                _version(entry.get("key")),
                _result(entry, entry.get("outcome") or "done"),
                NONE if seconds is None else f"{seconds:.2f}",
            )
    return Group(fitted(table), *problems)


def failures(entries: Iterable[Mapping[str, Any]]) -> int:
    """How many nodes (or models) failed."""
    return sum(1 for entry in entries if entry.get("error"))


def preload_failures(document: Mapping[str, Any]) -> int:
    """How many models failed, plus the nodes that failed for the others."""
    models: list[Mapping[str, Any]] = document.get("models", [])
    return sum(1 if m.get("error") else failures(m.get("nodes", [])) for m in models)


def _finish(
    document: Mapping[str, Any],
    output: OutputFormat,
    table: Callable[[Mapping[str, Any]], RenderableType],
    failed: int,
) -> None:
    emit(stdout_console(), document, output, table)
    if failed:
        raise typer.Exit(1)


# ----- commands -----------------------------------------------------------------------------------


def evict(
    model: ModelArgument,
    node: Node = None,
    admin: AdminUrl = DEFAULT_ADMIN_URL,
    token: AdminToken = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Unload a model now, on the node given or on every node holding it (all its resident versions, or the
    one named). Its files stay in the nodes' disk caches; the next request loads it again. A pinned model
    is refused: unpin it first.

    Example: tfscachectl evict tenant-0001

    Example: tfscachectl evict tenant-0001:3 --node node-2
    """
    ref = model_ref(model)
    document = call_admin(admin, token, lambda client: client.evict(ref, node))
    _finish(document, output, render_evicted, failures(document.get("nodes", [])))


def pin(
    model: ModelArgument,
    node: Node = None,
    admin: AdminUrl = DEFAULT_ADMIN_URL,
    token: AdminToken = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Pin a model version: it is loaded (if it is not) and never evicted until unpinned. On the node given,
    else on the nodes holding the model, else where requests for it go. Pins survive agent restarts.

    Example: tfscachectl pin tenant-0001

    Example: tfscachectl pin tenant-0001:3 --node node-1
    """
    ref = model_ref(model)
    document = call_admin(admin, token, lambda client: client.pin(ref, node))
    _finish(document, output, render_pins, failures(document.get("nodes", [])))


def unpin(
    model: ModelArgument,
    node: Node = None,
    admin: AdminUrl = DEFAULT_ADMIN_URL,
    token: AdminToken = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Unpin a model version: it stays loaded, and the LRU may evict it again. On the node given, else on
    the nodes holding the model.

    Example: tfscachectl unpin tenant-0001
    """
    ref = model_ref(model)
    document = call_admin(admin, token, lambda client: client.unpin(ref, node))
    _finish(document, output, render_pins, failures(document.get("nodes", [])))


def preload(
    models: Annotated[
        list[str],
        typer.Argument(metavar="MODEL[:VERSION]", help="Models, each with a version or not (the latest)."),
    ],
    replicas: Annotated[
        int | None,
        typer.Option(min=1, help="Load each model on this many nodes (default: the daemon's replicas)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until every model is available, or only start.")
    ] = True,
    timeout: Annotated[float, typer.Option(min=1, help=WAIT_HELP)] = AdminTimeouts().wait,
    admin: AdminUrl = DEFAULT_ADMIN_URL,
    token: AdminToken = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Load models before their first request, on the nodes requests for them will go to (replacing a node
    whose agent does not answer by the next one), and wait until they are available, with a progress line
    per model; with --no-wait, only start the loads (an unknown model is then refused before any starts).

    Example: tfscachectl preload tenant-0001 tenant-0002:1

    Example: tfscachectl preload tenant-0042 --replicas 2 --no-wait
    """
    refs = [model_ref(text) for text in models]
    terminal = Console(stderr=True)
    progress = Progress(
        SpinnerColumn(finished_text="•"),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=terminal,
        transient=True,  # replaced by the table of outcomes
        disable=output is not OutputFormat.TABLE or not terminal.is_terminal,
    )

    async def work(client: AdminClient) -> Document:
        return await preload_models(client, refs, replicas, wait, progress)

    document = call_admin(admin, token, work, AdminTimeouts(wait=timeout))
    _finish(document, output, render_preloaded, preload_failures(document))


async def preload_models(
    client: AdminClient, refs: Sequence[ModelRef], replicas: int | None, wait: bool, progress: Progress
) -> Document:
    """Preload ``refs``: without ``wait``, one request that starts every load (an unknown model fails it
    before anything starts); with ``wait``, one request per model, all at once, each shown in ``progress``
    until its model is available. A model that failed has an ``error``; if every one failed, so does this
    (``AdminError``)."""
    if not wait:
        return await client.preload(refs, replicas, wait=False)

    async def ready(ref: ModelRef, task: Any) -> Document:
        try:
            document = await client.preload([ref], replicas, wait=True)
        except AdminError as exc:
            progress.update(task, completed=1, state=f"[red]failed: {exc.message}[/red]")
            answered: list[Document] = exc.document.get("models") or [
                {"model": ref.name, "version": ref.version}
            ]
            return {"nodes": [], **answered[0], "error": exc.message, "code": exc.code}
        model: Document = document["models"][0]
        nodes = ", ".join(entry["node"] for entry in model.get("nodes", []))
        progress.update(task, completed=1, state=f"[green]available[/green] on {nodes}")
        return model

    with progress:
        tasks = [progress.add_task(str(ref), total=1, state="loading") for ref in refs]
        models = await asyncio.gather(*(ready(ref, task) for ref, task in zip(refs, tasks, strict=True)))
    if all(model.get("error") for model in models):
        errors = list(dict.fromkeys(str(model["error"]) for model in models))
        raise AdminError("; ".join(errors), models[0].get("code"), {"models": list(models)})
    return {"wait": True, "replicas": replicas, "models": list(models)}
