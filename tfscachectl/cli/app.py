"""``tfscachectl``: the typer application and its entry point."""

from __future__ import annotations

import asyncio
import sys

import typer
from rich.console import Console

from tfscachectl import __version__, logs
from tfscachectl.cli import operate
from tfscachectl.cli.admin_client import AdminError
from tfscachectl.cli.agent import agent as agent_command
from tfscachectl.cli.envoy_bootstrap import envoy_bootstrap as envoy_bootstrap_command
from tfscachectl.cli.models import models as models_command
from tfscachectl.cli.serve import serve as serve_command
from tfscachectl.cli.status import status as status_command
from tfscachectl.cli.up import up as up_command
from tfscachectl.errors import TfsCacheError

app = typer.Typer(
    name="tfscachectl",
    help="tfscache: a model cache and load balancer for TensorFlow Serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_err = Console(stderr=True, soft_wrap=True)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


@app.command(
    "tf-serving",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def tf_serving(ctx: typer.Context) -> None:
    """Run the bundled TF Serving-compatible backend (tensorflow_model_server's flags; --help lists them).

    Example: tfscachectl tf-serving --rest_api_port=8501 --model_name=m --model_base_path=/models/m
    """
    from tfscachectl.tfserving.options import HELP, parse_flags

    if any(a in ("--help", "-h", "--helpfull") for a in ctx.args):
        typer.echo(HELP)
        raise typer.Exit()
    options = parse_flags(list(ctx.args))
    logs.configure()
    from tfscachectl.tfserving.server import serve

    raise typer.Exit(asyncio.run(serve(options)))


app.command("agent")(agent_command)
app.command("serve")(serve_command)
app.command("up")(up_command)
app.command("envoy-bootstrap")(envoy_bootstrap_command)
# the operator commands, against the daemon's admin API
app.command("status")(status_command)
app.command("models")(models_command)
app.command("preload")(operate.preload)
app.command("evict")(operate.evict)
app.command("pin")(operate.pin)
app.command("unpin")(operate.unpin)


def main() -> None:
    try:
        app()
    except AdminError as exc:  # the daemon refused or failed the operation, or cannot be reached
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)
    except TfsCacheError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
