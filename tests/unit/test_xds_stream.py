"""Per-stream xDS state (ACK, NACK, nonces, names) as a plain class; then the servicer over an in-memory
channel (grpclib's ``ChannelFor``, no socket), playing Envoy's side of the protocol by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from envoy_data_plane.google.rpc import Status
from grpclib.client import Stream
from grpclib.const import Cardinality
from grpclib.testing import ChannelFor

from xds import names, type_urls
from xds.cache import SnapshotCache
from xds.descriptors import read_descriptor_set
from xds.errors import ConfigNotAppliedError, ConfigRejectedError
from xds.resources import build_resources
from xds.server import AdsServer, request_of
from xds.snapshot import Snapshot
from xds.stream import Rejection, Request, RequestKind, StreamState
from xds.view import Address, ClusterView, NodeView, Timeouts

EDS = type_urls.ENDPOINT
CDS = type_urls.CLUSTER
LDS = type_urls.LISTENER
RDS = type_urls.ROUTE
BOTH_NODE_CLUSTERS = frozenset({names.CLUSTER_NODES_REST, names.CLUSTER_NODES_GRPC})


def subscribed(state: StreamState, type_url: str, names_: tuple[str, ...] = ()) -> str:
    """Subscribe to a type and take the first response; returns its nonce."""
    assert state.receive(Request.of(type_url, resource_names=names_)) is RequestKind.SUBSCRIBE
    assert state.needs_response(type_url, "1")
    return state.record_sent(type_url, "1")


# --- StreamState ------------------------------------------------------------------------------------------


def test_first_request_is_owed_a_response_and_then_nothing_until_answered() -> None:
    state = StreamState(stream_id=4)
    assert not state.needs_response(CDS, "1")  # not subscribed
    assert state.receive(Request.of(CDS)) is RequestKind.SUBSCRIBE
    assert state.needs_response(CDS, "1")
    nonce = state.record_sent(CDS, "1")
    assert nonce.startswith("4-")
    # In flight: even a new version waits for Envoy's answer.
    assert not state.needs_response(CDS, "1")
    assert not state.needs_response(CDS, "2")


def test_ack_records_the_version_and_only_a_new_version_is_sent() -> None:
    state = StreamState()
    nonce = subscribed(state, CDS)
    assert state.receive(Request.of(CDS, version_info="1", nonce=nonce)) is RequestKind.ACK
    subscription = state.subscriptions[CDS]
    assert (subscription.sent_version, subscription.acked_version) == ("1", "1")
    assert state.applied(CDS, "1")
    assert not state.needs_response(CDS, "1")
    assert state.needs_response(CDS, "2")
    assert not state.applied(CDS, "2")


def test_nack_keeps_the_error_and_the_rejected_version_is_never_resent() -> None:
    state = StreamState()
    nonce = subscribed(state, RDS, (names.ROUTES_REST,))
    kind = state.receive(
        Request.of(RDS, version_info="", nonce=nonce, resource_names=[names.ROUTES_REST], error="bad regex")
    )
    assert kind is RequestKind.NACK
    subscription = state.subscriptions[RDS]
    assert subscription.rejection == Rejection(rejected_version="1", kept_version="", detail="bad regex")
    assert subscription.acked_version is None
    assert not state.needs_response(RDS, "1")  # no blind retry
    assert state.needs_response(RDS, "2")  # a new snapshot is sent
    second = state.record_sent(RDS, "2")
    state.receive(Request.of(RDS, version_info="2", nonce=second, resource_names=[names.ROUTES_REST]))
    assert subscription.rejection is None
    assert subscription.acked_version == "2"


def test_a_request_answering_an_older_response_is_ignored() -> None:
    state = StreamState()
    first = subscribed(state, EDS, tuple(BOTH_NODE_CLUSTERS))
    state.receive(Request.of(EDS, version_info="1", nonce=first, resource_names=BOTH_NODE_CLUSTERS))
    second = state.record_sent(EDS, "2")
    stale = Request.of(EDS, version_info="1", nonce=first, resource_names=[names.CLUSTER_NODES_REST])
    assert state.receive(stale) is RequestKind.STALE
    subscription = state.subscriptions[EDS]
    assert subscription.resource_names == BOTH_NODE_CLUSTERS
    assert subscription.awaiting_reply
    assert state.receive(
        Request.of(EDS, version_info="2", nonce=second, resource_names=BOTH_NODE_CLUSTERS)
    ) is (RequestKind.ACK)


def test_new_names_are_owed_a_response_even_at_the_same_version() -> None:
    state = StreamState()
    nonce = subscribed(state, EDS, (names.CLUSTER_NODES_REST,))
    assert state.requested_names(EDS) == {names.CLUSTER_NODES_REST}
    state.receive(Request.of(EDS, version_info="1", nonce=nonce, resource_names=BOTH_NODE_CLUSTERS))
    assert state.needs_response(EDS, "1")
    assert state.requested_names(EDS) == BOTH_NODE_CLUSTERS
    state.record_sent(EDS, "1")
    assert not state.subscriptions[EDS].owed


def test_sending_clusters_makes_endpoints_owed_even_at_the_same_version() -> None:
    """A changed cluster warms only when Envoy gets its load assignment again (envoyproxy/envoy#13009)."""
    state = StreamState()
    clusters = subscribed(state, CDS)
    state.receive(Request.of(CDS, version_info="1", nonce=clusters))
    endpoints = subscribed(state, EDS, tuple(BOTH_NODE_CLUSTERS))
    state.receive(Request.of(EDS, version_info="1", nonce=endpoints, resource_names=BOTH_NODE_CLUSTERS))
    assert not state.needs_response(EDS, "1")
    assert state.needs_response(CDS, "2")
    state.record_sent(CDS, "2")
    assert state.needs_response(EDS, "1")
    state.record_sent(EDS, "1")
    assert not state.needs_response(EDS, "1")


def test_wildcard_types_ignore_names() -> None:
    state = StreamState()
    nonce = subscribed(state, LDS)
    assert state.requested_names(LDS) is None
    state.receive(Request.of(LDS, version_info="1", nonce=nonce, resource_names=["whatever"]))
    assert not state.needs_response(LDS, "1")


def test_named_type_with_no_names_gets_nothing_and_counts_as_applied() -> None:
    state = StreamState()
    nonce = subscribed(state, EDS, (names.CLUSTER_NODES_REST,))
    state.receive(Request.of(EDS, version_info="1", nonce=nonce, resource_names=[]))
    assert not state.needs_response(EDS, "2")
    assert state.applied(EDS, "2")


def test_a_request_without_nonce_subscribes_again() -> None:
    state = StreamState()
    subscribed(state, CDS)
    assert state.receive(Request.of(CDS)) is RequestKind.SUBSCRIBE
    assert state.needs_response(CDS, "1")


def test_nonces_are_unique_per_stream() -> None:
    state = StreamState(stream_id=9)
    nonces = {subscribed(state, type_url, ("some-name",)) for type_url in type_urls.PUSH_ORDER}
    assert len(nonces) == 4
    assert {status.type_url for status in state.status()} == set(type_urls.PUSH_ORDER)


def test_request_of_reads_a_discovery_request() -> None:
    message = DiscoveryRequest(
        version_info="3",
        type_url=EDS,
        resource_names=["b", "a"],
        response_nonce="1-7",
        error_detail=Status(code=3, message="no way"),
    )
    assert request_of(message) == Request(EDS, "3", "1-7", frozenset({"a", "b"}), "no way")
    assert request_of(DiscoveryRequest(type_url=EDS, error_detail=Status(code=3))).error
    assert request_of(DiscoveryRequest(type_url=EDS)).error is None


# --- the servicer, with Envoy played by hand over an in-memory channel ------------------------------------

ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
ENVOY_NODE = Node(id="envoy-under-test", cluster="tfscache")
STEP_TIMEOUT_S = 5.0


def make_view(*nodes: NodeView, connect_s: float = 1.0) -> ClusterView:
    return ClusterView(
        nodes=nodes,
        ext_proc=Address("127.0.0.1", 9100),
        rest_listener=Address("127.0.0.1", 8501),
        grpc_listener=Address("127.0.0.1", 8500),
        timeouts=Timeouts(ensure_deadline_s=30.0, request_s=60.0, connect_s=connect_s),
        grpc_descriptors=read_descriptor_set(),
    )


def snapshot(version: str, *nodes: NodeView, connect_s: float = 1.0) -> Snapshot:
    """A snapshot of ``nodes``; another ``connect_s`` changes the clusters."""
    return Snapshot.create(version, build_resources(make_view(*nodes, connect_s=connect_s)).by_type())


NODE_A = NodeView("node-a", Address("127.0.0.1", 18501), Address("127.0.0.1", 18500))
NODE_B = NodeView("node-b", Address("127.0.0.2", 18501), Address("127.0.0.2", 18500))


class FakeEnvoy:
    """Envoy's side of one ADS stream: send requests, receive responses, ACK or NACK them."""

    def __init__(self, stream: Stream[DiscoveryRequest, DiscoveryResponse]) -> None:
        self.stream = stream
        self.first = True

    async def request(
        self, type_url: str, resource_names: frozenset[str] = frozenset(), **fields: object
    ) -> None:
        node = ENVOY_NODE if self.first else None
        self.first = False
        await self.stream.send_message(
            DiscoveryRequest(node=node, type_url=type_url, resource_names=sorted(resource_names), **fields)
        )

    async def response(self) -> DiscoveryResponse:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            message = await self.stream.recv_message()
        assert message is not None
        return message

    async def nothing_more(self) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await self.stream.recv_message()

    async def ack(self, response: DiscoveryResponse, resource_names: frozenset[str] = frozenset()) -> None:
        await self.request(
            response.type_url,
            resource_names,
            version_info=response.version_info,
            response_nonce=response.nonce,
        )


Scenario = Callable[[AdsServer, FakeEnvoy], Awaitable[None]]


def run_with_envoy(cache: SnapshotCache, scenario: Scenario) -> AdsServer:
    """Run ``scenario`` against a servicer on ``cache``; returns the servicer (for its counters)."""
    server = AdsServer(cache)

    async def main() -> None:
        async with ChannelFor([server]) as channel:
            stream = channel.request(
                ADS_METHOD, Cardinality.STREAM_STREAM, DiscoveryRequest, DiscoveryResponse
            )
            async with stream:
                await scenario(server, FakeEnvoy(stream))
                await stream.end()

    asyncio.run(main())
    return server


def test_servicer_sends_each_type_filtered_and_counts_acks() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(snapshot("1", NODE_A))

    async def scenario(server: AdsServer, envoy: FakeEnvoy) -> None:
        await envoy.request(CDS)
        clusters = await envoy.response()
        assert (clusters.type_url, clusters.version_info) == (CDS, "1")
        assert len(clusters.resources) == 5  # the two shared node clusters, ext_proc, node A's own two
        assert clusters.control_plane.identifier == "tfscache"
        await envoy.request(EDS, frozenset({names.CLUSTER_NODES_GRPC}))
        endpoints = await envoy.response()
        (only,) = endpoints.resources
        assert ClusterLoadAssignment.parse(only.value).cluster_name == names.CLUSTER_NODES_GRPC
        await envoy.ack(clusters)
        await envoy.ack(endpoints, frozenset({names.CLUSTER_NODES_GRPC}))
        await envoy.nothing_more()
        (status,) = server.streams()
        assert status.node_id == "envoy-under-test"
        assert {t.type_url: t.acked_version for t in status.types} == {CDS: "1", EDS: "1"}

    server = run_with_envoy(cache, scenario)
    assert server.counters.pushes == {CDS: 1, EDS: 1}
    assert server.counters.acks == {CDS: 1, EDS: 1}
    assert (server.counters.streams_opened, server.counters.streams_open) == (1, 0)


def test_servicer_pushes_only_changed_types_on_a_new_snapshot() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(snapshot("1", NODE_A))

    async def scenario(server: AdsServer, envoy: FakeEnvoy) -> None:
        await envoy.request(CDS)
        await envoy.ack(await envoy.response())
        await envoy.request(EDS, BOTH_NODE_CLUSTERS)
        await envoy.ack(await envoy.response(), BOTH_NODE_CLUSTERS)
        await server.wait_applied(STEP_TIMEOUT_S)
        cache.set_snapshot(snapshot("2", NODE_A, NODE_B))
        # node B brings its own clusters (CDS) and its endpoints in the shared ones (EDS); nothing else
        clusters = await envoy.response()
        assert (clusters.type_url, clusters.version_info, len(clusters.resources)) == (CDS, "2", 7)
        await envoy.ack(clusters)
        pushed = await envoy.response()
        assert (pushed.type_url, pushed.version_info) == (EDS, "2")
        assert len(pushed.resources) == 2
        await envoy.nothing_more()
        waiting = asyncio.create_task(server.wait_applied(STEP_TIMEOUT_S))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await envoy.ack(pushed, BOTH_NODE_CLUSTERS)
        assert (await waiting).version == "2"

    server = run_with_envoy(cache, scenario)
    assert server.counters.pushes == {CDS: 2, EDS: 2}


def test_servicer_records_a_nack_and_does_not_resend_until_a_new_snapshot() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(snapshot("1", NODE_A))

    async def scenario(server: AdsServer, envoy: FakeEnvoy) -> None:
        await envoy.request(CDS)
        first = await envoy.response()
        await envoy.ack(first)
        cache.set_snapshot(snapshot("2", NODE_A, connect_s=2.0))
        second = await envoy.response()
        assert second.version_info == "2"
        await envoy.request(
            CDS,
            version_info="1",
            response_nonce=second.nonce,
            error_detail=Status(code=3, message="bad cluster"),
        )
        await envoy.nothing_more()
        with pytest.raises(ConfigRejectedError, match="bad cluster") as caught:
            await server.wait_applied(STEP_TIMEOUT_S)
        assert (caught.value.node, caught.value.version) == ("envoy-under-test", "2")
        (status,) = server.streams()
        (cds,) = status.types
        assert cds.acked_version == "1"
        assert cds.rejection == Rejection(rejected_version="2", kept_version="1", detail="bad cluster")
        cache.set_snapshot(snapshot("3", NODE_A, connect_s=3.0))
        third = await envoy.response()
        assert third.version_info == "3"
        await envoy.ack(third)
        await server.wait_applied(STEP_TIMEOUT_S)

    server = run_with_envoy(cache, scenario)
    assert server.counters.nacks == {CDS: 1}
    assert server.counters.acks == {CDS: 2}
    assert server.counters.pushes == {CDS: 3}


def test_servicer_waits_for_a_snapshot_before_answering() -> None:
    cache = SnapshotCache()

    async def scenario(server: AdsServer, envoy: FakeEnvoy) -> None:
        await envoy.request(LDS)
        await envoy.nothing_more()
        cache.set_snapshot(snapshot("1"))
        listeners = await envoy.response()
        assert (listeners.type_url, len(listeners.resources)) == (LDS, 2)

    run_with_envoy(cache, scenario)


def test_wait_applied_times_out_when_envoy_does_not_answer() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(snapshot("1"))

    async def scenario(server: AdsServer, envoy: FakeEnvoy) -> None:
        await envoy.request(CDS)
        await envoy.response()
        with pytest.raises(ConfigNotAppliedError, match="snapshot 1"):
            await server.wait_applied(0.1)

    run_with_envoy(cache, scenario)
