"""``tfscachectl agent``: the node agent of one TF Serving instance."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from tfscachectl import logs


def agent(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="YAML settings file; TFSCACHE_AGENT_* environment variables override it.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Run the node agent next to one TF Serving: it owns that TF Serving's model config and its local disk
    cache, loads models from the store just in time, and serves its gRPC API (ensure, evict, pin, status,
    residency changes) and Prometheus metrics. Settings: docs/agent.md.

    Example: tfscachectl agent --config /etc/tfscache/agent.yaml

    Example: TFSCACHE_AGENT_STORE=s3://models TFSCACHE_AGENT_CACHE_DIR=/var/cache/tfscache tfscachectl agent
    """
    from tfscachectl.agent.settings import load_settings

    settings = load_settings(config)
    logs.configure()
    from tfscachectl.agent.api.process import run_agent  # imports TensorFlow (TF Serving's protos)

    raise typer.Exit(asyncio.run(run_agent(settings)))
