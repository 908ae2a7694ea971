"""``tfscachectl serve``: the control daemon."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from tfscachectl import logs


def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="YAML settings file; TFSCACHE_DAEMON_* environment variables override it.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Run the control daemon: Envoy's xDS server (ADS), the ext_proc server that loads models just in time
    on the right node, and Prometheus metrics. Envoy is started separately with envoy/bootstrap.yaml (or by
    tfscachectl up). Settings: docs/daemon.md.

    Example: tfscachectl serve --config /etc/tfscache/daemon.yaml
    """
    from tfscachectl.daemon.settings import load_daemon_settings

    settings = load_daemon_settings(config)
    logs.configure()
    from tfscachectl.daemon.service import run_daemon

    raise typer.Exit(asyncio.run(run_daemon(settings)))
