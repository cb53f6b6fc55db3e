"""Applying :class:`~harbor.security.authz.AccessControl` to the app: the hooks Quart calls.

- ``app.extensions["authorize"]`` runs before every declared endpoint (see
  :func:`harbor.api.routing.endpoint`): authenticate, check the role, guard cookie-authenticated
  writes against cross-site requests, charge the rate limit, note what to audit.
- An ``after_request`` hook writes the audit entry with the final status, and counts open event
  streams per principal (one over ``max_streams_per_principal`` gets 429).
- ``harbor.extensions["authorize_ws"]`` and ``["ws_command"]`` do the same for the session WebSocket
  and the commands sent over it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from quart import Quart, Response, g, request, websocket
from quart.wrappers.response import ResponseBody

from harbor.api.problems import Problem
from harbor.security.audit import AuditRecord
from harbor.security.authz import WRITE_ENDPOINTS, AccessControl, action_name
from harbor.security.cookies import COOKIE_NAME
from harbor.security.principal import LOCAL, Principal, Unauthenticated

if TYPE_CHECKING:
    from harbor.api.routing import Endpoint

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Seconds a client refused a stream is asked to wait (a slot frees when one of its streams ends).
STREAM_RETRY_AFTER = "5"
#: Longest path written to the audit log.
MAX_AUDIT_PATH = 512

WsRunner = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class AuditNote:
    """What this request will be audited as, once its status is known."""

    action: str
    target: str | None = None
    reason: str | None = None


def _target(view_args: dict[str, Any] | None) -> str | None:
    if not view_args:
        return None
    return " ".join(f"{name.removesuffix('_id')}:{value}" for name, value in view_args.items())


def _client(conn: Any) -> str:
    return conn.remote_addr or "unknown"


def _csrf_safe() -> bool:
    """Whether a cookie-authenticated write could not have come from a plain cross-site form.

    Forms can send only urlencoded, multipart or text bodies, and cannot set headers; a JSON body
    or ``X-Requested-With`` needs script, which the browser confines to the same origin (CORS).
    """
    return request.mimetype == "application/json" or "X-Requested-With" in request.headers


def _same_origin(conn: Any, cors_origins: list[str]) -> bool:
    origin = conn.headers.get("Origin")
    if not origin:
        return True  # not a browser
    return urlsplit(origin).netloc == conn.headers.get("Host", "") or origin in cors_origins


class _CountedBody(ResponseBody):
    """A streaming body that gives its stream slot back once, when sent or dropped."""

    def __init__(self, inner: ResponseBody, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    def _free(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    async def __aenter__(self) -> Any:
        return await self._inner.__aenter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self._inner.__aexit__(exc_type, exc, tb)  # type: ignore[arg-type]
        finally:
            self._free()

    def __del__(self) -> None:
        # A response dropped before it was sent (the client left first) never enters the body.
        self._free()


def install(app: Quart, access: AccessControl, core: Any) -> None:
    """Install the hooks on ``app`` and the WebSocket hooks on ``core.extensions``."""

    def note_write(ep: Endpoint) -> None:
        if ep.method not in SAFE_METHODS:
            g.audit = AuditNote(action_name(ep.name), _target(request.view_args))

    async def authorize(ep: Endpoint) -> None:
        write = ep.name in WRITE_ENDPOINTS
        if not access.required:
            g.principal = LOCAL
            if access.limits_active and ep.role != "public":
                access.charge(f"addr:{_client(request)}", write=write)
            if ep.role != "public":
                note_write(ep)
            return
        if ep.role == "public":
            return
        try:
            principal = await access.authenticate(request.headers.get("Authorization"),
                                                  request.cookies.get(COOKIE_NAME))
        except Unauthenticated as exc:
            # Charged before it is audited: a flood of bad credentials meets 429, not the database.
            access.charge(f"addr:{_client(request)}")
            g.audit = AuditNote("auth.failure", f"{request.method} {request.path}"[:MAX_AUDIT_PATH], str(exc))
            raise access.unauthorized(str(exc)) from None
        g.principal = principal
        if not principal.holds(ep.role):
            g.audit = AuditNote(action_name(ep.name), _target(request.view_args), f"needs {ep.role}")
            raise access.forbidden(principal, ep.role)
        if principal.method == "cookie" and request.method not in SAFE_METHODS and not _csrf_safe():
            g.audit = AuditNote(action_name(ep.name), _target(request.view_args), "cross-site request")
            raise Problem(403, "a request authenticated by the session cookie that changes state must send "
                               "Content-Type: application/json or X-Requested-With", kind="forbidden")
        access.charge(principal.limit_key, write=write)
        note_write(ep)

    async def audit_and_count(response: Response) -> Response:
        principal: Principal | None = g.get("principal")
        if access.limits_active and response.mimetype == "text/event-stream":
            response = _count_stream(response, principal)
        note: AuditNote | None = g.get("audit")
        if note is not None and access.audit.enabled and response.status_code != 429:
            target = note.target or await _created(response, note.action.split(".")[0])
            detail = {"method": request.method, "path": request.path[:MAX_AUDIT_PATH]}
            if note.reason:
                detail["reason"] = note.reason
            await access.audit.record(AuditRecord(
                action=note.action, status=response.status_code, principal=principal.subject if principal else None,
                tenant_id=principal.tenant_id if principal else None, target=target,
                request_id=g.get("request_id"), client=_client(request), detail=detail))
        return response

    def _count_stream(response: Response, principal: Principal | None) -> Response:
        key = principal.limit_key if principal is not None and access.required else f"addr:{_client(request)}"
        if not access.streams.acquire(key):
            from harbor.api.app import problem_response

            return problem_response(Problem(
                429, f"too many open event streams ({access.streams.limit}); close one first",
                kind="too-many-streams", headers={"Retry-After": STREAM_RETRY_AFTER}))
        response.response = _CountedBody(response.response, lambda: access.streams.release(key))
        return response

    async def authorize_ws() -> None:
        if not access.required:
            g.principal = LOCAL
            return
        try:
            principal = await access.authenticate(websocket.headers.get("Authorization"),
                                                  websocket.cookies.get(COOKIE_NAME))
        except Unauthenticated as exc:
            access.charge(f"addr:{_client(websocket)}")
            await access.audit.record(AuditRecord(
                action="auth.failure", status=401, target=f"WS {websocket.path}"[:MAX_AUDIT_PATH],
                client=_client(websocket), request_id=None, detail={"reason": str(exc)}))
            raise access.unauthorized(str(exc)) from None
        if principal.method == "cookie" and not _same_origin(websocket, access.settings.cors_origins):
            raise Problem(403, "a WebSocket authenticated by the session cookie must come from this origin",
                          kind="forbidden")
        if not principal.holds("viewer"):
            raise access.forbidden(principal, "viewer")
        access.charge(principal.limit_key)
        g.principal = principal

    async def ws_command(session_id: str, message: dict[str, Any], run: WsRunner) -> dict[str, Any]:
        principal: Principal = g.get("principal") or LOCAL
        op = message.get("op")
        action = f"session.{op}" if op in ("pause", "resume", "stop", "prompt") else "session.ws-command"
        try:
            if not principal.holds("operator"):
                raise access.forbidden(principal, "operator")
            if access.limits_active:
                access.charge(principal.limit_key if access.required else f"addr:{_client(websocket)}",
                              write=op == "prompt")
        except Problem as problem:
            result = {"op": op, "ok": False, "error": problem.body()}
        else:
            result = await run(session_id, message)
        status = 200 if result.get("ok") else int(result.get("error", {}).get("status", 400))
        if status != 429:
            await access.audit.record(AuditRecord(
                action=action, status=status, principal=principal.subject, tenant_id=principal.tenant_id,
                target=f"session:{session_id}", client=_client(websocket),
                detail={"method": "WS", "path": websocket.path[:MAX_AUDIT_PATH]}))
        return result

    app.extensions["authorize"] = authorize
    app.after_request(audit_and_count)
    core.extensions["authorize_ws"] = authorize_ws
    core.extensions["ws_command"] = ws_command


async def _created(response: Response, resource: str) -> str | None:
    """What a 201 answer created (``session_ids`` of a task, else ``<resource>:<id>``), for the audit."""
    if response.status_code != 201 or response.mimetype != "application/json":
        return None
    try:
        body = await response.get_json()
    except Exception:  # not JSON after all: no target rather than a failed request
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("session_ids"), list):
        return " ".join(f"session:{i}" for i in body["session_ids"])
    return f"{resource}:{body['id']}" if body.get("id") else None
