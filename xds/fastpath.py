"""Fast-path routes: each resident model has its own route to the node(s) holding it, ext_proc off.

A route configuration's virtual host finds a request's fast-path route with one lookup in an Envoy matcher
tree, whatever the number of resident models (a list of prefix routes would be tried one by one):

- REST: a prefix map on ``:path``. ``/v1/models/NAME:`` matches ``:predict``, ``:classify`` and ``:regress``
  of the version the cache calls latest; ``/v1/models/NAME/versions/V:`` those of version V. A name holds no
  ``:`` or ``/``, so a key matches that one model only. Status and metadata requests, and labels, take the
  slow path (they are rare and the slow path answers them exactly).
- gRPC: the model is in the body. tfscache's model-key module (``envoy/modules/grpc_model_key.c``, Envoy's
  dynamic-modules filter; :func:`model_key_module_filter`) reads ``model_spec`` from the first message and
  writes a key into the filter state object :data:`MODEL_KEY_STATE`; without it, the ``grpc_field_extraction``
  filter extracts ``model_spec`` and a ``set_filter_state`` filter writes the key from the extracted fields.
  Either clears the route cache, so the route is chosen again, by an exact map on that key. The key is the
  fields as Envoy formats them (JSON lists): ``["NAME"]|[]|[]`` for the latest version, ``["NAME"]|["V"]|[]``
  for version V; a request naming a label never matches.

Anything not in the map takes the default route, through ext_proc (the slow path). Only names made of
letters, digits, ``.``, ``_`` and ``-`` get fast-path routes: any other name would need escaping in a URL or
in JSON, and is served correctly by the slow path.

The ext_proc filter is off in the chain and on only for the default route. A REST request's route is known
before the filter chain is made, so ext_proc is not even created for a fast-path request. With the module,
the gRPC listener has no ext_proc (its default route leads to an internal listener that has it); without
it, a gRPC request's chain is made for the default route (its key is not known yet), so its fast-path routes
turn ext_proc off explicitly, which ext_proc reads when its turn comes, after the route was chosen again.

A fast-path route to a single holder sends to that node's own cluster (``xds.clusters.single_node_cluster``);
with several holders it is a weighted cluster over the shared node cluster, each entry naming the holders in
the ``x-tfscache-node`` header in a rotated order, so requests spread over the replicas and a retry (the
route's own retry policy) goes to the next one; a route to a single holder retries nothing. Each route has
a stat prefix (:func:`stat_prefix`): Envoy counts its requests as
``vhost.<listener>.route.<prefix>.upstream_rq_completed``, which is how the daemon learns of hits it never
sees (recency).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from envoy_data_plane.envoy.config.core.v3 import AsyncDataSource, DataSource, SubstitutionFormatString
from envoy_data_plane.envoy.config.route.v3 import (
    Route,
    RouteAction,
    RouteMatch,
    WeightedCluster,
    WeightedClusterClusterWeight,
)
from envoy_data_plane.envoy.extensions.dynamic_modules.v3 import DynamicModuleConfig
from envoy_data_plane.envoy.extensions.filters.common.set_filter_state.v3 import FilterStateValue
from envoy_data_plane.envoy.extensions.filters.http.dynamic_modules.v3 import DynamicModuleFilter
from envoy_data_plane.envoy.extensions.filters.http.set_filter_state.v3 import Config as SetFilterStateConfig
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import HttpFilter
from envoy_data_plane.envoy.extensions.matching.common_inputs.network.v3 import FilterStateInput
from envoy_data_plane.envoy.type.matcher.v3 import HttpRequestHeaderMatchInput
from envoy_data_plane.google.protobuf import StringValue
from envoy_data_plane.xds.core.v3 import TypedExtensionConfig as XdsTypedExtensionConfig
from envoy_data_plane.xds.type.matcher.v3 import MatcherOnMatch

from xds import names, wire
from xds.clusters import single_node_cluster_name
from xds.extensions import pack, seconds
from xds.filters import ext_proc_disabled
from xds.routes import retry_policy, set_header
from xds.view import Address

#: The filter state object holding a gRPC request's model key.
MODEL_KEY_STATE: Final = "tfscache.model_key"
FILTER_SET_FILTER_STATE: Final = "envoy.filters.http.set_filter_state"
#: The filter the model-key module registers (``envoy/modules/grpc_model_key.c``).
MODULE_FILTER_NAME: Final = "grpc_model_key"
_FIELDS = names.GRPC_FIELDS_NAMESPACE
#: The gRPC key, from the fields extracted from the request (each a JSON list, ``[]`` when absent).
GRPC_KEY_FORMAT: Final = (
    f"%DYNAMIC_METADATA({_FIELDS}:model_spec.name)%"
    f"|%DYNAMIC_METADATA({_FIELDS}:model_spec.version.value)%"
    f"|%DYNAMIC_METADATA({_FIELDS}:model_spec.version_label)%"
)
_ROUTABLE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_STAT_HASH_CHARS = 16
#: Names whose stat-prefix digest is kept (more than the models any node pool holds at once).
_DIGEST_CACHE_NAMES = 65_536

# Field numbers of the messages encoded by hand (envoy.config.route.v3, xds.type.matcher.v3).
_ROUTE_CONFIGURATION_NAME = 1
_ROUTE_CONFIGURATION_VIRTUAL_HOSTS = 2
_VIRTUAL_HOST_NAME = 1
_VIRTUAL_HOST_DOMAINS = 2
_VIRTUAL_HOST_MATCHER = 21
_MATCHER_TREE = 2
_MATCHER_ON_NO_MATCH = 3
_TREE_INPUT = 1
_TREE_EXACT_MAP = 2
_TREE_PREFIX_MAP = 3
_MATCH_MAP_ENTRIES = 1
_ON_MATCH_MATCHER = 1
_ON_MATCH_ACTION = 2
_EXTENSION_NAME = 1
_EXTENSION_TYPED_CONFIG = 2
_ANY_TYPE_URL = 1
_ANY_VALUE = 2
_ROUTE_STAT_PREFIX = 19
_ROUTE_TYPE_URL: Final = "type.googleapis.com/envoy.config.route.v3.Route"


def routable(name: str) -> bool:
    """Whether ``name`` can have fast-path routes (others always take the slow path)."""
    return _ROUTABLE_NAME.fullmatch(name) is not None


@dataclass(frozen=True, slots=True, order=True)
class FastKey:
    """What a fast-path route serves: a model's version, or (``version`` None) its latest version."""

    name: str
    version: int | None = None

    def __post_init__(self) -> None:
        if not routable(self.name):
            raise ValueError(f"model name {self.name!r} cannot have a fast-path route")

    @property
    def rest_prefix(self) -> str:
        if self.version is None:
            return f"/v1/models/{self.name}:"
        return f"/v1/models/{self.name}/versions/{self.version}:"

    @property
    def grpc_key(self) -> str:
        """The key ``GRPC_KEY_FORMAT`` gives for a request naming this model (and version)."""
        version = "[]" if self.version is None else f'["{self.version}"]'
        return f'["{self.name}"]|{version}|[]'

    @property
    def stat_prefix(self) -> str:
        """The route's stat prefix (:func:`stat_prefix`)."""
        return stat_prefix(self.name, self.version)


