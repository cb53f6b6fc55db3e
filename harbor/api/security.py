"""API keys, the audit log, and signing in: ``/api/v1/keys``, ``/api/v1/audit``, ``/api/v1/auth/*``
and the ``/login`` page."""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from quart import Blueprint, Response, g, jsonify, request

from harbor.api.deps import harbor, tenant
from harbor.api.problems import Problem, not_found
from harbor.api.routing import endpoint
from harbor.api.schemas import Page, PageQuery
from harbor.security import keys
from harbor.security.audit import entry_view, parse_time, select_entries
from harbor.security.cookies import COOKIE_NAME
from harbor.security.middleware import AuditNote
from harbor.security.principal import LOCAL, Principal, Unauthenticated
from harbor.sessions import page

bp = Blueprint("security", __name__, url_prefix="/api/v1")
login_bp = Blueprint("login", __name__)


# -- models -----------------------------------------------------------------------------------------

class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    role: Literal["viewer", "operator", "admin"]
    tenantId: str | None = Field(None, validation_alias=AliasChoices("tenantId", "tenant_id", "tenant"),
                                 min_length=1, max_length=128)
    name: str | None = Field(None, max_length=200)


class KeyObject(BaseModel):
    id: str
    name: str | None
    prefix: str
    role: str
    tenantId: str | None
    createdAt: str
    lastUsedAt: str | None
    revoked: bool


class CreatedKeyObject(KeyObject):
    key: str = Field(description="The secret key: shown this once, never stored")


class AuditQuery(PageQuery):
    perPage: int = Field(50, ge=1, le=200, validation_alias=AliasChoices("perPage", "per_page"))
    action: str | None = Field(None, max_length=500, description="Comma-separated; 'session.*' matches a prefix")
    principal: str | None = Field(None, max_length=200)
    outcome: Literal["ok", "denied", "error"] | None = None
    since: str | None = Field(None, max_length=40, description="ISO-8601 time or unix seconds")
    until: str | None = Field(None, max_length=40)

    @field_validator("since", "until")
    @classmethod
    def _is_time(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_time(value)
            except ValueError as exc:
                raise ValueError("must be an ISO-8601 time with a zone, or unix seconds") from exc
        return value


class LoginRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    apiKey: str = Field(validation_alias=AliasChoices("apiKey", "api_key", "key"), min_length=1,
                        max_length=keys.MAX_KEY_CHARS)


class WhoAmI(BaseModel):
    subject: str
    role: str | None
    roles: list[str]
    tenantId: str | None
    method: str
    authRequired: bool
    expiresAt: int | None = None


def _caller() -> Principal:
    return g.get("principal") or LOCAL


def _who(principal: Principal, **extra: Any) -> dict[str, Any]:
    return {"subject": principal.subject, "role": principal.role, "roles": principal.roles,
            "tenantId": principal.tenant_id, "method": principal.method,
            "authRequired": harbor().security.required, **extra}


# -- keys -------------------------------------------------------------------------------------------

@endpoint(bp, "POST", "/keys", summary="Create an API key (the key is in this answer only)", role="admin",
          body=CreateKeyRequest, status=201, responses={201: CreatedKeyObject}, tags=("keys",))
async def create_key(body: CreateKeyRequest) -> Any:
    own = tenant()
    if own is not None and body.tenantId not in (None, own):
        raise Problem(403, f"an admin of tenant {own!r} can create keys for that tenant only", kind="forbidden",
                      errors={"tenantId": [f"must be {own!r} or omitted"]})
    created = await harbor().journal.write(partial(keys.create_key, body.role, tenant_id=body.tenantId or own,
                                                   name=body.name))
    return {**keys.key_view(created.row), "key": created.key}, 201, {"Location": f"/api/v1/keys/{created.row.id}"}


@endpoint(bp, "GET", "/keys", summary="List API keys (never the keys themselves)", role="admin", query=PageQuery,
          responses={200: Page}, tags=("keys",))
async def list_keys(query: PageQuery) -> Any:
    rows = await harbor().journal.read(partial(keys.list_keys, tenant()))
    start = (query.page - 1) * query.perPage
    return page([keys.key_view(r) for r in rows[start:start + query.perPage]], query.page, query.perPage,
                len(rows))


async def _visible_key(key_id: str) -> Any:
    try:
        return await harbor().journal.read(partial(keys.resolve_key, key_id, tenant()))
    except keys.KeyNotFound:
        raise not_found("key", key_id) from None


@endpoint(bp, "GET", "/keys/<key_id>", summary="One API key", role="admin", responses={200: KeyObject},
          tags=("keys",))
async def get_key(key_id: str) -> Any:
    return keys.key_view(await _visible_key(key_id))


@endpoint(bp, "DELETE", "/keys/<key_id>", summary="Revoke an API key (and every sign-in made with it)",
          role="admin", status=204, responses={204: None}, tags=("keys",))
async def revoke_key(key_id: str) -> Any:
    row = await _visible_key(key_id)
    await harbor().journal.write(partial(keys.revoke_key, row.id))
    return "", 204


# -- audit ------------------------------------------------------------------------------------------

@endpoint(bp, "GET", "/audit", summary="The audit log, newest first", role="admin", query=AuditQuery,
          responses={200: Page}, tags=("audit",))
async def audit_log(query: AuditQuery) -> Any:
    total, rows = await harbor().journal.read(partial(
        select_entries, action=query.action, principal=query.principal, outcome=query.outcome,
        tenant_id=tenant(), since=parse_time(query.since), until=parse_time(query.until), page=query.page,
        per_page=query.perPage))
    return page([entry_view(r) for r in rows], query.page, query.perPage, total)


# -- signing in -------------------------------------------------------------------------------------

@endpoint(bp, "POST", "/auth/login", summary="Sign in with an API key: sets the WebUI session cookie",
          role="public", body=LoginRequest, responses={200: WhoAmI}, tags=("auth",))
async def login(body: LoginRequest) -> Any:
    access = harbor().security
    if not access.required or access.cookies is None:
        raise Problem(409, "authentication is off on this daemon: there is nothing to sign in to",
                      kind="conflict")
    # A login form posted from another site could sign a browser in as someone else: JSON only.
    if request.mimetype != "application/json" and "X-Requested-With" not in request.headers:
        raise Problem(415, "send the key as JSON (Content-Type: application/json)", kind="unsupported-media-type")
    access.charge(f"addr:{request.remote_addr}", write=True)
    try:
        principal = await access.principal_for_key(body.apiKey)
    except Unauthenticated as exc:
        g.audit = AuditNote("auth.login", reason=str(exc))
        raise access.unauthorized(str(exc)) from None
    g.principal = principal
    g.audit = AuditNote("auth.login", f"key:{principal.key_id}")
    value, expires = access.cookies.issue(principal.key_id or "", time.time())
    response: Response = jsonify(_who(principal, method="cookie", expiresAt=expires))
    response.set_cookie(COOKIE_NAME, value, max_age=int(access.cookies.ttl), path="/", httponly=True,
                        samesite="Strict", secure=request.scheme == "https")
    return response


@endpoint(bp, "POST", "/auth/logout", summary="Sign out: clears the WebUI session cookie", role="public",
          status=204, responses={204: None}, tags=("auth",))
async def logout() -> Any:
    access = harbor().security
    cookie = request.cookies.get(COOKIE_NAME)
    if access.required and cookie:
        try:
            g.principal = await access.authenticate(None, cookie)
        except Unauthenticated:
            pass  # signing out of an expired session is still signing out
        g.audit = AuditNote("auth.logout")
    response = Response("", status=204)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="Strict",
                           secure=request.scheme == "https")
    return response


