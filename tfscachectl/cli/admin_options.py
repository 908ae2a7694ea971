"""What every operator command shares: the admin URL and token options, ``-o``, and running a call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from tfscachectl.cli.admin_client import (
    ADMIN_TOKEN_ENV,
    ADMIN_URL_ENV,
    AdminClient,
    AdminTimeouts,
)
from tfscachectl.cli.output import OutputFormat
from tfscachectl.core.refs import ModelRef

T = TypeVar("T")

AdminUrl = Annotated[
    str,
    typer.Option(
        "--admin",
        envvar=ADMIN_URL_ENV,
        metavar="URL",
        help="The daemon's admin API (its admin_listen setting).",
    ),
]
AdminToken = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=ADMIN_TOKEN_ENV,
        metavar="TOKEN",
        help="The admin API's token (the daemon's admin_token), if it has one.",
        show_default=False,
    ),
]
Output = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", case_sensitive=False, help="How to print the answer."),
]
Node = Annotated[
    str | None,
    typer.Option("--node", metavar="NODE", help="Only on this node (default: every node holding the model)."),
]


def model_ref(text: str) -> ModelRef:
    """``MODEL`` or ``MODEL:VERSION`` as typed on the command line (``ConfigError`` saying what is wrong)."""
    return ModelRef.parse(text.strip())


def call_admin(
    admin: str,
    token: str | None,
    work: Callable[[AdminClient], Awaitable[T]],
    timeouts: AdminTimeouts | None = None,
) -> T:
    """Run ``work`` with a client of the admin API at ``admin``; Ctrl-C ends the command with status 130."""

    async def run() -> T:
        async with AdminClient(admin, token, timeouts) as client:
            return await work(client)

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