def stat_prefix(name: str, version: int | None) -> str:
    """The stat prefix of the route for ``name`` at ``version`` (None: the latest): Envoy-safe whatever the
    name, and the same in every daemon. Cheap to call again (the recency feed maps every route's prefix
    each interval): each name's digest is computed once."""
    return f"fp_{_name_digest(name)}_{'latest' if version is None else version}"


@functools.lru_cache(maxsize=_DIGEST_CACHE_NAMES)
def _name_digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:_STAT_HASH_CHARS]


@dataclass(frozen=True, slots=True)
class FastPathEntry:
    """One fast-path route: the key and the nodes holding it, as REST and gRPC addresses (same order)."""

    key: FastKey
    rest: tuple[Address, ...]
    grpc: tuple[Address, ...]

    def __post_init__(self) -> None:
        if not self.rest or len(self.rest) != len(self.grpc):
            raise ValueError(f"fast-path entry {self.key} needs as many REST as gRPC holders, at least one")


def model_key_filter() -> HttpFilter:
    """The gRPC listener's filter writing :data:`MODEL_KEY_STATE` and clearing the route cache."""
    config = SetFilterStateConfig(
        on_request_headers=[
            FilterStateValue(
                object_key=MODEL_KEY_STATE,
                factory_key="envoy.string",
                format_string=SubstitutionFormatString(
                    text_format_source=DataSource(inline_string=GRPC_KEY_FORMAT)
                ),
            )
        ],
        clear_route_cache=True,
    )
    return HttpFilter(name=FILTER_SET_FILTER_STATE, typed_config=pack(config))


