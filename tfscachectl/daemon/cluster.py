"""The daemon's view of the pool: the nodes, whether their agents answer, and which node holds which model.

Membership comes from discovery (``set_members``: the static list, etcd or Consul; docs/discovery.md): a
node that joins gets an agent client and a follower; a node that leaves loses them and its holdings at once,
so its fast-path routes go with the next snapshot. Each node's agent is followed through its residency
stream: on (re)connection the node's holdings are reset and
rebuilt from the stream's first events, so the view never keeps a model a restarted agent no longer has.
A node whose stream is down keeps its place in placement (its TF Serving may well be serving) but its
holdings are forgotten until the stream is back.

The daemon watches as a router (``confirm_unloads``): an agent that is about to unload a version tells it
(``unloading``) and waits until the daemon has withdrawn the version's fast-path routes and confirmed
(``confirm_unload``), or until the agent's own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tfscachectl.agent.api.client import AgentClient
from tfscachectl.core.placement import Node, NodeId
from tfscachectl.core.refs import ModelKey
from tfscachectl.daemon.settings import NodeSettings
from tfscachectl.errors import ServingError

log = logging.getLogger(__name__)

RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 5.0

ClientFactory = Callable[[str], AgentClient]
#: Told that a node is about to unload a version (its holding is already gone from the view).
UnloadingListener = Callable[[NodeId, str, int], None]


@dataclass(frozen=True)
class Holding:
    node: NodeId
    name: str
    version: int


#: Told of the nodes that joined and left (after the view changed).
MembershipListener = Callable[[frozenset[NodeId], frozenset[NodeId]], None]


class Cluster:
    def __init__(self, nodes: Iterable[NodeSettings], client: ClientFactory = AgentClient) -> None:
        self._client = client
        self.nodes: dict[NodeId, NodeSettings] = {}
        self.agents: dict[NodeId, AgentClient] = {}
        self._held: dict[NodeId, set[tuple[str, int]]] = {}
        #: Versions a node announced UNLOADING (or UNLOADED) and has not announced LOADED since: an ensure
        #: answer that crossed that announcement must not put them back (the agent would be unloading them).
        self._leaving: dict[NodeId, set[tuple[str, int]]] = {}
        self._connected: set[NodeId] = set()
        self._listeners: list[Callable[[], None]] = []
        self._unloading: list[UnloadingListener] = []
        self._membership: list[MembershipListener] = []
        self._followers: dict[NodeId, asyncio.Task[None]] = {}
        self._closing: list[AgentClient] = []
        self._closers: set[asyncio.Task[None]] = set()
        self._started = False
        for node in nodes:
            self._add(node)
        #: The version each name's unversioned requests were last resolved to (by an agent's ensure).
        self.latest: dict[str, int] = {}
        #: This daemon's name to the agents, for the unload protocol (one per process).
        self.watcher = f"daemon-{uuid.uuid4().hex[:12]}"

    # ----- the view -----------------------------------------------------------------------------

    def live(self) -> list[Node]:
        return [Node(node_id, n.weight) for node_id, n in self.nodes.items()]

    def holders(self, name: str) -> set[NodeId]:
        return {node_id for node_id, held in self._held.items() if any(m == name for m, _ in held)}

    def holders_of(self, name: str, version: int) -> set[NodeId]:
        """The nodes holding that version (a set lookup per node)."""
        return {node_id for node_id, held in self._held.items() if (name, version) in held}

    def holdings(self) -> list[Holding]:
        return [Holding(n, m, v) for n, held in sorted(self._held.items()) for m, v in sorted(held)]

    def held(self) -> dict[NodeId, frozenset[tuple[str, int]]]:
        """Node -> the ``(name, version)`` it holds (every node, connected or not)."""
        return {node_id: frozenset(held) for node_id, held in self._held.items()}

    def connected(self, node: NodeId) -> bool:
        return node in self._connected

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def on_unloading(self, listener: UnloadingListener) -> None:
        self._unloading.append(listener)

    def on_membership(self, listener: MembershipListener) -> None:
        self._membership.append(listener)

    # ----- membership ---------------------------------------------------------------------------

    def set_members(self, members: Iterable[NodeSettings]) -> tuple[frozenset[NodeId], frozenset[NodeId]]:
        """Make the pool ``members``: returns (joined, left). A node whose addresses changed is replaced;
        one that is unchanged keeps its agent stream and holdings (a restarted agent keeps its models)."""
        wanted = {NodeId(m.id): m for m in members}
        left = {n for n, known in self.nodes.items() if n not in wanted or wanted[n] != known}
        joined = {n for n, member in wanted.items() if n in left or n not in self.nodes}
        for node_id in sorted(left):
            self._remove(node_id)
        for node_id in sorted(joined):
            self._add(wanted[node_id])
        gone, new = frozenset(left - joined), frozenset(joined - left)
        if left or joined:
            log.info(
                "membership_changed joined=%s left=%s replaced=%s nodes=%d",
                ",".join(sorted(new)) or "-",
                ",".join(sorted(gone)) or "-",
                ",".join(sorted(left & joined)) or "-",
                len(self.nodes),
            )
            self._changed()
            for listener in self._membership:
                listener(new, gone)
        return new, gone

    def _add(self, node: NodeSettings) -> None:
        node_id = NodeId(node.id)
        self.nodes[node_id] = node
        self.agents[node_id] = self._client(node.agent)
        self._held[node_id] = set()
        self._leaving[node_id] = set()
        if self._started:
            self._follow_node(node_id)

    def _remove(self, node_id: NodeId) -> None:
        task = self._followers.pop(node_id, None)
        if task is not None:
            task.cancel()
        client = self.agents.pop(node_id)
        if self._started:  # calls in flight fail now (the router falls back to the next node)
            self._closers.add(closing := asyncio.create_task(client.close()))
            closing.add_done_callback(self._closers.discard)
        else:
            self._closing.append(client)
        del self.nodes[node_id]
        del self._held[node_id]
        del self._leaving[node_id]
        self._connected.discard(node_id)

    def _follow_node(self, node_id: NodeId) -> None:
        self._followers[node_id] = asyncio.create_task(self._follow(node_id), name=f"residency-{node_id}")

    def note_latest(self, name: str, version: int) -> None:
        """An ensure without version answered ``version``: it is what ``name`` alone means now."""
        if self.latest.get(name) != version:
            self.latest[name] = version
            self._changed()

    async def confirm_unload(self, node_id: NodeId, name: str, version: int) -> bool:
        """Tell the node's agent that this daemon routes nothing more to the version: it may unload."""
        return await self.agents[node_id].confirm_unload(self.watcher, ModelKey(name, version))

    # ----- following the agents -----------------------------------------------------------------

    def start(self) -> None:
        self._started = True
        for node_id in self.nodes:
            self._follow_node(node_id)

    async def close(self) -> None:
        tasks = list(self._followers.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for agent in [*self.agents.values(), *self._closing]:
            await agent.close()
        self._closing.clear()
        await asyncio.gather(*self._closers, return_exceptions=True)

    async def _follow(self, node_id: NodeId) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            try:
                snapshot: set[tuple[str, int]] | None = set()  # the stream's first events, until synced
                events = self.agents[node_id].watch_residency(watcher=self.watcher, confirm_unloads=True)
                async for event in events:
                    if event.kind == "synced":
                        # the node holds exactly this now (a reconnection replaces what was known at once)
                        self._held[node_id] = snapshot or set()
                        self._leaving[node_id] = set()
                        snapshot = None
                        self._connected.add(node_id)
                        log.info("agent_connected node=%s resident=%d", node_id, len(self._held[node_id]))
                        delay = RECONNECT_FIRST_S
                        self._changed()
                        continue
                    if event.key is None:
                        continue
                    key = event.key
                    if snapshot is not None:
                        if event.kind == "loaded":
                            snapshot.add((key.name, key.version))
                        continue
                    if self._apply(node_id, event.kind, key.name, key.version):
                        self._changed()
                    if event.kind == "unloading":
                        for listener in self._unloading:
                            listener(node_id, key.name, key.version)
            except ServingError as exc:
                if node_id in self._connected:
                    log.warning("agent_disconnected node=%s error=%r", node_id, exc.message)
                self._connected.discard(node_id)
                if self._held[node_id]:
                    self._held[node_id] = set()
                    self._changed()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _apply(self, node_id: NodeId, kind: str, name: str, version: int) -> bool:
        """Apply a residency event; whether what the node holds changed (an ensure's answer may have
        told already: ``note_loaded``)."""
        held, leaving, key = self._held[node_id], self._leaving[node_id], (name, version)
        was_held = key in held
        if kind == "loaded":
            held.add(key)
            leaving.discard(key)
        else:  # unloading or unloaded: no new request should go there
            held.discard(key)
            leaving.add(key)
        return was_held != (key in held)

    def note_loaded(self, node_id: NodeId, name: str, version: int) -> None:
        """An ensure just answered: the node holds the model (the stream will say so too, a bit later).

        Not if the node announced it is unloading that version since its last LOADED: the ensure's answer
        (a hit just before the eviction began) crossed the announcement, and the version is leaving; a load
        after it is announced LOADED on the stream."""
        held = self._held.get(node_id)
        if held is None or (name, version) in self._leaving.get(node_id, set()):
            return  # a node that just left holds nothing; a leaving version is not routed to
        if (name, version) not in held:
            held.add((name, version))
            self._changed()

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()
