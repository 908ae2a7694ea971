"""``tfscachectl up``: the whole local stack in the foreground (see ``tfscachectl.local``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tfscachectl.cli.admin_client import DEFAULT_ADMIN_URL
from tfscachectl.local.endpoints import StackEndpoints

_PORT_HELP = "0: any free port"


class ConsoleReporter:
    """Progress on the way up, the endpoints and example commands once ready, the reason for stopping."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def step(self, message: str) -> None:
        self._console.print(f"[dim]•[/dim] {message}", highlight=False)

    def ready(self, endpoints: StackEndpoints) -> None:
        out = self._console
        capacity = "no limit" if endpoints.max_models is None else f"{endpoints.max_models} models each"
        out.print(
            f"[bold green]tfscache is ready[/bold green]: {endpoints.nodes} node(s), {capacity}, "
            f"models from {endpoints.store}",
            highlight=False,
        )
        rows = [
            ("REST", endpoints.rest_url),
            ("gRPC", endpoints.grpc_target),
            ("metrics", f"http://{endpoints.metrics_address}/metrics"),
            ("admin API", endpoints.admin_api_url or "-"),
            ("Envoy admin", f"http://{endpoints.admin_address}" if endpoints.admin_address else "-"),
            ("logs", str(endpoints.logs_dir)),
        ]
        for name, value in rows:
            out.print(f"  [bold]{name:<12}[/bold]{value}", highlight=False)
        if endpoints.example_model is None:
            out.print("[yellow]The store has no model yet; the examples call MODEL.[/yellow]")
        out.print("A prediction over REST:", highlight=False)
        out.print(endpoints.curl_command(), markup=False, highlight=False)
        out.print("The same over gRPC, with TF Serving's client stubs:", highlight=False)
        out.print(endpoints.grpc_python_command(), markup=False, highlight=False)
        out.print(
            "What the cache holds (also: models, preload, evict, pin; --help on each):", highlight=False
        )
        out.print(endpoints.status_command(DEFAULT_ADMIN_URL), markup=False, highlight=False)
        out.print("[dim]Ctrl-C stops everything.[/dim]", highlight=False)
        out.file.flush()

    def stopping(self, reason: str) -> None:
        self._console.print(f"[dim]•[/dim] {reason}", highlight=False)


def up(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", metavar="FILE", help="YAML file describing the stack.", dir_okay=False
        ),
    ] = None,
    nodes: Annotated[
        int | None, typer.Option(help="Serving backends, each with its node agent (default: 2).")
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(
            help="Serve the models in this directory, in TF Serving's layout (default: the example models).",
            file_okay=False,
        ),
    ] = None,
    store: Annotated[
        str | None, typer.Option(metavar="URL", help="Serve the models of this store: s3://bucket/prefix.")
    ] = None,
    s3_endpoint_url: Annotated[
        str | None, typer.Option(metavar="URL", help="An S3-compatible endpoint for --store (MinIO...).")
    ] = None,
    s3_region: Annotated[str | None, typer.Option(metavar="REGION", help="The S3 region.")] = None,
    max_models: Annotated[
        int | None, typer.Option(help="Models in memory per node (default: 2, small so caching shows).")
    ] = None,
    max_bytes: Annotated[int | None, typer.Option(help="Memory budget per node, in bytes.")] = None,
    disk_bytes: Annotated[int | None, typer.Option(help="Disk cache budget per node, in bytes.")] = None,
    replicas: Annotated[int | None, typer.Option(help="Nodes that serve each model (default: 1).")] = None,
    host: Annotated[
        str | None, typer.Option(help="IP address of the REST and gRPC listeners (default: 127.0.0.1).")
    ] = None,
    rest_port: Annotated[int | None, typer.Option(help="REST port (default: 8501).")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port (default: 8500).")] = None,
    admin_port: Annotated[
        int | None, typer.Option(help=f"Envoy's admin port (default: 9901; {_PORT_HELP}).")
    ] = None,
    xds_port: Annotated[
        int | None, typer.Option(help=f"The daemon's xDS port (default: {_PORT_HELP}).")
    ] = None,
    ext_proc_port: Annotated[
        int | None, typer.Option(help=f"The daemon's ext_proc port (default: {_PORT_HELP}).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help=f"The daemon's /metrics port (default: {_PORT_HELP}).")
    ] = None,
    admin_api_port: Annotated[
        int | None,
        typer.Option(
            help=f"The daemon's admin API port, for tfscachectl status... (default: 18002; {_PORT_HELP})."
        ),
    ] = None,
    node_base_port: Annotated[
        int | None,
        typer.Option(help="Node i (from 0) uses 4 ports from this one + 4*i (default: any free ports)."),
    ] = None,
    example_tenants: Annotated[
        int | None, typer.Option(help="Tenant models generated when no store is given (default: 20).")
    ] = None,
    example_model: Annotated[
        str | None, typer.Option(help="The model the printed examples call (default: the first tenant).")
    ] = None,
    tf_serving_binary: Annotated[
        str | None,
        typer.Option(
            metavar="PROGRAM",
            help="Run this tensorflow_model_server (a path, or a name on PATH), not the bundled backend.",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Example models, logs and run files (default: .tfscache).", file_okay=False),
    ] = None,
) -> None:
    """Run the whole stack on this machine, in the foreground: Envoy, the control daemon, node agents and
    serving backends, on example models generated on first run (or --model-dir, or --store s3://...).
    When everything is ready it prints the endpoints and a curl command to paste; Ctrl-C or SIGTERM stops
    every process. Options override --config; see docs/local-stack.md.

    Example: tfscachectl up --nodes 3 --max-models 4 --rest-port 8601 --grpc-port 8600
    """
    from tfscachectl.local import ChildExitedError, NotReadyError, load_stack_settings, run_local_stack

    options: dict[str, Any] = {
        "nodes": nodes,
        "model_dir": model_dir,
        "store": store,
        "max_models": max_models,
        "max_bytes": max_bytes,
        "disk_bytes": disk_bytes,
        "replicas": replicas,
        "host": host,
        "rest_port": rest_port,
        "grpc_port": grpc_port,
        "admin_port": admin_port,
        "xds_port": xds_port,
        "ext_proc_port": ext_proc_port,
        "metrics_port": metrics_port,
        "admin_api_port": admin_api_port,
        "node_base_port": node_base_port,
        "example_tenants": example_tenants,
        "example_model": example_model,
        "tf_serving_binary": tf_serving_binary,
        "state_dir": state_dir,
    }
    overrides = {key: value for key, value in options.items() if value is not None}
    s3 = {
        key: value for key, value in {"endpoint_url": s3_endpoint_url, "region": s3_region}.items() if value
    }
    if s3:
        overrides["s3"] = s3
    settings = load_stack_settings(config, overrides)
    console = Console(soft_wrap=True)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        stopped = asyncio.run(run_local_stack(settings, ConsoleReporter(console)))
    except (ChildExitedError, NotReadyError) as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False)
        errors.print(f"--- last lines of {exc.log_path} ---\n{exc.log_tail}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    console.print(f"stopped ({stopped.signal_name})", highlight=False)