def model_key_module_filter(module_path: str) -> HttpFilter:
    """The gRPC listener's filter when Envoy has tfscache's model-key module at ``module_path``: it reads
    ``model_spec`` from the first request message itself, writes :data:`MODEL_KEY_STATE` (the same key as
    ``GRPC_KEY_FORMAT`` gives) and clears the route cache; ``envoy/modules/grpc_model_key.c``."""
    config = DynamicModuleFilter(
        dynamic_module_config=DynamicModuleConfig(
            module=AsyncDataSource(local=DataSource(filename=module_path)), do_not_close=True
        ),
        filter_name=MODULE_FILTER_NAME,
        filter_config=pack(StringValue(value=MODEL_KEY_STATE)),
    )
    return HttpFilter(name=names.FILTER_GRPC_MODEL_KEY, typed_config=pack(config))


def fast_route(
    key: FastKey,
    cluster: str,
    holders: Sequence[Address],
    request_timeout_s: float,
    retries: int,
    *,
    chosen_late: bool = False,
) -> Route:
    """Straight to ``holders`` (spread over them), ext_proc not involved, counted under the key's prefix.

    With several holders, a failed connection is retried on the next one (``retries`` times at most); with
    one, nothing is retried: there is no other node to try, and a retry policy costs Envoy about 2 µs per
    request (docs/routing.md).

    ``chosen_late``: the route is chosen after the filter chain was made for the default route (gRPC, once
    the model key is known), so ext_proc, enabled by that route, is there and must be told to stand aside.
    """
    action = RouteAction(timeout=seconds(request_timeout_s))
    if len(holders) == 1:
        action.cluster = single_node_cluster_name(cluster, holders[0])
    else:
        if retries > 0:
            action.retry_policy = retry_policy(retries)
        action.weighted_clusters = WeightedCluster(
            clusters=[
                WeightedClusterClusterWeight(
                    name=cluster,
                    weight=1,
                    request_headers_to_add=[set_header(names.NODE_HEADER, _rotated(holders, first))],
                )
                for first in range(len(holders))
            ]
        )
    return Route(
        match=RouteMatch(prefix="/"),
        route=action,
        stat_prefix=key.stat_prefix,
        typed_per_filter_config=ext_proc_disabled() if chosen_late else {},
    )


def _rotated(holders: Sequence[Address], first: int) -> str:
    return ",".join(str(a) for a in [*holders[first:], *holders[:first]])


#: A cached map entry's key: (listener, model key, holders, request timeout, retries).
_EntryKey = tuple[str, FastKey, tuple[Address, ...], float, int]


@dataclass(frozen=True, slots=True)
class EncodedRouteConfiguration:
    """A route configuration serialized by hand (its name, its bytes, the clusters its routes use)."""

    name: str
    payload: bytes
    clusters: frozenset[str]

    def __bytes__(self) -> bytes:
        return self.payload


