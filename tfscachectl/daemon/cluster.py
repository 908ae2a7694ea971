"""The daemon's view of the pool: the nodes, whether their agents answer, and which node holds which model.

Membership is static for now (the settings' node list; the discovery issue adds etcd and Consul). Each
node's agent is followed through its residency stream: on (re)connection the node's holdings are reset and
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


class Cluster:
    def __init__(self, nodes: Iterable[NodeSettings], client: ClientFactory = AgentClient) -> None:
        self.nodes: dict[NodeId, NodeSettings] = {NodeId(n.id): n for n in nodes}
        self.agents: dict[NodeId, AgentClient] = {i: client(n.agent) for i, n in self.nodes.items()}
        self._held: dict[NodeId, set[tuple[str, int]]] = {node_id: set() for node_id in self.nodes}
        self._connected: set[NodeId] = set()
        self._listeners: list[Callable[[], None]] = []
        self._unloading: list[UnloadingListener] = []
        self._tasks: list[asyncio.Task[None]] = []
        #: The version each name's unversioned requests were last resolved to (by an agent's ensure).
        self.latest: dict[str, int] = {}
        #: This daemon's name to the agents, for the unload protocol (one per process).
        self.watcher = f"daemon-{uuid.uuid4().hex[:12]}"

    # ----- the view -----------------------------------------------------------------------------

    def live(self) -> list[Node]:
        return [Node(node_id, n.weight) for node_id, n in self.nodes.items()]

    def holders(self, name: str) -> set[NodeId]:
        return {node_id for node_id, held in self._held.items() if any(m == name for m, _ in held)}

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
        for node_id in self.nodes:
            self._tasks.append(asyncio.create_task(self._follow(node_id), name=f"residency-{node_id}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for agent in self.agents.values():
            await agent.close()

    async def _follow(self, node_id: NodeId) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            try:
                first = True
                events = self.agents[node_id].watch_residency(watcher=self.watcher, confirm_unloads=True)
                async for event in events:
                    if first:
                        self._held[node_id] = set()
                        self._connected.add(node_id)
                        log.info("agent_connected node=%s", node_id)
                        first = False
                        delay = RECONNECT_FIRST_S
                    self._apply(node_id, event.kind, event.key.name, event.key.version)
                    self._changed()
                    if event.kind == "unloading":
                        for listener in self._unloading:
                            listener(node_id, event.key.name, event.key.version)
            except ServingError as exc:
                if node_id in self._connected:
                    log.warning("agent_disconnected node=%s error=%r", node_id, exc.message)
                self._connected.discard(node_id)
                if self._held[node_id]:
                    self._held[node_id] = set()
                    self._changed()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _apply(self, node_id: NodeId, kind: str, name: str, version: int) -> None:
        held = self._held[node_id]
        if kind == "loaded":
            held.add((name, version))
        else:  # unloading or unloaded: no new request should go there
            held.discard((name, version))

    def note_loaded(self, node_id: NodeId, name: str, version: int) -> None:
        """An ensure just answered: the node holds the model (the stream will say so too, a bit later)."""
        if (name, version) not in self._held[node_id]:
            self._held[node_id].add((name, version))
            self._changed()

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()
