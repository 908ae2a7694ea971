"""The discovery interface: a membership source the daemon follows, and a registration an agent keeps.

``MembershipSource.watch()`` yields the full membership (node id -> ``Member``): first as soon as it is known,
then each time it changes, never the same set twice in a row. It does not end and does not raise because the
backend is away: it logs a warning once per outage (an info line when the backend is back), retries with a
capped backoff and yields nothing meanwhile, so the daemon keeps serving with the last set it got; once the
backend answers again it lists the members afresh and yields the new set if it differs (catch-up).
Cancelling the task that iterates ends it.

``Registration.start(member)`` makes the first registration and returns once it is done, or once the backend's
timeout has passed without it: the agent starts even when etcd or Consul is briefly down, and the
registration keeps retrying in the background (logging, as above). ``close()`` stops the keep-alive and
removes the registration (best effort, within the backend's timeout).

Only settings mistakes raise (``ConfigError``, e.g. an unreadable TLS file); ``DiscoveryError`` is what a
backend's answer turns into inside the retry loops (a refused request, an unusable document), never seen by
callers of ``watch`` or ``start``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from tfscachectl.discovery.members import Member
from tfscachectl.errors import TfsCacheError

#: Node id -> member: one membership as ``MembershipSource.watch`` yields it.
Membership = dict[str, Member]


class DiscoveryError(TfsCacheError):
    """A discovery backend refused a request or answered something unusable (retried, then logged)."""


class MembershipSource(Protocol):
    def watch(self) -> AsyncIterator[Membership]:
        """The full membership, first as soon as known, then on every change (see the module docstring)."""
        ...


class Registration(Protocol):
    async def start(self, member: Member) -> None:
        """Register ``member``; returns when registered or after the backend's timeout (then keeps trying)."""
        ...

    async def close(self) -> None:
        """Stop keeping the registration alive and remove it (best effort)."""
        ...