class FastPathEncoder:
    """Encodes route configurations with fast-path routes, keeping each route's encoded map entry.

    Entries are cached by (listener, key, holders, timeout); an entry whose model left is dropped at the
    next encoding. Not thread-safe: use it from the daemon's event loop.
    """

    def __init__(self) -> None:
        self._entries: dict[_EntryKey, bytes] = {}
        #: (listener, key) -> its entry's cache key in ``_entries``.
        self._current: dict[tuple[str, FastKey], _EntryKey] = {}
        #: A fast route without its stat prefix, serialized, by everything else it depends on: a few,
        #: whatever the number of models (each key's route is its template and its stat prefix).
        self._templates: dict[tuple[str, tuple[Address, ...], float, int, bool], bytes] = {}

    def rest(
        self,
        name: str,
        default: Route,
        entries: Iterable[FastPathEntry],
        request_timeout_s: float,
        retries: int,
    ) -> EncodedRouteConfiguration:
        """The REST configuration: a prefix map on ``:path``, else ``default``."""
        entries = list(entries)
        encoded = [
            self._entry(
                name, e.key.rest_prefix, e.key, names.CLUSTER_NODES_REST, e.rest, request_timeout_s, retries
            )
            for e in entries
        ]
        matcher = _tree(_header_input(":path"), _TREE_PREFIX_MAP, encoded, _action("default", default))
        clusters = {
            *_clusters(default),
            *_holder_clusters(names.CLUSTER_NODES_REST, (e.rest for e in entries)),
        }
        return _configuration(name, matcher, clusters)

    def grpc(
        self,
        name: str,
        default: Route,
        path_routes: dict[str, Route],
        entries: Iterable[FastPathEntry],
        request_timeout_s: float,
        retries: int,
    ) -> EncodedRouteConfiguration:
        """The gRPC configuration: ``path_routes`` (if any) by exact ``:path`` first, then the key map,
        then ``default``."""
        entries = list(entries)
        encoded = [
            self._entry(
                name,
                e.key.grpc_key,
                e.key,
                names.CLUSTER_NODES_GRPC,
                e.grpc,
                request_timeout_s,
                retries,
                chosen_late=True,
            )
            for e in entries
        ]
        by_key = _tree(_state_input(MODEL_KEY_STATE), _TREE_EXACT_MAP, encoded, _action("default", default))
        by_path = [
            wire.map_entry(_MATCH_MAP_ENTRIES, path, _action(route.name, route))
            for path, route in sorted(path_routes.items())
        ]
        matcher = (
            _tree(
                _header_input(":path"),
                _TREE_EXACT_MAP,
                by_path,
                wire.message_field(_ON_MATCH_MATCHER, by_key),
            )
            if by_path
            else by_key
        )
        clusters = {
            *_clusters(default),
            *_holder_clusters(names.CLUSTER_NODES_GRPC, (e.grpc for e in entries)),
        }
        for route in path_routes.values():
            clusters.update(_clusters(route))
        return _configuration(name, matcher, clusters)

    def forget_unused(self, entries: Iterable[FastPathEntry]) -> None:
        """Drop cached entries of keys no longer in ``entries`` (call after encoding both listeners)."""
        entries = list(entries)
        live = {e.key for e in entries}
        for cached in [k for k in self._entries if k[1] not in live]:
            del self._entries[cached]
            del self._current[(cached[0], cached[1])]
        holder_sets = {e.rest for e in entries} | {e.grpc for e in entries}
        for template in [k for k in self._templates if k[1] not in holder_sets]:
            del self._templates[template]

    def _entry(
        self,
        listener: str,
        match: str,
        key: FastKey,
        cluster: str,
        holders: tuple[Address, ...],
        request_timeout_s: float,
        retries: int,
        *,
        chosen_late: bool = False,
    ) -> bytes:
        cache_key = (listener, key, holders, request_timeout_s, retries)
        encoded = self._entries.get(cache_key)
        if encoded is None:
            route = self._route_bytes(
                key, cluster, holders, request_timeout_s, retries, chosen_late=chosen_late
            )
            encoded = wire.map_entry(_MATCH_MAP_ENTRIES, match, _encoded_on_match("fast", route))
            # one holder set per key and listener: a changed set replaces the old entry
            stale = self._current.get((listener, key))
            if stale is not None:
                del self._entries[stale]
            self._entries[cache_key] = encoded
            self._current[(listener, key)] = cache_key
        return encoded

    def _route_bytes(
        self,
        key: FastKey,
        cluster: str,
        holders: tuple[Address, ...],
        request_timeout_s: float,
        retries: int,
        *,
        chosen_late: bool,
    ) -> bytes:
        """``fast_route(key, ...)`` serialized: its template (the route without a stat prefix, encoded
        by betterproto2 once) and the key's stat prefix appended, as protobuf allows: encoding each route
        with betterproto2 made a first build of thousands of routes take seconds."""
        template_key = (cluster, holders, request_timeout_s, retries, chosen_late)
        template = self._templates.get(template_key)
        if template is None:
            route = fast_route(key, cluster, holders, request_timeout_s, retries, chosen_late=chosen_late)
            route.stat_prefix = ""
            template = self._templates[template_key] = bytes(route)
        return template + wire.string_field(_ROUTE_STAT_PREFIX, key.stat_prefix)


