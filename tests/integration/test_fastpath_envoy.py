"""Fast-path routes in a real Envoy: one lookup per request, ext_proc off, spread over holders, counted.

The ADS server runs in this process (``AdsThread`` from the xDS tests). The ext_proc address points at a port
nothing listens on, so a request that takes the slow path fails with a 500: a request that is answered by a
node went by its fast-path route, without ext_proc.
"""

from __future__ import annotations

import json
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import httpx
import pytest

from tests.harness import LOOPBACK, EnvoyProcess, wait_until
from tests.harness.ads import ACK_TIMEOUT_S, AdsThread, Ports
from tests.integration.test_xds_envoy import (
    GRPC_TIMEOUT_S,
    HTTP_TIMEOUT_S,
    make_view,
    predict_request_bytes,
    snapshot,
    start_envoy_on,
)
from tfscachectl.daemon.recency import (
    ROUTE_COUNTER_FILTER,
    in_flight_filter,
    parse_in_flight,
    parse_route_counters,
)
from xds import names, type_urls
from xds.fastpath import FastKey, FastPathEntry
from xds.resources import build_resources
from xds.view import Address, ClusterView, NodeView

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PREDICT = "/tensorflow.serving.PredictionService/Predict"


class Nodes:
    """Two nodes whose REST port echoes (``x-backend`` names the node) and whose gRPC port answers
    ``Predict`` with the node's id."""

    def __init__(self, ads: AdsThread) -> None:
        self.servers: list[grpc.Server] = []
        self.views = [self._node(ads, node_id) for node_id in ("node-a", "node-b")]

    def _node(self, ads: AdsThread, node_id: str) -> NodeView:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        answer = grpc.unary_unary_rpc_method_handler(lambda request, context: node_id.encode())
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "tensorflow.serving.PredictionService", {"Predict": answer}
                )
            ]
        )
        grpc_port = server.add_insecure_port(f"{LOOPBACK}:0")  # the kernel's pick: no race with other picks
        server.start()
        self.servers.append(server)
        return NodeView(node_id, Address(LOOPBACK, ads.start_backend(node_id)), Address(LOOPBACK, grpc_port))

    def stop(self) -> None:
        for server in self.servers:
            server.stop(grace=None).wait(GRPC_TIMEOUT_S)


@pytest.fixture
def nodes(ads: AdsThread) -> Iterator[Nodes]:
    started = Nodes(ads)
    yield started
    started.stop()


def entry(key: FastKey, *holders: NodeView) -> FastPathEntry:
    return FastPathEntry(key, tuple(n.rest for n in holders), tuple(n.grpc for n in holders))


def publish(
    ads: AdsThread, envoy: EnvoyProcess | None, view: ClusterView, version: str, entries: list[FastPathEntry]
) -> None:
    ads.set_snapshot(snapshot(version, build_resources(view, fast_path=entries)))
    if envoy is not None:
        ads.wait_acked(envoy, {type_urls.ROUTE: version})


def post(url: str) -> httpx.Response:
    return httpx.post(url, content=b'{"instances": [1.0]}', timeout=HTTP_TIMEOUT_S)


def served_by(response: httpx.Response) -> str | None:
    return response.headers.get("x-backend") if response.status_code == 200 else None


