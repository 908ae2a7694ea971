"""Snapshots: one immutable, versioned set of resources of every type, checked for consistency.

A snapshot holds, for each type URL, the resources by name, their version and a digest of their content.
``consistent()`` checks that every name a resource uses is there: the route configurations the listeners
ask RDS for, the load assignments the EDS clusters ask for, the clusters the routes and the ext_proc filter
send to. ``SnapshotCache`` refuses an inconsistent snapshot, so Envoy never sees one.

A type keeps its version across snapshots while its content does not change (``carry_versions``), so a
new snapshot that only adds an endpoint resends EDS and nothing else.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import betterproto2
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration
from envoy_data_plane.google.protobuf import Any

from xds import type_urls
from xds.clusters import eds_names
from xds.errors import InconsistentSnapshotError
from xds.fastpath import EncodedRouteConfiguration
from xds.listeners import grpc_service_clusters, route_config_names
from xds.routes import route_clusters

#: A resource as a snapshot holds it: a message, or a route configuration already serialized.
Resource = betterproto2.Message | EncodedRouteConfiguration


def resource_name(resource: Resource) -> str:
    """The name a resource is requested and referred to by."""
    if isinstance(resource, Listener | RouteConfiguration | Cluster | EncodedRouteConfiguration):
        return resource.name
    if isinstance(resource, ClusterLoadAssignment):
        return resource.cluster_name
    raise TypeError(f"not an xDS resource this server serves: {type(resource).__name__}")


@dataclass(frozen=True, slots=True)
class TypedResources:
    """The resources of one type in a snapshot, by name, packed once for every stream that sends them."""

    type_url: str
    version: str
    resources: Mapping[str, Resource]
    packed: Mapping[str, Any]
    digest: str

    @classmethod
    def create(cls, type_url: str, version: str, resources: Iterable[Resource]) -> TypedResources:
        by_name: dict[str, Resource] = {}
        for resource in resources:
            name = resource_name(resource)
            if not name:
                raise InconsistentSnapshotError(
                    version, [f"a {type_urls.short_name(type_url)} resource has no name"]
                )
            if name in by_name:
                raise InconsistentSnapshotError(
                    version, [f"{type_urls.short_name(type_url)} resource {name!r} appears twice"]
                )
            by_name[name] = resource
        ordered = dict(sorted(by_name.items()))
        digest = hashlib.sha256()
        packed: dict[str, Any] = {}
        for name, resource in ordered.items():
            value = bytes(resource)
            packed[name] = Any(type_url=type_url, value=value)
            for part in (name.encode(), value):
                digest.update(len(part).to_bytes(8, "big"))
                digest.update(part)
        return cls(type_url, version, MappingProxyType(ordered), MappingProxyType(packed), digest.hexdigest())

    def select(self, names: Iterable[str] | None) -> list[Any]:
        """The packed resources named (those that exist), or all of them for ``None`` (a wildcard)."""
        if names is None:
            return list(self.packed.values())
        return [self.packed[name] for name in sorted(set(names)) if name in self.packed]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every resource Envoy gets, at one version; build it with ``Snapshot.create``."""

    version: str
    types: Mapping[str, TypedResources]

    @classmethod
    def create(
        cls, version: str, resources: Mapping[str, Sequence[Resource]], previous: Snapshot | None = None
    ) -> Snapshot:
        """A snapshot of ``resources`` (by type URL); every served type is present, if only empty.

        A type whose resources are the very objects ``previous`` holds (resources are not changed once
        built) is taken from ``previous`` as it is, version included, without serializing them again.
        """
        if not version:
            raise ValueError("a snapshot needs a version")
        unknown = sorted(set(resources) - set(type_urls.PUSH_ORDER))
        if unknown:
            raise ValueError(f"types this server does not serve: {', '.join(unknown)}")
        types = {}
        for type_url in type_urls.PUSH_ORDER:
            given = resources.get(type_url, ())
            earlier = previous.types[type_url] if previous is not None else None
            if earlier is not None and _same_objects(given, earlier.resources.values()):
                types[type_url] = earlier
            else:
                types[type_url] = TypedResources.create(type_url, version, given)
        return cls(version, MappingProxyType(types))

    def version_of(self, type_url: str) -> str:
        return self.types[type_url].version

    def names(self, type_url: str) -> frozenset[str]:
        return frozenset(self.types[type_url].resources)

    def resources(self, type_url: str) -> Mapping[str, Resource]:
        return self.types[type_url].resources

    def carry_versions(self, previous: Snapshot | None) -> Snapshot:
        """This snapshot, where each type whose content equals ``previous``'s keeps ``previous``'s version."""
        if previous is None:
            return self
        types = {
            type_url: (previous.types[type_url] if previous.types[type_url].digest == typed.digest else typed)
            for type_url, typed in self.types.items()
        }
        return Snapshot(self.version, MappingProxyType(types))

    def problems(self) -> list[str]:
        """Every reference to a missing resource, as sentences (empty when consistent)."""
        found: list[str] = []
        routes = self.names(type_urls.ROUTE)
        clusters = self.names(type_urls.CLUSTER)
        endpoints = self.names(type_urls.ENDPOINT)
        for name, packed in self.types[type_urls.LISTENER].packed.items():
            wanted_routes, wanted_clusters = _listener_references(packed.value)
            for wanted in wanted_routes:
                if wanted not in routes:
                    found.append(f"listener {name} uses route configuration {wanted}, which is missing")
            for wanted in wanted_clusters:
                if wanted not in clusters:
                    found.append(f"listener {name} calls cluster {wanted}, which is missing")
        for name, route_config in self.resources(type_urls.ROUTE).items():
            if isinstance(route_config, EncodedRouteConfiguration):
                used = sorted(route_config.clusters)
            else:
                assert isinstance(route_config, RouteConfiguration)
                used = route_clusters(route_config)
            for wanted in used:
                if wanted not in clusters:
                    found.append(f"route configuration {name} sends to cluster {wanted}, which is missing")
        for name, cluster in self.resources(type_urls.CLUSTER).items():
            assert isinstance(cluster, Cluster)
            for wanted in eds_names(cluster):
                if wanted not in endpoints:
                    found.append(f"cluster {name} asks EDS for {wanted}, which is missing")
        return found

    def consistent(self) -> Snapshot:
        """This snapshot, if every resource it refers to is in it; else ``InconsistentSnapshotError``."""
        problems = self.problems()
        if problems:
            raise InconsistentSnapshotError(self.version, problems)
        return self


def _same_objects(given: Sequence[Resource], held: Iterable[Resource]) -> bool:
    """Whether ``given`` are the objects ``held`` (any order): names are unique within a type."""
    by_name = {resource_name(resource): resource for resource in held}
    names = [resource_name(resource) for resource in given]
    return len(set(names)) == len(names) == len(by_name) and all(
        by_name.get(name) is resource for name, resource in zip(names, given, strict=True)
    )


@functools.lru_cache(maxsize=64)
def _listener_references(encoded: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The route configurations and clusters a serialized listener refers to. Unpacking its connection
    managers costs milliseconds, and the listeners rarely change: each publication would pay it again."""
    listener = Listener.parse(encoded)
    return tuple(route_config_names(listener)), tuple(grpc_service_clusters(listener))