def _encoded_on_match(name: str, route: bytes) -> bytes:
    """``_on_match(name, route)`` serialized, from the route's serialized form."""
    packed = wire.string_field(_ANY_TYPE_URL, _ROUTE_TYPE_URL) + wire.message_field(_ANY_VALUE, route)
    action = wire.string_field(_EXTENSION_NAME, name) + wire.message_field(_EXTENSION_TYPED_CONFIG, packed)
    return wire.message_field(_ON_MATCH_ACTION, action)


def _on_match(name: str, route: Route) -> MatcherOnMatch:
    return MatcherOnMatch(action=XdsTypedExtensionConfig(name=name or "route", typed_config=pack(route)))


def _action(name: str, route: Route) -> bytes:
    return bytes(_on_match(name, route))


def _header_input(header: str) -> bytes:
    return bytes(
        XdsTypedExtensionConfig(
            name="header", typed_config=pack(HttpRequestHeaderMatchInput(header_name=header))
        )
    )


def _state_input(key: str) -> bytes:
    return bytes(XdsTypedExtensionConfig(name="filter_state", typed_config=pack(FilterStateInput(key=key))))


def _tree(tree_input: bytes, map_field: int, entries: Sequence[bytes], on_no_match: bytes) -> bytes:
    """A ``Matcher``: ``entries`` in a map on ``tree_input``; ``on_no_match`` (an encoded ``OnMatch``).

    With no entries the matcher is ``on_no_match`` alone (Envoy refuses an empty map).
    """
    fallback = wire.message_field(_MATCHER_ON_NO_MATCH, on_no_match)
    if not entries:
        return fallback
    match_map = b"".join(entries)
    tree = wire.message_field(_TREE_INPUT, tree_input) + wire.message_field(map_field, match_map)
    return wire.message_field(_MATCHER_TREE, tree) + fallback


def _configuration(name: str, matcher: bytes, clusters: set[str]) -> EncodedRouteConfiguration:
    """One virtual host for every domain, finding routes with ``matcher``. Routes carry their own retry
    policies (the virtual host's would apply to every fast-path route, even one with nothing to retry on)."""
    virtual_host = (
        wire.string_field(_VIRTUAL_HOST_NAME, name)
        + wire.string_field(_VIRTUAL_HOST_DOMAINS, "*")
        + wire.message_field(_VIRTUAL_HOST_MATCHER, matcher)
    )
    payload = wire.string_field(_ROUTE_CONFIGURATION_NAME, name)
    payload += wire.message_field(_ROUTE_CONFIGURATION_VIRTUAL_HOSTS, virtual_host)
    return EncodedRouteConfiguration(name, payload, frozenset(clusters))


def _holder_clusters(shared: str, holder_lists: Iterable[tuple[Address, ...]]) -> set[str]:
    """The clusters fast-path routes to these holders use (``fast_route``): the shared one for several
    holders, a node's own for one."""
    distinct = set(holder_lists)  # a few holder sets, shared by thousands of models
    return {
        single_node_cluster_name(shared, holders[0]) if len(holders) == 1 else shared for holders in distinct
    }


def _clusters(route: Route) -> set[str]:
    action = route.route
    if action is None:
        return set()
    found = {action.cluster} if action.cluster else set()
    if action.weighted_clusters is not None:
        found.update(c.name for c in action.weighted_clusters.clusters)
    return found
