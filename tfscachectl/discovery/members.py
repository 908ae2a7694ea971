"""``Member``: one node of the pool as discovery knows it, and its versioned JSON document.

A node is a TF Serving instance and its agent. What the daemon needs of it: the node id (stable across
agent restarts), TF Serving's REST and gRPC addresses, the agent's address, and its capacity (a placement
weight, and optionally the model count and memory budget the agent enforces).

The document every backend stores (the etcd value; field by field in Consul's service Meta)::

    {"v": 1, "node_id": "node-a", "rest": "10.0.0.5:8501", "grpc": "10.0.0.5:8500",
     "agent": "10.0.0.5:8600", "weight": 1.0, "max_models": 4, "max_bytes": null}

``v`` is the format version: a reader refuses a version it does not know, and ignores fields it does not know
(so a later version 1 writer may add optional fields). Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tfscachectl.errors import ConfigError
from tfscachectl.settings_files import check_host_port

#: The document format this module writes and reads.
DOCUMENT_VERSION = 1
#: Longest node id; ids become etcd keys, Consul service ids and URL path segments.
MAX_NODE_ID_LENGTH = 255
#: Largest member document accepted (a real one is a few hundred bytes).
MAX_DOCUMENT_BYTES = 64 * 1024


def check_node_id(node_id: object) -> str:
    """``node_id`` if it can name a node, else ``ConfigError`` saying why."""
    if not isinstance(node_id, str):
        raise ConfigError(f"node id must be a string, got {type(node_id).__name__}")
    if not node_id:
        raise ConfigError("node id must not be empty")
    if len(node_id) > MAX_NODE_ID_LENGTH:
        raise ConfigError(f"node id is longer than {MAX_NODE_ID_LENGTH} characters: {node_id[:40]!r}...")
    if any(ch.isspace() or not ch.isprintable() or ch in "/\\?#%" for ch in node_id):
        raise ConfigError(f"node id {node_id!r} has whitespace, control characters or one of / \\ ? # %")
    return node_id


@dataclass(frozen=True, slots=True)
class Member:
    """One node: its stable id, TF Serving's REST and gRPC ``host:port``, its agent's, and its capacity."""

    node_id: str
    rest: str
    grpc: str
    agent: str
    weight: float = 1.0
    max_models: int | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        check_node_id(self.node_id)
        for field in ("rest", "grpc", "agent"):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise ConfigError(f"node {self.node_id}: {field} must be a host:port string")
            try:
                check_host_port(value)
            except ValueError as exc:
                raise ConfigError(f"node {self.node_id}: {field}: {exc}") from exc
        if (
            isinstance(self.weight, bool)
            or not isinstance(self.weight, int | float)
            or not math.isfinite(self.weight)
            or self.weight <= 0
        ):
            raise ConfigError(f"node {self.node_id}: weight must be a number > 0, got {self.weight!r}")
        for field in ("max_models", "max_bytes"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(
                    f"node {self.node_id}: {field} must be an integer >= 1 or null, got {value!r}"
                )

    # ----- the document ---------------------------------------------------------------------------

    def to_document(self) -> dict[str, Any]:
        """The versioned document as a JSON-ready mapping."""
        return {
            "v": DOCUMENT_VERSION,
            "node_id": self.node_id,
            "rest": self.rest,
            "grpc": self.grpc,
            "agent": self.agent,
            "weight": float(self.weight),
            "max_models": self.max_models,
            "max_bytes": self.max_bytes,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Member:
        """A member from a decoded document; ``ConfigError`` naming the problem if it is not one."""
        version = document.get("v")
        if version is None:
            raise ConfigError("member document has no format version 'v'")
        if isinstance(version, bool) or version != DOCUMENT_VERSION:
            raise ConfigError(
                f"member document has format version {version!r}; this reader knows {DOCUMENT_VERSION}"
            )
        missing = [name for name in ("node_id", "rest", "grpc", "agent") if name not in document]
        if missing:
            raise ConfigError(f"member document lacks {', '.join(missing)}")
        weight = document.get("weight", 1.0)
        if isinstance(weight, int) and not isinstance(weight, bool):
            weight = float(weight)
        return cls(
            node_id=document["node_id"],
            rest=document["rest"],
            grpc=document["grpc"],
            agent=document["agent"],
            weight=weight,
            max_models=document.get("max_models"),
            max_bytes=document.get("max_bytes"),
        )

    def to_json(self) -> bytes:
        """The document as compact UTF-8 JSON (keys sorted, so equal members give equal bytes)."""
        return json.dumps(self.to_document(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Member:
        """A member from its JSON document; ``ConfigError`` naming the problem if ``data`` is not one."""
        if len(data) > MAX_DOCUMENT_BYTES:
            raise ConfigError(f"member document is {len(data)} bytes, more than {MAX_DOCUMENT_BYTES}")
        try:
            document = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"member document is not UTF-8: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"member document is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise ConfigError(f"member document must be a JSON object, got {type(document).__name__}")
        return cls.from_document(document)
