"""``tfscachectl envoy-bootstrap``: Envoy's bootstrap rendered from ``envoy/bootstrap.yaml``, for an Envoy
that tfscache does not start itself (the official image in compose, a sidecar, a VM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tfscachectl.envoy_launcher import (
    DEFAULT_ADMIN_PORT,
    BootstrapSettings,
    render_bootstrap,
    write_bootstrap,
)
from tfscachectl.settings_files import check_host_port

#: The daemon's default ``xds_listen`` port (``tfscachectl.daemon.settings``).
DEFAULT_XDS_PORT = 18000
STDOUT = "-"


def _host_port(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_host_port(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def envoy_bootstrap(
    xds_host: Annotated[
        str,
        typer.Option(
            metavar="HOST",
            help="The daemon's xDS server as Envoy reaches it: an IP address, or a DNS name (a compose "
            "service name), which Envoy resolves itself.",
        ),
    ] = "127.0.0.1",
    xds_port: Annotated[
        int, typer.Option(min=1, max=65535, help="The port of the daemon's xds_listen setting.")
    ] = DEFAULT_XDS_PORT,
    admin_host: Annotated[
        str,
        typer.Option(metavar="IP", help="Where Envoy's admin interface listens (in a container: 0.0.0.0)."),
    ] = "127.0.0.1",
    admin_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Envoy's admin port.")
    ] = DEFAULT_ADMIN_PORT,
    admin_advertise: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            callback=_host_port,
            help="How the daemon reaches Envoy's admin interface to read the fast path's hit counters "
            "(default: --admin-host:--admin-port; needed when that is 0.0.0.0).",
            show_default=False,
        ),
    ] = None,
    node_id: Annotated[str, typer.Option(help="Envoy's node id, as the daemon logs it.")] = "tfscache-envoy",
    output: Annotated[
        str, typer.Option("--output", metavar="FILE", help="Write the YAML to FILE ('-': standard output).")
    ] = STDOUT,
) -> None:
    """Print Envoy's bootstrap: its admin interface and the way to the daemon's xDS server, nothing else (the
    daemon serves the rest over ADS). Start Envoy with it: envoy --config-path FILE.

    Example: tfscachectl envoy-bootstrap --xds-host daemon --admin-host 0.0.0.0 --admin-advertise envoy:9901
    --output envoy.yaml
    """
    settings = BootstrapSettings(
        xds_host=xds_host,
        xds_port=xds_port,
        admin_host=admin_host,
        admin_port=admin_port,
        node_id=node_id,
        admin_advertise=admin_advertise,
    )
    if output == STDOUT:
        typer.echo(render_bootstrap(settings), nl=False)
    else:
        write_bootstrap(settings, Path(output))
