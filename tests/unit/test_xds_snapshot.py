"""Snapshots (immutable, versioned, consistency-checked) and the cache that holds the current one."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys

import pytest
from envoy_data_plane.envoy.config.route.v3 import RouteMatch

from xds import names, type_urls
from xds.cache import SnapshotCache
from xds.descriptors import read_descriptor_set
from xds.errors import InconsistentSnapshotError
from xds.resources import Resources, build_resources
from xds.routes import forward_route
from xds.snapshot import Snapshot
from xds.view import Address, ClusterView, NodeView, Timeouts

DESCRIPTORS = read_descriptor_set()
WAKE_TIMEOUT_S = 5.0
IMPORT_TIMEOUT_S = 60.0


def node(node_id: str, last_octet: int) -> NodeView:
    return NodeView(node_id, Address(f"127.0.0.{last_octet}", 8501), Address(f"127.0.0.{last_octet}", 8500))


def make_view(*nodes: NodeView) -> ClusterView:
    return ClusterView(
        nodes=nodes or (node("node-a", 1),),
        ext_proc=Address("127.0.0.1", 9100),
        rest_listener=Address("127.0.0.1", 8501),
        grpc_listener=Address("127.0.0.1", 8500),
        timeouts=Timeouts(ensure_deadline_s=30.0, request_s=60.0),
        grpc_descriptors=DESCRIPTORS,
    )


def snapshot_of(version: str, resources: Resources) -> Snapshot:
    return Snapshot.create(version, resources.by_type())


@pytest.fixture(scope="module")
def resources() -> Resources:
    return build_resources(make_view())


# --- Snapshot ---------------------------------------------------------------------------------------------


def test_snapshot_holds_every_type_by_name(resources: Resources) -> None:
    snapshot = snapshot_of("1", resources)
    assert list(snapshot.types) == list(type_urls.PUSH_ORDER)
    assert snapshot.names(type_urls.LISTENER) == {names.LISTENER_REST, names.LISTENER_GRPC}
    assert snapshot.names(type_urls.ENDPOINT) == {names.CLUSTER_NODES_REST, names.CLUSTER_NODES_GRPC}
    assert {snapshot.version_of(t) for t in type_urls.PUSH_ORDER} == {"1"}
    packed = snapshot.types[type_urls.CLUSTER].packed[names.CLUSTER_EXT_PROC]
    assert packed.type_url == type_urls.CLUSTER
    assert packed.value == bytes(snapshot.resources(type_urls.CLUSTER)[names.CLUSTER_EXT_PROC])


def test_snapshot_is_immutable(resources: Resources) -> None:
    snapshot = snapshot_of("1", resources)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.version = "2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.types[type_urls.ROUTE] = snapshot.types[type_urls.LISTENER]  # type: ignore[index]


def test_missing_types_are_empty_and_unknown_types_refused(resources: Resources) -> None:
    snapshot = Snapshot.create("1", {type_urls.ENDPOINT: resources.endpoints})
    assert snapshot.names(type_urls.LISTENER) == frozenset()
    with pytest.raises(ValueError, match="does not serve"):
        Snapshot.create("1", {"type.googleapis.com/envoy.config.core.v3.Secret": ()})
    with pytest.raises(ValueError, match="needs a version"):
        Snapshot.create("", resources.by_type())


def test_duplicate_names_are_refused(resources: Resources) -> None:
    with pytest.raises(InconsistentSnapshotError, match="tfscache_rest' appears twice"):
        Snapshot.create("1", {type_urls.LISTENER: [resources.listeners[0], resources.listeners[0]]})


def test_digest_does_not_depend_on_order(resources: Resources) -> None:
    forward = Snapshot.create("1", {type_urls.CLUSTER: resources.clusters})
    backward = Snapshot.create("2", {type_urls.CLUSTER: tuple(reversed(resources.clusters))})
    assert forward.types[type_urls.CLUSTER].digest == backward.types[type_urls.CLUSTER].digest
    assert list(backward.resources(type_urls.CLUSTER)) == sorted(backward.names(type_urls.CLUSTER))


def test_select_filters_to_the_names_asked_for(resources: Resources) -> None:
    endpoints = snapshot_of("1", resources).types[type_urls.ENDPOINT]
    assert len(endpoints.select(None)) == 2
    (only,) = endpoints.select([names.CLUSTER_NODES_GRPC, "not-there"])
    assert only is endpoints.packed[names.CLUSTER_NODES_GRPC]
    assert endpoints.select([]) == []


def test_a_full_build_is_consistent(resources: Resources) -> None:
    snapshot = snapshot_of("1", resources)
    assert snapshot.problems() == []
    assert snapshot.consistent() is snapshot


def test_missing_route_configuration_is_reported(resources: Resources) -> None:
    broken = dataclasses.replace(resources, routes=resources.routes[:1])
    with pytest.raises(InconsistentSnapshotError) as caught:
        snapshot_of("7", broken).consistent()
    assert caught.value.problems == [
        "listener tfscache_grpc uses route configuration tfscache_grpc, which is missing"
    ]
    assert "snapshot 7 is inconsistent" in str(caught.value)


def test_missing_load_assignment_and_clusters_are_reported(resources: Resources) -> None:
    broken = dataclasses.replace(
        resources, clusters=resources.clusters[1:], endpoints=resources.endpoints[:1]
    )
    problems = snapshot_of("1", broken).problems()
    assert problems == [
        "route configuration tfscache_rest sends to cluster tfscache_nodes_rest, which is missing",
        "cluster tfscache_nodes_grpc asks EDS for tfscache_nodes_grpc, which is missing",
    ]


def test_missing_ext_proc_cluster_is_reported(resources: Resources) -> None:
    broken = dataclasses.replace(resources, clusters=resources.clusters[:2])
    assert snapshot_of("1", broken).problems() == [
        "listener tfscache_grpc calls cluster tfscache_ext_proc, which is missing",
        "listener tfscache_rest calls cluster tfscache_ext_proc, which is missing",
    ]


def test_route_to_an_unknown_cluster_is_reported() -> None:
    view = make_view()
    stray = forward_route("stray", RouteMatch(prefix="/x"), "no_such_cluster", view.timeouts, view.retries)
    problems = snapshot_of("1", build_resources(view, rest_routes=[stray])).problems()
    assert problems == [
        "route configuration tfscache_rest sends to cluster no_such_cluster, which is missing"
    ]


def test_unchanged_types_keep_their_version(resources: Resources) -> None:
    first = snapshot_of("1", resources)
    grown = build_resources(make_view(node("node-a", 1), node("node-b", 2)))
    second = snapshot_of("2", grown).carry_versions(first)
    assert second.version == "2"
    # a node has clusters of its own (for fast-path routes to it alone): a new node changes CDS and EDS
    assert second.version_of(type_urls.ENDPOINT) == "2"
    assert second.version_of(type_urls.CLUSTER) == "2"
    for kept in (type_urls.LISTENER, type_urls.ROUTE):
        assert second.version_of(kept) == "1"
        assert second.types[kept] is first.types[kept]
    assert snapshot_of("3", resources).carry_versions(None).version_of(type_urls.LISTENER) == "3"


def test_types_holding_the_same_objects_are_taken_from_the_previous_snapshot(resources: Resources) -> None:
    first = snapshot_of("1", resources)
    grown = build_resources(make_view(node("node-a", 1), node("node-b", 2)))
    mixed = dataclasses.replace(resources, clusters=grown.clusters, endpoints=grown.endpoints)
    second = Snapshot.create("2", mixed.by_type(), previous=first)
    for kept in (type_urls.LISTENER, type_urls.ROUTE):
        assert second.types[kept] is first.types[kept]  # not serialized again
    for changed in (type_urls.CLUSTER, type_urls.ENDPOINT):
        assert second.version_of(changed) == "2"
    # equal but not the same objects: serialized again (and carry_versions keeps the version)
    rebuilt = build_resources(make_view())
    third = Snapshot.create("3", rebuilt.by_type(), previous=first)
    assert third.types[type_urls.LISTENER] is not first.types[type_urls.LISTENER]
    assert third.carry_versions(first).version_of(type_urls.LISTENER) == "1"
    # a resource given twice is still refused, though the previous snapshot held it
    (listener, *_) = resources.listeners
    with pytest.raises(InconsistentSnapshotError, match="appears twice"):
        Snapshot.create("4", {type_urls.LISTENER: [listener, listener]}, previous=first)


# --- SnapshotCache ----------------------------------------------------------------------------------------


def test_cache_stores_consistent_snapshots_with_carried_versions(resources: Resources) -> None:
    cache = SnapshotCache()
    assert cache.snapshot is None
    first = cache.set_snapshot(snapshot_of("1", resources))
    assert cache.snapshot is first
    again = cache.set_snapshot(snapshot_of("2", resources))
    assert again.version == "2"
    assert {again.version_of(t) for t in type_urls.PUSH_ORDER} == {"1"}


def test_cache_refuses_an_inconsistent_snapshot_and_keeps_the_current_one(resources: Resources) -> None:
    cache = SnapshotCache()
    current = cache.set_snapshot(snapshot_of("1", resources))
    broken = dataclasses.replace(resources, endpoints=())
    with pytest.raises(InconsistentSnapshotError):
        cache.set_snapshot(snapshot_of("2", broken))
    assert cache.snapshot is current


def test_watchers_wake_when_the_snapshot_changes(resources: Resources) -> None:
    async def scenario() -> None:
        cache = SnapshotCache()
        first_waiter = asyncio.create_task(cache.next_snapshot(None))
        second_waiter = asyncio.create_task(cache.next_snapshot(None))
        await asyncio.sleep(0)
        assert not first_waiter.done()
        stored = cache.set_snapshot(snapshot_of("1", resources))
        async with asyncio.timeout(WAKE_TIMEOUT_S):
            assert await first_waiter is stored
            assert await second_waiter is stored
            # Already different from what the caller saw: no waiting.
            assert await cache.next_snapshot(None) is stored
        later = asyncio.create_task(cache.next_snapshot(stored))
        await asyncio.sleep(0)
        assert not later.done()
        newer = cache.set_snapshot(snapshot_of("2", resources))
        async with asyncio.timeout(WAKE_TIMEOUT_S):
            assert await later is newer

    asyncio.run(scenario())


def test_the_state_side_never_imports_grpc() -> None:
    """Like go-control-plane's cache: snapshots, the cache and stream state work without any gRPC."""
    probe = (
        "import sys, xds, xds.cache, xds.snapshot, xds.stream, xds.resources\n"
        "assert 'grpclib' not in sys.modules, 'grpclib was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, result.stderr