@endpoint(bp, "GET", "/auth/whoami", summary="Who the credential in use belongs to", responses={200: WhoAmI},
          tags=("auth",))
async def whoami() -> Any:
    return _who(_caller())


# -- the /login page --------------------------------------------------------------------------------

_LOGIN_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
              "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


# A page for people, not part of the API (like /api/docs): public, and not in the OpenAPI document.
@login_bp.get("/login")
async def login_page() -> Any:
    """The WebUI's sign-in page: posts the key to ``/api/v1/auth/login``, then goes to ``?next=``."""
    return Response(_LOGIN_PAGE, content_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": _LOGIN_CSP, "X-Frame-Options": "DENY",
                             "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sign in · Agent Harbor</title>
<style>
body{font:16px system-ui,sans-serif;background:#f5f6f8;margin:0;display:grid;place-items:center;min-height:100vh}
main{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002;width:min(26rem,90vw)}
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin-bottom:.4rem}
input{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;font-family:monospace}
button{margin-top:1rem;padding:.5rem 1.2rem;font:inherit;cursor:pointer}
#error{color:#b00020;min-height:1.4em;margin-top:.8rem}
</style></head>
<body><main>
<h1>Agent Harbor</h1>
<form id="login">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" placeholder="ah_…" required autofocus>
<button type="submit">Sign in</button>
<p id="error" role="alert"></p>
</form>
<p><small>Create a key with <code>ah keys create --role operator</code> on the daemon's machine.</small></p>
</main>
<script>
const form = document.getElementById("login");
const error = document.getElementById("error");
function destination() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  // Only a path on this site: never "//host" or "https://..." (an open redirect).
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\\\") ? next : "/";
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const response = await fetch("/api/v1/auth/login", {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-Requested-With": "fetch"},
    body: JSON.stringify({apiKey: document.getElementById("key").value.trim()}),
  });
  if (response.ok) { location.assign(destination()); return; }
  let detail = "Sign-in failed (" + response.status + ")";
  try { detail = (await response.json()).detail || detail; } catch (e) {}
  error.textContent = detail;
});
</script>
</body></html>"""
