"""Access control: who is calling (authentication), whether they may (roles), how often (rate
limits and open streams), and what is remembered of it (the audit log).

:class:`AccessControl` is built once per daemon (``harbor.security``). The Quart hooks that apply it
to every request live in :mod:`harbor.security.middleware`.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

from harbor.api.problems import Problem
from harbor.security import keys
from harbor.security.audit import AuditLog
from harbor.security.cookies import SessionCookies, load_or_create_secret
from harbor.security.jwt import JwtVerifier
from harbor.security.principal import Principal, Unauthenticated
from harbor.security.ratelimit import RateLimiter, StreamSlots, retry_after

if TYPE_CHECKING:
    from harbor.config import Settings

#: The challenge sent with every 401: both schemes the daemon accepts.
CHALLENGE = 'ApiKey realm="agent-harbor", Bearer realm="agent-harbor"'

#: Endpoints that start or feed agents share the per-principal "write" bucket, apart from reads.
WRITE_ENDPOINTS = frozenset({"tasks.create_task", "sessions.prompt_session", "timeline.session_branch"})

#: Audit action names for the endpoints people ask about; others are named by their endpoint.
ACTIONS = {
    "tasks.create_task": "task.create",
    "sessions.pause_session": "session.pause",
    "sessions.resume_session": "session.resume",
    "sessions.stop_session": "session.stop",
    "sessions.delete_session": "session.delete",
    "sessions.prompt_session": "session.prompt",
    "timeline.take_snapshot": "snapshot.take",
    "timeline.add_moment": "moment.add",
    "timeline.seek": "session.seek",
    "timeline.session_branch": "session.branch",
    "drafts.create_draft": "draft.create",
    "drafts.update_draft": "draft.update",
    "drafts.patch_draft": "draft.update",
    "drafts.delete_draft": "draft.delete",
    "repositories.register_repository": "repository.register",
    "security.create_key": "key.create",
    "security.revoke_key": "key.revoke",
    "security.login": "auth.login",
    "security.logout": "auth.logout",
}


def action_name(endpoint_name: str) -> str:
    return ACTIONS.get(endpoint_name, endpoint_name)


class AccessControl:
    """The daemon's authentication, authorization, rate limits and audit log.

    Args:
        settings: ``auth``, the ``jwt_*`` settings, ``rate_limit_*``, ``max_streams_per_principal``,
            ``session_cookie_ttl_seconds`` are read.
        journal: the daemon's journal (keys are read, audit entries written, through it).

    Raises:
        ConfigError: a JWT key file or secret that cannot be used.
    """

    def __init__(self, settings: Settings, journal: Any) -> None:
        self.settings = settings
        self.required = settings.auth == "required"
        self.journal = journal
        self.jwt = JwtVerifier(settings)
        self.cookies: SessionCookies | None = None
        if self.required:
            secret = load_or_create_secret(settings.data_dir)
            self.cookies = SessionCookies(secret, settings.session_cookie_ttl_seconds)
        self.reads = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        self.writes = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        self.streams = StreamSlots(settings.max_streams_per_principal)
        #: With auth off every caller is the local user: limits apply only when asked for.
        self.limits_active = self.required or settings.rate_limit_unauthenticated
        self.audit = AuditLog(journal, enabled=self.required or not settings.binds_loopback)
        self._touched: dict[str, float] = {}

    # -- authentication ----------------------------------------------------------------------------

    async def authenticate(self, authorization: str | None, cookie: str | None) -> Principal:
        """The principal behind an ``Authorization`` header, else behind the session cookie.

        Raises:
            Unauthenticated: no credential, or one that is not valid (the message says which, and
                never repeats it).
        """
        if authorization:
            scheme, _, credential = authorization.strip().partition(" ")
            scheme, credential = scheme.lower(), credential.strip()
            if not credential:
                raise Unauthenticated(f"the {scheme} authorization carries no credential")
            # API keys are also accepted as bearer tokens: many clients only know "Bearer".
            if scheme == "apikey" or (scheme == "bearer" and credential.startswith(keys.KEY_PREFIX)):
                return await self.principal_for_key(credential)
            if scheme == "bearer":
                return self.jwt.verify(credential)
            raise Unauthenticated("unsupported authorization scheme: use 'ApiKey <key>' or 'Bearer <token>'")
        if cookie and self.cookies is not None:
            key_id = self.cookies.key_id(cookie, time.time())
            row = await self.journal.read(partial(keys.live_key, key_id))
            if row is None:
                raise Unauthenticated("the key this session was signed in with was revoked; sign in again")
            await self._touch(row)
            return keys.principal_for(row, "cookie")
        raise Unauthenticated("authentication required: send 'Authorization: ApiKey <key>' or "
                              "'Authorization: Bearer <token>'")

    async def principal_for_key(self, presented: str) -> Principal:
        """The principal of a live API key.

        Raises:
            Unauthenticated: unknown or revoked key.
        """
        row = await self.journal.read(partial(keys.find_key, presented))
        if row is None:
            raise Unauthenticated("the API key is not valid (unknown or revoked)")
        await self._touch(row)
        return keys.principal_for(row)

    async def _touch(self, row: Any) -> None:
        now = time.time()
        last = max(row.last_used_at or 0.0, self._touched.get(row.id, 0.0))
        if now - last >= keys.LAST_USED_RESOLUTION:
            self._touched[row.id] = now
            await self.journal.write(partial(keys.touch, row.id, now))

    # -- refusals ----------------------------------------------------------------------------------

    @staticmethod
    def unauthorized(reason: str) -> Problem:
        return Problem(401, reason, kind="unauthorized", headers={"WWW-Authenticate": CHALLENGE})

    @staticmethod
    def forbidden(principal: Principal, required: str) -> Problem:
        held = f"the {principal.role} role" if principal.role else "no role"
        return Problem(403, f"this needs the {required} role; {principal.subject} holds {held}", kind="forbidden")

    def charge(self, key: str, *, write: bool = False) -> None:
        """Take one request from ``key``'s bucket (the write bucket for task creation and prompts).

        Raises:
            Problem: 429 with ``Retry-After`` when the bucket is empty.
        """
        wait = (self.writes if write else self.reads).take(key)
        if wait:
            after = retry_after(wait)
            raise Problem(429, f"too many requests; retry in {after} s", kind="rate-limited",
                          headers={"Retry-After": after})
