"""The daemon's admin API: JSON over HTTP for operators (``tfscachectl status``, ``evict``, ``preload``...).

Served with aiohttp on the daemon's event loop (like the metrics page: it reads state only the loop
touches), on ``admin_listen``, apart from the client-facing listeners. Endpoints, all under ``/v1``:

- ``GET /status``: every node (its agent's ``Status``; a node whose agent does not answer is listed as
  unreachable with the error), totals over the nodes (hits, misses, hit ratio, loads, evictions) and the
  daemon's own view (fast-path routes, requests routed by the slow path).
- ``POST /evict`` ``{"model", "version"?, "node"?}``: on the node given, else on every node holding it.
- ``POST /preload`` ``{"models": [{"model", "version"?}], "replicas"?, "wait"?}``: each model on the nodes
  a request would place it on (``replicas`` of them; default: the daemon's), waiting until it is available
  (``wait``, the default, within ``timeouts.ensure``) or only starting the loads.
- ``POST /pin``, ``POST /unpin`` ``{"model", "version"?, "node"?}``: on the node given, else on the nodes
  holding it; a model no node holds is pinned where a request would place it (and loaded there), and
  unpinned on every node.
- ``GET /models?limit=N``: what the store holds (names, versions, sizes, labels), as one agent lists it.

An operation on several nodes answers 200 with each node's outcome, failures included, unless every node of
a model failed: then it answers the first failure's status with the same document. Errors are
``{"error": "...", "code": "NOT_FOUND"}`` with the HTTP status TF Serving's REST API gives that code (an
unknown model is 404 with TF Serving's message).

Access: with ``admin_token`` set, every request needs ``Authorization: Bearer <token>`` (compared in constant
time), also on loopback, or it is answered 401 UNAUTHENTICATED. The settings refuse a non-loopback
``admin_listen`` without a token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tfscachectl import http_site
from tfscachectl.agent.api.client import AgentClient, AgentUnreachableError
from tfscachectl.agent.api.values import NodeStatus
from tfscachectl.core.placement import NodeId, place
from tfscachectl.core.refs import MAX_VERSION, ModelKey, ModelRef, validate_name
from tfscachectl.daemon.cluster import Cluster
from tfscachectl.daemon.fastpath import FastPathCounters
from tfscachectl.daemon.router import RouterCounters
from tfscachectl.daemon.settings import DaemonSettings
from tfscachectl.errors import Code, ConfigError, ServingError

log = logging.getLogger(__name__)

API_PREFIX = "/v1"
#: Request bodies larger than this are refused (413): a preload of many models is a few KiB.
MAX_BODY_BYTES = 1024 * 1024
#: At shutdown, calls in flight (a preload waiting for loads) get this long before they are cancelled.
SHUTDOWN_GRACE_S = 1.0
#: Models one preload may name.
MAX_PRELOAD_MODELS = 1000
#: Every endpoint: its method and path.
ENDPOINTS = (
    f"GET {API_PREFIX}/status",
    f"GET {API_PREFIX}/models",
    f"POST {API_PREFIX}/evict",
    f"POST {API_PREFIX}/preload",
    f"POST {API_PREFIX}/pin",
    f"POST {API_PREFIX}/unpin",
)
#: The counters summed over the nodes' agents in ``GET /v1/status``'s totals.
TOTAL_COUNTERS = ("hits", "misses", "loads", "load_failures", "evictions", "fetches")

Document = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BodyT = TypeVar("_BodyT", bound=BaseModel)


# ----- request bodies -----------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSelector(_Body):
    """A model: a version, or the latest in the store."""

    model: str
    version: int | None = Field(None, ge=0, le=MAX_VERSION)

    @field_validator("model")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return validate_name(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.model, self.version)


class ModelTarget(ModelSelector):
    """A model, and optionally the one node to act on."""

    node: str | None = None


class PreloadBody(_Body):
    models: tuple[ModelSelector, ...] = Field(..., min_length=1, max_length=MAX_PRELOAD_MODELS)
    replicas: int | None = Field(None, ge=1)
    wait: bool = True


# ----- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeResult:
    """What one node did for one model: the version it acted on (or evicted), or its error."""

    node: str
    keys: tuple[ModelKey, ...] = ()
    outcome: str | None = None
    seconds: float | None = None
    error: ServingError | None = None

    def document(self, keys_field: str = "key") -> Document:
        document: Document = {"node": self.node}
        if keys_field == "key":
            document["key"] = _key_document(self.keys[0]) if self.keys else None
        else:
            document[keys_field] = [_key_document(k) for k in self.keys]
        if self.outcome is not None:
            document["outcome"] = self.outcome
        if self.seconds is not None:
            document["seconds"] = round(self.seconds, 3)
        document["error"] = None if self.error is None else self.error.message
        document["code"] = None if self.error is None else self.error.code.name
        return document


def _key_document(key: ModelKey) -> Document:
    return {"model": key.name, "version": key.version}


def status_totals(statuses: Iterable[NodeStatus]) -> Document:
    """The agents' counters summed, with the hit ratio (None before any request)."""
    totals = dict.fromkeys(TOTAL_COUNTERS, 0)
    resident = used_bytes = 0
    for status in statuses:
        for name in TOTAL_COUNTERS:
            totals[name] += int(status.counters.get(name, 0))
        resident += len(status.in_state("resident"))
        used_bytes += status.used_bytes
    lookups = totals["hits"] + totals["misses"]
    return {
        **totals,
        "hit_ratio": totals["hits"] / lookups if lookups else None,
        "resident_models": resident,
        "used_bytes": used_bytes,
    }


