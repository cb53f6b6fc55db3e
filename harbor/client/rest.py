"""The daemon's REST API (``/api/v1``) as the async methods of :class:`HarborClient`.

The request core (:meth:`HarborClient.request`) sends, retries by the policy of
:mod:`harbor.client.retry`, and turns error answers into :class:`~harbor.client.errors.HarborError`;
the methods below it are one per endpoint. The event streams (``follow``, ``feed``, ``open_feed``)
are methods too: they share the connection pool and the reconnect budget.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
import trio
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay

from harbor.client.errors import DaemonUnreachable, HarborError
from harbor.client.retry import _IDEMPOTENT, _connection_failed, _Retryable, _WaitRetryAfter
from harbor.client.status import TERMINAL
from harbor.sse import parse_sse

API = "/api/v1"


class HarborClient:
    """The daemon's API as async methods. Use as ``async with HarborClient(url) as client``.

    Args:
        base_url: where the daemon listens (``http://127.0.0.1:8080``); ``/api/v1`` is added.
        api_key: sent as ``Authorization: ApiKey <key>``.
        token: a JWT, sent as ``Authorization: Bearer <token>`` (ignored when ``api_key`` is given).
        timeout: seconds for connecting and for each read of an ordinary request.
        retry_for: how long, in seconds, to keep retrying a transient failure before giving up
            (0 tries once).
        backoff: first backoff step in seconds; it doubles up to ``max_backoff``.
        max_backoff: the longest pause between two attempts.
        transport: an httpx transport (tests, Unix sockets); default TCP.
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, token: str | None = None,
                 timeout: float = 10.0, retry_for: float = 15.0, backoff: float = 0.1, max_backoff: float = 2.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_for = retry_for
        self.backoff = backoff
        self.max_backoff = max_backoff
        headers = {"Accept": "application/json", "User-Agent": "ah-client"}
        if api_key:
            headers["Authorization"] = f"ApiKey {api_key}"
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, transport=transport,
                                       timeout=httpx.Timeout(timeout))

    async def __aenter__(self) -> HarborClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- the request core --------------------------------------------------------------------------

    def _retrying(self, retryable: Any) -> AsyncRetrying:
        return AsyncRetrying(stop=stop_after_delay(self.retry_for), reraise=True,
                             wait=_WaitRetryAfter(self.backoff, self.max_backoff),
                             retry=retry_if_exception(retryable))

    async def request(self, method: str, path: str, *, json_body: Any = None, params: Mapping[str, Any] | None = None,
                      headers: Mapping[str, str] | None = None, retry: bool | None = None) -> Any:
        """Send one request (retrying transient failures) and decode the answer.

        Args:
            method: HTTP method.
            path: path under ``/api/v1`` (``/sessions``) or absolute (``/api/v1/...``).
            json_body: a JSON body, if any.
            params: query parameters; ``None`` values are left out.
            headers: extra headers.
            retry: force (or forbid) retrying failures that may have reached the daemon; default: yes
                for idempotent methods and requests with an ``Idempotency-Key``.

        Returns:
            The decoded JSON answer; ``None`` for an empty one (204).

        Raises:
            HarborError: the daemon answered with an error (after retries for 5xx/429).
            DaemonUnreachable: no connection could be made within ``retry_for`` seconds.
        """
        url = path if path.startswith(API) else API + path
        query = {k: v for k, v in (params or {}).items() if v is not None}
        hdrs = dict(headers or {})
        if retry is None:
            retry = method.upper() in _IDEMPOTENT or "Idempotency-Key" in hdrs

        def retryable(exc: BaseException) -> bool:
            if _connection_failed(exc):
                return True
            return retry and isinstance(exc, (_Retryable, httpx.TransportError))

        async def attempt() -> httpx.Response:
            response = await self._http.request(method, url, json=json_body, params=query, headers=hdrs)
            if response.status_code >= 500 or response.status_code == 429:
                raise _Retryable(response)
            return response

        try:
            response = await self._retrying(retryable)(attempt)
        except _Retryable as exc:
            raise HarborError.from_response(exc.response) from None
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise HarborError.from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def _unreachable(self, exc: httpx.TransportError) -> HarborError:
        if _connection_failed(exc):
            return DaemonUnreachable(self.base_url, f"{type(exc).__name__}: {exc}")
        return HarborError(0, f"the connection to the daemon at {self.base_url} failed: {exc or type(exc).__name__}",
                           title="Connection failed", url=self.base_url)

    async def get(self, url: str, /, **params: Any) -> Any:
        """``GET`` a path under ``/api/v1``; keyword arguments are query parameters (``None`` left out)."""
        return await self.request("GET", url, params=params)

    async def post(self, url: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        """``POST`` a JSON body to a path under ``/api/v1``; retried only with an ``idempotency_key``."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.request("POST", url, json_body=body, headers=headers)

    # -- daemon ------------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok", "uptimeSeconds"}``."""
        return await self.get("/healthz")

    async def ready(self) -> dict[str, Any]:
        """``GET /readyz`` (raises :class:`HarborError` 503 when not ready)."""
        return await self.get("/readyz")

    async def version(self) -> dict[str, Any]:
        """``GET /version``: ``{"version", "api", "python"}``."""
        return await self.get("/version")

    async def agents(self) -> dict[str, Any]:
        return await self.get("/agents")

    # -- tasks and sessions ------------------------------------------------------------------------

    async def create_task(self, prompt: str | None = None, *, agent: str = "scenario", version: str = "latest",
                          count: int = 1, settings: Mapping[str, Any] | None = None, repo: str | None = None,
                          branch: str | None = None, body: Mapping[str, Any] | None = None,
                          idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /tasks``: create ``count`` sessions of one agent (or send ``body`` as it is).

        A fresh ``Idempotency-Key`` is generated when none is given, so retrying after a lost answer
        never creates the work twice.

        Args:
            prompt: what the agent is asked to do.
            agent: agent type (``scenario``, ``claude-code``, ``command``...).
            version: agent version.
            count: sessions to create.
            settings: the agent's settings (``{"scenario": "demo", "speed": 50}``).
            repo: a git URL or local path to work on; ``None`` for an empty workspace.
            branch: the branch of ``repo``.
            body: a complete request body (any shape of api-contract.md); overrides the above.
            idempotency_key: the key to send.

        Returns:
            ``{"id", "session_ids", "status", "links"}``.
        """
        if body is None:
            if not prompt:
                raise ValueError("create_task needs a prompt (or a body)")
            payload: dict[str, Any] = {"prompt": prompt, "agents": [
                {"type": agent, "version": version, "count": count, "settings": dict(settings or {})}]}
            if repo:
                payload["repo"] = {"mode": "git", "url": repo, **({"branch": branch} if branch else {})}
            body = payload
        return await self.post("/tasks", dict(body),
                               idempotency_key=idempotency_key or str(uuid.uuid4()))

    async def list_sessions(self, *, status: str | None = None, agent: str | None = None,
                            project_id: str | None = None, page: int = 1, per_page: int = 20) -> dict[str, Any]:
        """``GET /sessions``: one page (``{"items", "pagination", "total", "nextPage"}``), newest first."""
        return await self.get("/sessions", status=status, agent=agent,
                              projectId=project_id, page=page, perPage=per_page)

    async def iter_sessions(self, *, status: str | None = None, agent: str | None = None,
                            per_page: int = 200) -> AsyncIterator[dict[str, Any]]:
        """Every matching session, page after page."""
        page: int | None = 1
        while page is not None:
            doc = await self.list_sessions(status=status, agent=agent, page=page, per_page=per_page)
            for item in doc["items"]:
                yield item
            page = doc.get("nextPage")

    async def get_session(self, session_id: str) -> dict[str, Any]:
        """``GET /sessions/{id}``: the flat session object (``stats`` and ``eventCount`` while live)."""
        return await self.get(_s(session_id))

    async def session_info(self, session_id: str) -> dict[str, Any]:
        return await self.get(_s(session_id, "info"))

    async def pause(self, session_id: str) -> dict[str, Any]:
        """``POST /sessions/{id}/pause`` (SIGSTOP); answers the session. 409 if it cannot pause now."""
        return await self.post(_s(session_id, "pause"))

    async def resume(self, session_id: str) -> dict[str, Any]:
        """``POST /sessions/{id}/resume`` (SIGCONT); answers the session. 409 if it is not paused."""
        return await self.post(_s(session_id, "resume"))

    async def stop(self, session_id: str, reason: str | None = None) -> dict[str, Any]:
        """``POST /sessions/{id}/stop``: graceful stop, answered 202 before the session has ended."""
        return await self.post(_s(session_id, "stop"),
                               {"reason": reason} if reason else None)

    async def delete(self, session_id: str) -> None:
        """``DELETE /sessions/{id}``: kill the agent, remove the workspace and the session."""
        await self.request("DELETE", _s(session_id))

    async def prompt(self, session_id: str, text: str) -> dict[str, Any]:
        """``POST /sessions/{id}/prompt``: deliver ``text`` to the running agent."""
        return await self.post(_s(session_id, "prompt"),
                               {"prompt": [{"type": "text", "text": text}]})

    async def logs(self, session_id: str, tail: int = 100) -> list[dict[str, Any]]:
        """The last ``tail`` log lines, oldest first (``{"level", "message", "ts"}``)."""
        doc = await self.get(_s(session_id, "logs"), tail=tail)
        return list(doc.get("logs") or doc.get("items") or [])

    async def events(self, session_id: str, *, page: int = 1, per_page: int = 50, type: str | None = None,
                     level: str | None = None, sort: str = "desc") -> dict[str, Any]:
        """A page of the session's event history (newest first unless ``sort="asc"``)."""
        return await self.get(_s(session_id, "events"), page=page,
                              perPage=per_page, type=type, level=level, sort=sort)

    # -- files, diffs, snapshots, branches -----------------------------------------------------------

    async def files(self, session_id: str, *, status: str | None = None, path: str | None = None
                    ) -> dict[str, Any]:
        """``GET /sessions/{id}/files``: the files the session changed."""
        return await self.get(_s(session_id, "files"), status=status, path=path)

    async def file_content(self, session_id: str, path: str) -> dict[str, Any]:
        return await self.get(_s(session_id, "files", quote(path), "content"))

    async def diff(self, session_id: str, path: str | None = None, *, files: list[str] | None = None,
                   format: str = "unified", context: int = 3) -> dict[str, Any]:
        """``GET /sessions/{id}/diff[/{path}]``: one file's diff, or every changed file's."""
        if path is not None:
            return await self.get(_s(session_id, "diff", quote(path)),
                                  format=format, context=context)
        return await self.get(_s(session_id, "diff"), format=format,
                              context=context, files=",".join(files) if files else None)

    async def timeline(self, session_id: str) -> dict[str, Any]:
        """``GET /sessions/{id}/timeline``: moments and filesystem snapshots."""
        return await self.get(_s(session_id, "timeline"))

    async def snapshots(self, session_id: str) -> list[dict[str, Any]]:
        """``GET /sessions/{id}/fs-snapshots``: the session's filesystem snapshots, oldest first."""
        doc = await self.get(_s(session_id, "fs-snapshots"))
        return list(doc.get("items", []) if isinstance(doc, dict) else doc)

    async def snapshot(self, session_id: str, label: str | None = None, description: str | None = None
                       ) -> dict[str, Any]:
        """``POST /sessions/{id}/fs-snapshots``: take a snapshot of the workspace now."""
        body = {k: v for k, v in {"label": label, "description": description}.items() if v is not None}
        return await self.post(_s(session_id, "fs-snapshots"), body)

    async def branch(self, session_id: str, *, snapshot_id: str | None = None, from_ts: str | None = None,
                     name: str | None = None, message: str | None = None) -> dict[str, Any]:
        """``POST /sessions/{id}/session-branch``: a new session whose workspace starts from a snapshot.

        Not retried once sent: a lost answer could otherwise create two branches.
        """
        body = {k: v for k, v in {"fsSnapshotId": snapshot_id, "fromTs": from_ts, "name": name,
                                  "injectedMessage": message}.items() if v is not None}
        return await self.post(_s(session_id, "session-branch"), body)

    async def branches(self, session_id: str) -> dict[str, Any]:
        return await self.get(_s(session_id, "branches"))

    # -- streams -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def _open_stream(self, path: str, headers: Mapping[str, str] | None = None
                           ) -> AsyncIterator[httpx.Response]:
        """An SSE response whose status is 200 (an error answer raises :class:`HarborError`)."""
        hdrs = {"Accept": "text/event-stream", **(headers or {})}
        request = self._http.build_request("GET", API + path, headers=hdrs,
                                           timeout=httpx.Timeout(10, read=None))
        response = await self._http.send(request, stream=True)
        try:
            if response.status_code >= 400:
                await response.aread()
                if response.status_code >= 500 or response.status_code == 429:
                    raise _Retryable(response)
                raise HarborError.from_response(response)
            yield response
        finally:
            await response.aclose()

    async def follow(self, session_id: str, after: int = 0, *, reconnect_for: float = 120.0
                     ) -> AsyncIterator[dict[str, Any]]:
        """Every event of the session with ``seq > after``, live, until the session has ended.

        The stream is resumed from the last ``seq`` seen (``Last-Event-ID``) whenever it breaks (a
        dropped connection, a daemon restarting), so every event comes once, in order. The iteration
        ends after the event announcing a terminal status (``completed``, ``failed``, ``stopped``,
        ``cancelled``), or when the stream of an already finished session has been read to its end.
        The synthetic status line opening each stream (it has no ``seq``) is not yielded.

        Use it under ``contextlib.aclosing`` when you may stop early, so the connection closes at once.

        Args:
            session_id: the session.
            after: resume point: yield events after this ``seq``.
            reconnect_for: give up after failing to reconnect for this many seconds (before the first
                connection, ``retry_for`` applies instead).

        Raises:
            HarborError: the session does not exist (404) or another error answer.
            DaemonUnreachable: the daemon stayed away for ``reconnect_for`` seconds.
        """
        last = after
        connected = False
        failing_since: float | None = None
        delay = self.backoff
        while True:
            ended_before_open = progressed = False
            problem: httpx.TransportError | _Retryable | None = None
            try:
                headers = {"Last-Event-ID": str(last)} if last else {}
                async with self._open_stream(_s(session_id, "events"), headers) as response:
                    connected = True
                    async for _ident, _name, data in parse_sse(response.aiter_lines()):
                        if not isinstance(data, dict):
                            continue
                        seq = data.get("seq")
                        if not isinstance(seq, int):
                            # The opening line: the status now. Terminal means the replay ends the stream.
                            ended_before_open = data.get("type") == "status" and data.get("status") in TERMINAL
                            continue
                        if seq <= last:
                            continue  # never twice, whatever a server replays
                        last, progressed = seq, True
                        yield data
                        if data.get("type") == "status" and data.get("status") in TERMINAL:
                            return
                if ended_before_open:
                    return
            except (httpx.TransportError, _Retryable) as exc:
                problem = exc
            # The stream broke, or ended before the session did (the daemon is shutting down): resume
            # after a pause. Only progress resets the budget, so a stream that keeps ending empty
            # cannot loop forever.
            now = time.monotonic()
            if progressed:
                failing_since, delay = None, self.backoff
            failing_since = failing_since or now
            if now - failing_since > (reconnect_for if connected else self.retry_for):
                if isinstance(problem, _Retryable):
                    raise HarborError.from_response(problem.response) from None
                if problem is not None:
                    raise self._unreachable(problem) from problem
                raise HarborError(0, f"the event stream of session {session_id} keeps ending before the "
                                     "session does", title="Stream ended", url=self.base_url)
            if isinstance(problem, _Retryable) and problem.retry_after is not None:
                delay = problem.retry_after
            await trio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    async def feed(self) -> AsyncIterator[dict[str, Any]]:
        """The dashboard feed (``GET /events``): session creations and status changes, as they happen.

        One connection: the iteration ends when the daemon closes it; a connection failure raises.
        Prefer :meth:`open_feed` when you also list sessions: it tells you when the subscription is
        in place.

        Raises:
            HarborError / DaemonUnreachable: the feed could not be opened.
        """
        async with self.open_feed() as items:
            async for item in items:
                yield item

    @asynccontextmanager
    async def open_feed(self) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Open the dashboard feed; once entered, the daemon has subscribed this reader.

        Yields an async iterator of feed items (``{"type": "session"|"status", "sessionId", "status", ...}``).
        """
        try:
            async with self._open_stream("/events") as response:
                async def items() -> AsyncIterator[dict[str, Any]]:
                    async for _ident, _name, data in parse_sse(response.aiter_lines()):
                        if isinstance(data, dict):
                            yield data

                yield items()
        except _Retryable as exc:
            raise HarborError.from_response(exc.response) from None
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc


def _s(session_id: str, *parts: str) -> str:
    """The path of a session or one of its sub-resources, with the id escaped."""
    return "/".join([f"/sessions/{quote(session_id, safe='')}", *parts])


__all__ = ["API", "HarborClient"]