def test_rest_hits_take_their_route_to_the_holders_and_never_ext_proc(
    ads: AdsThread,
    start_envoy: Callable[..., EnvoyProcess],
    listener_ports: Ports,
    nodes: Nodes,
) -> None:
    node_a, node_b = nodes.views
    view = make_view(listener_ports, node_a, node_b)
    publish(ads, None, view, "1", [entry(FastKey("m"), node_a), entry(FastKey("m", 2), node_a, node_b)])
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, dict.fromkeys(type_urls.PUSH_ORDER, "1"))
    base = f"http://{LOOPBACK}:{listener_ports.rest}"
    wait_until(
        lambda: served_by(post(f"{base}/v1/models/m:predict")) == "node-a", ACK_TIMEOUT_S, "the fast path"
    )

    assert {served_by(post(f"{base}/v1/models/m:predict")) for _ in range(10)} == {"node-a"}
    assert served_by(post(f"{base}/v1/models/m:classify")) == "node-a"
    spread = Counter(served_by(post(f"{base}/v1/models/m/versions/2:predict")) for _ in range(40))
    assert set(spread) == {"node-a", "node-b"}, spread
    # everything else takes the slow path, which fails here (no ext_proc server): a 500
    for path in (
        "/v1/models/other:predict",
        "/v1/models/mm:predict",
        "/v1/models/m/versions/3:predict",
        "/v1/models/m/labels/stable:predict",
        "/v1/models/m/metadata",
    ):
        assert post(f"{base}{path}").status_code == 500, path

    # Envoy counted the hits per route, which is what the recency feed reads.
    counts = parse_route_counters(envoy.admin_get(f"/stats?usedonly&filter={ROUTE_COUNTER_FILTER}"))
    assert counts[FastKey("m").stat_prefix] == 1 + 10 + 1
    assert counts[FastKey("m", 2).stat_prefix] == 40
    # Every request answered: none in flight on those routes (what a withdrawal's drain waits for).
    prefixes = [FastKey("m").stat_prefix, FastKey("m", 2).stat_prefix]
    quoted = urllib.parse.quote(in_flight_filter(prefixes))
    assert parse_in_flight(envoy.admin_get(f"/stats?usedonly&type=Counters&filter={quoted}")) == 0

    # Withdrawn: the model's requests take the slow path again.
    publish(ads, envoy, view, "2", [entry(FastKey("m", 2), node_b)])
    assert post(f"{base}/v1/models/m:predict").status_code == 500
    assert {served_by(post(f"{base}/v1/models/m/versions/2:predict")) for _ in range(10)} == {"node-b"}


def test_grpc_hits_are_matched_on_the_model_in_the_body(
    ads: AdsThread,
    start_envoy: Callable[..., EnvoyProcess],
    listener_ports: Ports,
    nodes: Nodes,
) -> None:
    node_a, node_b = nodes.views
    view = make_view(listener_ports, node_a, node_b)
    publish(ads, None, view, "1", [entry(FastKey("m"), node_b), entry(FastKey("m", 2), node_a, node_b)])
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, dict.fromkeys(type_urls.PUSH_ORDER, "1"))

    def request(name: str, version: int | None = None) -> bytes:
        data = predict_request_bytes(name, 16)
        if version is not None:  # model_spec (1) { version (2) { value (1) } }: appended fields merge
            data += bytes([0x0A, 4, 0x12, 2, 0x08, version])
        return data

    with grpc.insecure_channel(f"{LOOPBACK}:{listener_ports.grpc}") as channel:
        predict = channel.unary_unary(PREDICT, request_serializer=None, response_deserializer=None)
        wait_until(lambda: _answer(predict, request("m")) == "node-b", ACK_TIMEOUT_S, "the gRPC fast path")
        assert {_answer(predict, request("m")) for _ in range(10)} == {"node-b"}
        spread = Counter(_answer(predict, request("m", 2)) for _ in range(40))
        assert set(spread) == {"node-a", "node-b"}, spread
        for name, version in (("other", None), ("m", 3)):
            with pytest.raises(grpc.RpcError):
                predict(request(name, version), timeout=GRPC_TIMEOUT_S)
        # the reload denial still comes first
        reload_config = channel.unary_unary(
            names.RELOAD_CONFIG_PATH, request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.RpcError) as caught:
            reload_config(b"", timeout=GRPC_TIMEOUT_S)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]


def _answer(predict: Callable[..., bytes], data: bytes) -> str | None:
    try:
        return predict(data, timeout=GRPC_TIMEOUT_S).decode()
    except grpc.RpcError:
        return None


def test_a_thousand_routes_are_taken_and_looked_up(
    ads: AdsThread,
    start_envoy: Callable[..., EnvoyProcess],
    listener_ports: Ports,
    nodes: Nodes,
) -> None:
    node_a, node_b = nodes.views
    view = make_view(listener_ports, node_a, node_b)
    entries = [entry(FastKey(f"tenant-{i:04d}", 1), node_a if i % 2 else node_b) for i in range(1000)]
    publish(ads, None, view, "1", entries)
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, dict.fromkeys(type_urls.PUSH_ORDER, "1"))
    base = f"http://{LOOPBACK}:{listener_ports.rest}"
    wait_until(
        lambda: served_by(post(f"{base}/v1/models/tenant-0000/versions/1:predict")) == "node-b",
        ACK_TIMEOUT_S,
        "routes",
    )
    for i in (1, 500, 999):
        assert served_by(post(f"{base}/v1/models/tenant-{i:04d}/versions/1:predict")) == (
            "node-a" if i % 2 else "node-b"
        )
    dump = json.loads(envoy.admin_get("/config_dump?resource=dynamic_route_configs"))
    assert dump["configs"], "Envoy shows its route configurations"