def node_document(
    node_id: str, agent: str, connected: bool, status: NodeStatus | None, error: ServingError | None
) -> Document:
    """One node in ``GET /v1/status``: health, capacity and usage, its models and counters."""
    document: Document = {
        "id": node_id,
        "agent": agent,
        "connected": connected,
        "reachable": status is not None,
        "error": None if error is None else error.message,
    }
    if status is None:
        return {**document, "counters": {}, "models": []}
    fields = dataclasses.asdict(status)
    fields.pop("node_id")
    fields["models"] = [dataclasses.asdict(m) for m in status.models]
    fields["counters"] = dict(status.counters)
    return {**document, **fields}


def failed_answer(groups: Iterable[Sequence[NodeResult]]) -> ServingError | None:
    """The error to answer with when every node of some group (a model) failed; None otherwise."""
    for results in groups:
        errors = [r.error for r in results]
        if errors and all(e is not None for e in errors):
            return errors[0]
    return None


# ----- the application ----------------------------------------------------------------------------


class AdminApi:
    """The admin API on ``host:port``, on the daemon's event loop."""

    def __init__(
        self,
        cluster: Cluster,
        settings: DaemonSettings,
        fast_path: FastPathCounters,
        routing: RouterCounters,
    ) -> None:
        self._cluster = cluster
        self._settings = settings
        self._fast_path = fast_path
        self._routing = routing
        token = settings.admin_token
        self._token = None if token is None else token.get_secret_value().encode()
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY_BYTES)
        handlers: dict[str, Handler] = {
            "status": self._status,
            "models": self._models,
            "evict": self._evict,
            "preload": self._preload,
            "pin": self._pin,
            "unpin": self._unpin,
        }
        for endpoint in ENDPOINTS:
            method, path = endpoint.split(" ")
            app.router.add_route(method, path, handlers[path.rpartition("/")[2]])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)

    async def start(self, listen: str) -> str:
        """Listen on ``host:port`` (port 0: any free port); returns the address actually bound."""
        return await http_site.listen(self._runner, listen, "admin API")

    async def close(self) -> None:
        await self._runner.cleanup()

    # ----- access and errors --------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._token is not None:
            refusal = self._refusal(request.headers.get("Authorization"))
            if refusal is not None:
                log.warning("admin_refused path=%s peer=%s reason=%s", request.path, request.remote, refusal)
                response = _error_response(ServingError(Code.UNAUTHENTICATED, refusal))
                response.headers["WWW-Authenticate"] = 'Bearer realm="tfscache admin"'
                return response
        try:
            return await handler(request)
        except ServingError as exc:
            return _error_response(exc)
        except web.HTTPException as exc:  # no such path or method, body too large...
            return _error_response(
                ServingError(_code_of_http(exc.status), _http_message(request, exc)), exc.status
            )
        except Exception as exc:  # a bug: CancelledError is not an Exception and passes
            log.exception("admin_call_crashed path=%s", request.path)
            message = f"Internal error in the daemon's admin API: {type(exc).__name__}: {exc}"
            return _error_response(ServingError(Code.INTERNAL, message))

    def _refusal(self, header: str | None) -> str | None:
        """Why a request with this ``Authorization`` header is refused; None if it carries the token."""
        assert self._token is not None
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return "This admin API needs a token: send 'Authorization: Bearer <token>'"
        if not hmac.compare_digest(given.strip().encode(), self._token):
            return "The admin token is not valid"
        return None

    # ----- status and the store -----------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.Response:
        cluster = self._cluster
        nodes = sorted(cluster.nodes)
        addresses = {n: cluster.nodes[n].agent for n in nodes}  # before any await: nodes may leave
        answers = await asyncio.gather(*(self._node_status(n) for n in nodes))
        documents = [
            node_document(n, addresses[n], cluster.connected(n), status, error)
            for n, (status, error) in zip(nodes, answers, strict=True)
        ]
        routing = self._routing
        return _json(
            {
                "nodes": documents,
                "totals": status_totals(status for status, _ in answers if status is not None),
                "daemon": {
                    "nodes": len(nodes),
                    "connected": sum(cluster.connected(n) for n in nodes),
                    "replicas": self._settings.replicas,
                    "fast_path_routes": self._fast_path.routes,
                    "slow_path_routed": routing.routed,
                    "slow_path_loads": routing.loads,
                },
            }
        )

    async def _node_status(self, node: NodeId) -> tuple[NodeStatus | None, ServingError | None]:
        try:
            return await self._agent(node).status(), None
        except ServingError as exc:
            return None, exc

    async def _models(self, request: web.Request) -> web.Response:
        limit = _positive_int(request.query.get("limit"), "limit")
        cluster = self._cluster
        # connected nodes first; a node whose agent cannot be reached is skipped
        nodes = sorted(cluster.nodes, key=lambda n: (not cluster.connected(n), n))
        if not nodes:
            raise ServingError(Code.UNAVAILABLE, "The daemon has no node to ask what the store holds")
        last: ServingError | None = None
        for node in nodes:
            try:
                listing = await self._agent(node).list_store(limit)
            except AgentUnreachableError as exc:
                last = exc
                continue
            return _json(
                {
                    "store": listing.store,
                    "node": node,
                    "truncated": listing.truncated,
                    "models": [
                        {
                            "name": m.name,
                            "versions": [{"version": v.version, "bytes": v.bytes} for v in m.versions],
                            "labels": dict(m.labels),
                        }
                        for m in listing.models
                    ],
                }
            )
        assert last is not None
        raise ServingError(Code.UNAVAILABLE, f"No node agent answered: {last.message}")

    # ----- operations ---------------------------------------------------------------------------

    async def _evict(self, request: web.Request) -> web.Response:
        target = await _body(request, ModelTarget)
        nodes = self._nodes_for(target) or self._holders(target.ref)
        if not nodes:
            raise ServingError(Code.NOT_FOUND, f"Model {target.ref} is not resident on any node")

        async def evict(node: NodeId) -> NodeResult:
            try:
                evicted = await self._agent(node).evict(target.model, target.version)
            except ServingError as exc:
                return NodeResult(node, error=exc)
            return NodeResult(node, tuple(evicted))

        results = await asyncio.gather(*(evict(n) for n in nodes))
        log.info("admin_evict model=%s nodes=%s results=%s", target.ref, nodes, _summary(results))
        return self._operation(
            {"model": target.model, "version": target.version},
            [results],
            [r.document("evicted") for r in results],
        )

    async def _pin(self, request: web.Request) -> web.Response:
        return await self._set_pin(await _body(request, ModelTarget), pinned=True)

    async def _unpin(self, request: web.Request) -> web.Response:
        return await self._set_pin(await _body(request, ModelTarget), pinned=False)

    async def _set_pin(self, target: ModelTarget, pinned: bool) -> web.Response:
        async def pin(node: NodeId) -> NodeResult:
            try:
                key = await self._agent(node).pin(
                    target.model, target.version, pinned=pinned, timeout=self._settings.timeouts.ensure
                )
            except ServingError as exc:
                return NodeResult(node, error=exc)
            if pinned:
                self._cluster.note_loaded(node, key.name, key.version)
            return NodeResult(node, (key,))

        nodes = self._nodes_for(target) or self._holders(target.ref)
        skipped: list[NodeResult] = []
        if nodes:
            results = list(await asyncio.gather(*(pin(n) for n in nodes)))
        elif pinned:  # where requests for it go
            results, skipped = await self._on_placed(target.model, self._settings.replicas, pin)
        else:
            results = list(await asyncio.gather(*(pin(n) for n in sorted(self._cluster.nodes))))
        action = "pin" if pinned else "unpin"
        log.info("admin_%s model=%s results=%s", action, target.ref, _summary([*results, *skipped]))
        return self._operation(
            {"model": target.model, "version": target.version, "pinned": pinned},
            [results],
            [r.document() for r in results],
            skipped=[r.document() for r in skipped],
        )

    async def _preload(self, request: web.Request) -> web.Response:
        body = await _body(request, PreloadBody)
        replicas = body.replicas or self._settings.replicas
        refs = [item.ref for item in body.models]

        async def preload(ref: ModelRef) -> tuple[list[NodeResult], list[NodeResult]]:
            return await self._on_placed(ref.name, replicas, lambda node: self._ensure(ref, node, body.wait))

        placed = await asyncio.gather(*(preload(ref) for ref in refs))
        log.info(
            "admin_preload models=%s wait=%s replicas=%d results=%s",
            [str(ref) for ref in refs],
            body.wait,
            replicas,
            [_summary([*results, *skipped]) for results, skipped in placed],
        )
        return self._operation(
            {"wait": body.wait, "replicas": replicas},
            [results for results, _ in placed],
            None,
            models=[
                {
                    "model": ref.name,
                    "version": ref.version,
                    "nodes": [r.document() for r in results],
                    "skipped": [r.document() for r in skipped],
                }
                for ref, (results, skipped) in zip(refs, placed, strict=True)
            ],
        )

    async def _on_placed(
        self, name: str, count: int, act: Callable[[NodeId], Awaitable[NodeResult]]
    ) -> tuple[list[NodeResult], list[NodeResult]]:
        """``act`` on the ``count`` nodes requests for ``name`` go to (its holders first, then by rank). As
        the router does, a node whose agent cannot be reached is replaced by the next one in rank order;
        returns (results, the unreachable nodes replaced)."""
        cluster = self._cluster
        order = list(place(name, cluster.live(), len(cluster.nodes), cluster.holders(name)))
        if not order:
            raise ServingError(Code.UNAVAILABLE, "No TF Serving node is available")
        results: list[NodeResult] = []
        skipped: list[NodeResult] = []
        pending, spare = order[:count], order[count:]
        while pending:
            replaced = 0
            for result in await asyncio.gather(*(act(node) for node in pending)):
                if isinstance(result.error, AgentUnreachableError) and replaced < len(spare):
                    skipped.append(result)
                    replaced += 1
                else:
                    results.append(result)
            pending, spare = spare[:replaced], spare[replaced:]
        return results, skipped

    async def _ensure(self, ref: ModelRef, node: NodeId, wait: bool) -> NodeResult:
        try:
            agent = self._agent(node)
            if wait:
                result = await agent.ensure(ref.name, ref.version, timeout=self._settings.timeouts.ensure)
            else:
                result = await agent.preload(ref.name, ref.version)
        except ServingError as exc:
            return NodeResult(node, error=exc)
        if result.outcome != "started":
            self._cluster.note_loaded(node, result.key.name, result.key.version)
            if ref.version is None:
                self._cluster.note_latest(result.key.name, result.key.version)
        return NodeResult(node, (result.key,), result.outcome, result.seconds)

    # ----- plumbing -----------------------------------------------------------------------------

    def _agent(self, node: NodeId) -> AgentClient:
        agent = self._cluster.agents.get(node)
        if agent is None:
            raise AgentUnreachableError(Code.UNAVAILABLE, f"Node {node} has left the pool")
        return agent

    def _nodes_for(self, target: ModelTarget) -> list[NodeId]:
        """The node the request names, if it names one (an unknown node is NOT_FOUND)."""
        if target.node is None:
            return []
        node = NodeId(target.node)
        if node not in self._cluster.nodes:
            known = ", ".join(sorted(self._cluster.nodes)) or "none"
            raise ServingError(Code.NOT_FOUND, f"Unknown node {target.node!r} (nodes: {known})")
        return [node]

    def _holders(self, ref: ModelRef) -> list[NodeId]:
        """The nodes holding ``ref`` (any version of it if it names none), as the residency streams say."""
        return sorted(
            node
            for node, held in self._cluster.held().items()
            if any(name == ref.name and ref.version in (None, version) for name, version in held)
        )

    def _operation(
        self,
        fields: Mapping[str, Any],
        groups: Iterable[Sequence[NodeResult]],
        nodes: list[Document] | None,
        **more: Any,
    ) -> web.Response:
        document: Document = dict(fields)
        if nodes is not None:
            document["nodes"] = nodes
        document.update(more)
        failure = failed_answer(groups)
        if failure is None:
            return _json(document)
        document.update(error=failure.message, code=failure.code.name)
        return _json(document, failure.code.http_status)


