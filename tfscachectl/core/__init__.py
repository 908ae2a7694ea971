"""The pure core: decisions with no I/O, no clock and no threads (times are passed in as ``now``).

- ``refs``: ``ModelRef`` (a name and an optional version) and ``ModelKey`` (a concrete version)
- ``sizing``: the memory a model is expected to take, from the bytes of its files
- ``eviction``: LRU victim choice, the guard window, and the ``Admit`` / ``NoCapacity`` decisions
- ``residency``: the in-memory tier of one node (states, capacity by count and bytes, pins, recency)
- ``disk_tier``: the local disk cache of one node, a second LRU tier by bytes
- ``singleflight``: concurrent ensures of one model share one fetch and one load
- ``placement``: rendezvous hashing of models onto live nodes, with replicas, holders and weights

Adapters (the agent, the daemon) carry the decisions out and feed the outcomes back.
"""

from tfscachectl.core.disk_tier import DiskEntry, DiskState, DiskTier
from tfscachectl.core.eviction import (
    DEFAULT_GUARD_WINDOW_SECONDS,
    Admit,
    Candidate,
    Decision,
    Need,
    NoCapacity,
    choose_victims,
)
from tfscachectl.core.placement import DEFAULT_REPLICAS, Node, NodeId, place, place_all, rank
from tfscachectl.core.refs import ModelKey, ModelRef
from tfscachectl.core.residency import Capacity, Entry, Residency, ResidencyState, Usage
from tfscachectl.core.singleflight import Abandoned, Failed, Flight, SingleFlight, Succeeded, Ticket
from tfscachectl.core.sizing import MemoryEstimator

__all__ = [
    "DEFAULT_GUARD_WINDOW_SECONDS",
    "DEFAULT_REPLICAS",
    "Abandoned",
    "Admit",
    "Candidate",
    "Capacity",
    "Decision",
    "DiskEntry",
    "DiskState",
    "DiskTier",
    "Entry",
    "Failed",
    "Flight",
    "MemoryEstimator",
    "ModelKey",
    "ModelRef",
    "Need",
    "NoCapacity",
    "Node",
    "NodeId",
    "Residency",
    "ResidencyState",
    "SingleFlight",
    "Succeeded",
    "Ticket",
    "Usage",
    "choose_victims",
    "place",
    "place_all",
    "rank",
]
