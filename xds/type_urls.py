"""The xDS resource types served over ADS, by type URL, and the order they are pushed in."""

from __future__ import annotations

from typing import Final

LISTENER: Final = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE: Final = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER: Final = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT: Final = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

#: Make before break: clusters before the endpoints that fill them, listeners before the routes they name.
PUSH_ORDER: Final = (CLUSTER, ENDPOINT, LISTENER, ROUTE)

#: Types whose requests name the resources wanted (Envoy asks for listeners and clusters by wildcard).
NAMED: Final = frozenset({ROUTE, ENDPOINT})

SHORT_NAMES: Final = {LISTENER: "LDS", ROUTE: "RDS", CLUSTER: "CDS", ENDPOINT: "EDS"}


def short_name(type_url: str) -> str:
    """``LDS``, ``RDS``, ``CDS``, ``EDS``, or the type URL itself for anything else (for logs)."""
    return SHORT_NAMES.get(type_url, type_url)
