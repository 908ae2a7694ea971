"""Envoy's configuration, served over ADS (state of the world), in the shape of go-control-plane.

- ``view``: ``ClusterView`` (nodes, listener and ext_proc addresses, timeouts, limits), the builders' input
- ``resources``: ``build_resources(view)``, pure; made of ``listeners``, ``routes``, ``clusters``,
  ``endpoints`` and ``filters``, each composable (the fast path adds routes with ``forward_route``)
- ``snapshot``: ``Snapshot``, immutable and versioned, with its consistency check
- ``cache``: ``SnapshotCache``, the current snapshot and its watchers (no gRPC in it)
- ``stream``: ``StreamState``, one stream's ACK/NACK/nonce state per type, a plain class
- ``server``: ``AdsServer``, the grpclib servicer joining the cache to Envoy's streams
- ``descriptors``: TF Serving's gRPC FileDescriptorSet for the field extraction filter

The daemon: ``cache.set_snapshot(Snapshot.create(version, build_resources(view).by_type()))``, serve
``xds.server.AdsServer(cache)`` with grpclib, and ``await server.wait_applied(timeout)`` where it must
know Envoy has the new configuration. Only ``xds.server`` imports grpclib, and this package does not
import it: the state side stays free of gRPC.
"""

from xds.cache import SnapshotCache
from xds.counters import XdsCounters
from xds.descriptors import DEFAULT_DESCRIPTOR_SET, read_descriptor_set
from xds.errors import ConfigNotAppliedError, ConfigRejectedError, InconsistentSnapshotError
from xds.filters import GRPC_MODEL_FIELDS
from xds.resources import Resources, build_resources
from xds.routes import forward_route
from xds.snapshot import Snapshot
from xds.stream import Rejection, StreamState, TypeStatus
from xds.view import Address, ClusterView, Limits, NodeView, Timeouts

__all__ = [
    "DEFAULT_DESCRIPTOR_SET",
    "GRPC_MODEL_FIELDS",
    "Address",
    "ClusterView",
    "ConfigNotAppliedError",
    "ConfigRejectedError",
    "InconsistentSnapshotError",
    "Limits",
    "NodeView",
    "Rejection",
    "Resources",
    "Snapshot",
    "SnapshotCache",
    "StreamState",
    "Timeouts",
    "TypeStatus",
    "XdsCounters",
    "build_resources",
    "forward_route",
    "read_descriptor_set",
]
