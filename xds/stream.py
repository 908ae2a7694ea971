"""What one ADS stream knows, per resource type: a plain state machine, tested without any stream.

For each type URL Envoy subscribed to, the state holds the names it asked for, the version and nonce last
sent, the version it acknowledged and its last rejection. From it follow the two decisions of a state of
the world server:

- what a request is (``receive``): the first request of a type, an ACK or a NACK of the response last
  sent (its nonce), or a stale request answering an older response, which is ignored;
- whether a response is owed (``needs_response``): never while Envoy has not answered the last one;
  otherwise when nothing was sent yet, when the names asked for changed, when the snapshot's version of
  the type is not the one last sent, or after clusters were sent (below). A NACKed version is therefore
  not sent again: only a new snapshot (a new version) or new names bring a new response.

Envoy re-creates a cluster that changed and keeps it warming until it gets the cluster's load assignment
in a new EDS response, even when the assignment did not change (envoyproxy/envoy#13009). So every CDS
response makes an EDS response owed, at whatever version EDS is.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from xds import type_urls

#: Sending a type makes a response of another type owed: clusters warm only with a new EDS response.
_REFRESHED_BY = {type_urls.CLUSTER: type_urls.ENDPOINT}


class RequestKind(enum.Enum):
    SUBSCRIBE = "subscribe"
    """A type's first request on this stream (or a new subscription after it was dropped)."""
    ACK = "ack"
    NACK = "nack"
    STALE = "stale"
    """Answers a response that was followed by another one; ignored."""


@dataclass(frozen=True, slots=True)
class Request:
    """The parts of a DiscoveryRequest the state needs."""

    type_url: str
    version_info: str = ""
    nonce: str = ""
    resource_names: frozenset[str] = frozenset()
    error: str | None = None
    """The message of the request's ``error_detail``: set only on a NACK."""

    @classmethod
    def of(
        cls,
        type_url: str,
        *,
        version_info: str = "",
        nonce: str = "",
        resource_names: Iterable[str] = (),
        error: str | None = None,
    ) -> Request:
        return cls(type_url, version_info, nonce, frozenset(resource_names), error)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Envoy's NACK of a version: the version it kept, the one it refused and why."""

    rejected_version: str
    kept_version: str
    detail: str


@dataclass(slots=True)
class Subscription:
    """One type on one stream."""

    type_url: str
    resource_names: frozenset[str] = frozenset()
    sent_version: str | None = None
    sent_nonce: str | None = None
    acked_version: str | None = None
    rejection: Rejection | None = None
    awaiting_reply: bool = False
    """A response was sent and Envoy has not ACKed or NACKed it yet."""
    owed: bool = False
    """A response is owed whatever the version: Envoy asked for other names since the last response, or
    (for EDS) clusters were sent since."""

    @property
    def wildcard(self) -> bool:
        """Listeners and clusters are asked for all at once; their names are ignored."""
        return self.type_url not in type_urls.NAMED


@dataclass(frozen=True, slots=True)
class TypeStatus:
    """A copy of one subscription's state, for status pages and metrics."""

    type_url: str
    resource_names: frozenset[str]
    sent_version: str | None
    acked_version: str | None
    rejection: Rejection | None


class StreamState:
    """The subscriptions of one ADS stream (one Envoy), and the nonces of its responses."""

    def __init__(self, stream_id: int = 0) -> None:
        self.stream_id = stream_id
        self.node_id = ""
        self.subscriptions: dict[str, Subscription] = {}
        self._nonces = itertools.count(1)

    def receive(self, request: Request) -> RequestKind:
        """Take in a request; says what it was."""
        subscription = self.subscriptions.get(request.type_url)
        if subscription is None or not request.nonce:
            if subscription is None:
                subscription = self.subscriptions[request.type_url] = Subscription(request.type_url)
            self._ask_for(subscription, request.resource_names)
            subscription.owed = True
            subscription.awaiting_reply = False
            return RequestKind.SUBSCRIBE
        if request.nonce != subscription.sent_nonce:
            return RequestKind.STALE
        subscription.awaiting_reply = False
        self._ask_for(subscription, request.resource_names)
        if request.error is not None:
            subscription.rejection = Rejection(
                rejected_version=subscription.sent_version or "",
                kept_version=request.version_info,
                detail=request.error,
            )
            return RequestKind.NACK
        subscription.acked_version = request.version_info
        subscription.rejection = None
        return RequestKind.ACK

    def needs_response(self, type_url: str, version: str) -> bool:
        """Whether this stream is owed a response of ``type_url`` when the snapshot has ``version`` of it."""
        subscription = self.subscriptions.get(type_url)
        if subscription is None or subscription.awaiting_reply:
            return False
        if not subscription.wildcard and not subscription.resource_names:
            return False  # a named type with no names is an unsubscription: nothing to send
        if subscription.sent_version is None or subscription.owed:
            return True
        return subscription.sent_version != version

    def requested_names(self, type_url: str) -> frozenset[str] | None:
        """The names to send of ``type_url``, or None for all of them."""
        subscription = self.subscriptions[type_url]
        return None if subscription.wildcard else subscription.resource_names

    def record_sent(self, type_url: str, version: str) -> str:
        """Note a response of ``type_url`` at ``version`` as sent; returns the nonce to send it with."""
        subscription = self.subscriptions[type_url]
        nonce = f"{self.stream_id}-{next(self._nonces)}"
        subscription.sent_version = version
        subscription.sent_nonce = nonce
        subscription.awaiting_reply = True
        subscription.owed = False
        dependent = self.subscriptions.get(_REFRESHED_BY.get(type_url, ""))
        if dependent is not None:
            dependent.owed = True
        return nonce

    def applied(self, type_url: str, version: str) -> bool:
        """Whether Envoy acknowledged ``version`` of ``type_url`` (true if it does not subscribe to it)."""
        subscription = self.subscriptions.get(type_url)
        if subscription is None or (not subscription.wildcard and not subscription.resource_names):
            return True
        return subscription.acked_version == version

    def status(self) -> list[TypeStatus]:
        return [
            TypeStatus(s.type_url, s.resource_names, s.sent_version, s.acked_version, s.rejection)
            for s in self.subscriptions.values()
        ]

    @staticmethod
    def _ask_for(subscription: Subscription, names: frozenset[str]) -> None:
        if subscription.wildcard:
            return
        if names != subscription.resource_names:
            subscription.resource_names = names
            subscription.owed = True
