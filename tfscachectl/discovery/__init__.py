"""Discovery: which nodes (TF Serving + agent) make up the pool, behind one interface with three backends.

- ``members``: ``Member`` (node id, TF Serving REST/gRPC and agent addresses, capacity), its JSON
- ``base``: the ``MembershipSource`` and ``Registration`` Protocols, ``Membership``, ``DiscoveryError``
- ``settings``: ``DiscoverySettings`` with ``EtcdSettings`` and ``ConsulSettings``
- ``static``: ``StaticMembership``, the nodes listed in the daemon's settings
- ``etcd``: ``EtcdRegistration`` (a key under a lease) and ``EtcdMembership`` (list + watch); ``etcd_client``
  opens aetcd clients (auth, TLS)
- ``consul``: ``ConsulRegistration`` (a service with a TTL check) and ``ConsulMembership`` (blocking queries);
  ``consul_api`` is the HTTP client
- ``backoff``, ``outage``: retry delays and outage logging shared by the backends

``membership_source`` and ``registration`` pick the backend from the settings. The etcd and Consul modules
(and aetcd, aiohttp) are imported only when their backend is chosen. See ``docs/discovery.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tfscachectl.discovery.base import DiscoveryError, Membership, MembershipSource, Registration
from tfscachectl.discovery.members import Member
from tfscachectl.discovery.settings import ConsulSettings, DiscoverySettings, EtcdSettings
from tfscachectl.discovery.static import StaticMembership


def membership_source(settings: DiscoverySettings, static_members: Sequence[Member]) -> MembershipSource:
    """What the daemon follows: ``static_members`` (``static``), the etcd prefix or the Consul service."""
    if settings.kind == "etcd":
        from tfscachectl.discovery.etcd import EtcdMembership

        return EtcdMembership(settings.etcd)
    if settings.kind == "consul":
        from tfscachectl.discovery.consul import ConsulMembership

        return ConsulMembership(settings.consul)
    return StaticMembership(static_members)


def registration(settings: DiscoverySettings) -> Registration | None:
    """How an agent registers itself: None for ``static`` (the daemon's settings list the nodes)."""
    if settings.kind == "etcd":
        from tfscachectl.discovery.etcd import EtcdRegistration

        return EtcdRegistration(settings.etcd)
    if settings.kind == "consul":
        from tfscachectl.discovery.consul import ConsulRegistration

        return ConsulRegistration(settings.consul)
    return None


__all__ = [
    "ConsulSettings",
    "DiscoveryError",
    "DiscoverySettings",
    "EtcdSettings",
    "Member",
    "Membership",
    "MembershipSource",
    "Registration",
    "StaticMembership",
    "membership_source",
    "registration",
]
