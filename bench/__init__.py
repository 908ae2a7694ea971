"""``make bench``: throughput and latency of tfscache's request paths, measured side by side.

- ``payloads``: the small ``half_plus_two`` predict, as REST and gRPC request bodies and stand-in answers
- ``load``: one h2load run and its ``Result`` (requests/s, p50/p99, errors) from the per-request log
- ``standin``: nginx as a fast stand-in upstream answering a fixed TF Serving response
- ``static_envoy``: an Envoy with one static route per protocol, no filter but the router
- ``scenarios``: the measured scenarios, each returning report rows: (a) direct, (b) a static Envoy
- ``cache_scenarios``: (c) cache hits (also with 1,000 more models' routes), (d) the slow path, cold misses
  against a bare fetch + load, and the time from a load to its fast-path route
- ``report``: ``bench/RESULTS.md``: the machine, the command, one table per protocol, extra sections
- ``run``: ``python -m bench.run``, the entry point

``bench/tools.sh`` installs h2load and nginx. ``backend_memory.py`` (the bundled backend's memory) and
``grpc_filter_cost.py`` (what each filter of a gRPC hit costs Envoy) are separate scripts.
"""