def _summary(results: Iterable[NodeResult]) -> str:
    return ",".join(f"{r.node}:{r.error.code.name if r.error else r.outcome or len(r.keys)}" for r in results)


async def _body(request: web.Request, model: type[_BodyT]) -> _BodyT:
    """The request's JSON body as ``model``; INVALID_ARGUMENT saying what is wrong otherwise."""
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServingError(Code.INVALID_ARGUMENT, f"The request body is not JSON: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ServingError(Code.INVALID_ARGUMENT, f"Invalid request: {details}") from exc


def _positive_int(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ServingError(Code.INVALID_ARGUMENT, f"{name} must be a positive integer, not {text!r}")
    return int(text)


def _json(document: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.json_response(dict(document), status=status)


def _error_response(error: ServingError, status: int | None = None) -> web.Response:
    return _json({"error": error.message, "code": error.code.name}, status or error.code.http_status)


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"No admin endpoint {request.path} (endpoints: {', '.join(ENDPOINTS)})"
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    return f"{exc.reason} ({request.method} {request.path})"


_CODE_OF_HTTP = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND,
    405: Code.UNIMPLEMENTED,
    413: Code.RESOURCE_EXHAUSTED,
}


def _code_of_http(status: int) -> Code:
    return _CODE_OF_HTTP.get(status, Code.INVALID_ARGUMENT if status < 500 else Code.INTERNAL)
