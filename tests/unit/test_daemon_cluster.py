"""The daemon's view of what nodes hold: residency events and ensure answers, in either order."""

from __future__ import annotations

from typing import Any

from tfscachectl.core.placement import NodeId
from tfscachectl.daemon.cluster import Cluster
from tfscachectl.daemon.settings import NodeSettings

NODE = NodeId("n1")


class NoAgent:
    """Cluster never calls an agent in these tests (nothing is started)."""

    def __init__(self, target: str) -> None:
        self.target = target

    async def close(self) -> None:
        return None


def cluster() -> Cluster:
    settings = NodeSettings(id=NODE, rest="127.0.0.1:8501", grpc="127.0.0.1:8500", agent="127.0.0.1:8600")
    factory: Any = NoAgent
    return Cluster([settings], client=factory)


def test_an_ensure_answer_crossing_an_unloading_announcement_does_not_bring_the_version_back() -> None:
    view = cluster()
    view._apply(NODE, "loaded", "m", 1)
    view._apply(NODE, "unloading", "m", 1)  # the eviction began ...
    view.note_loaded(NODE, "m", 1)  # ... and then a hit's answer, sent before it, arrives
    assert view.holders("m") == set()
    view._apply(NODE, "unloaded", "m", 1)
    view.note_loaded(NODE, "m", 1)  # a new load's answer before its LOADED event: the event will tell
    assert view.holders("m") == set()
    view._apply(NODE, "loaded", "m", 1)
    assert view.holders("m") == {NODE}
    view.note_loaded(NODE, "m", 2)  # other versions are not affected
    assert ("m", 2) in view.held()[NODE]


def test_a_residency_event_reports_a_change_only_when_what_the_node_holds_changes() -> None:
    view = cluster()
    published: list[None] = []
    view.on_change(lambda: published.append(None))
    view.note_loaded(NODE, "m", 1)  # an ensure's answer: routes change now
    assert len(published) == 1
    assert view._apply(NODE, "loaded", "m", 1) is False  # the stream's LOADED, later: nothing new
    assert view._apply(NODE, "unloading", "m", 1) is True
    assert view._apply(NODE, "unloaded", "m", 1) is False
    assert view._apply(NODE, "loaded", "m", 1) is True


def test_membership_changes_add_and_drop_nodes_and_their_holdings() -> None:
    view = cluster()
    view._apply(NODE, "loaded", "m", 1)
    other = NodeSettings(id="n2", rest="127.0.0.2:8501", grpc="127.0.0.2:8500", agent="127.0.0.2:8600")
    joined, left = view.set_members([other])
    assert (joined, left) == ({NodeId("n2")}, {NODE})
    assert view.holders("m") == set()
    assert set(view.nodes) == {NodeId("n2")}
    assert view.set_members([other]) == (frozenset(), frozenset())  # unchanged: nothing happens
