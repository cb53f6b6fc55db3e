"""Sessions: list, read, control (pause/resume/stop/prompt), delete, logs, info."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from harbor.api.deps import harbor, tenant
from harbor.api.problems import Problem, not_found
from harbor.api.routing import endpoint
from harbor.api.schemas import (
    Accepted,
    LogsQuery,
    Page,
    PromptAccepted,
    PromptRequest,
    SessionObject,
    SessionQuery,
    StopRequest,
)

bp = Blueprint("sessions", __name__, url_prefix="/api/v1")


async def visible_row(session_id: str) -> Any:
    """The stored session, or 404 (also for another tenant's session: never reveal it exists)."""
    row = await harbor().sessions.get_row(session_id)
    caller = tenant()
    if caller is not None and row.tenant_id != caller:
        raise not_found("session", session_id)
    return row


@endpoint(bp, "GET", "/sessions", summary="List sessions", query=SessionQuery, responses={200: Page})
async def list_sessions(query: SessionQuery) -> Any:
    return await harbor().sessions.list(query, tenant_id=tenant())


@endpoint(bp, "GET", "/sessions/<session_id>", summary="One session", responses={200: SessionObject})
async def get_session(session_id: str) -> Any:
    return harbor().sessions.view(await visible_row(session_id))


@endpoint(bp, "POST", "/sessions/<session_id>/pause", summary="Pause (SIGSTOP the process group)",
          role="operator", responses={200: SessionObject})
async def pause_session(session_id: str) -> Any:
    row = await visible_row(session_id)
    await harbor().sessions.pause(session_id)
    return harbor().sessions.view(row)  # the status comes from the live actor


@endpoint(bp, "POST", "/sessions/<session_id>/resume", summary="Resume (SIGCONT the process group)",
          role="operator", responses={200: SessionObject})
async def resume_session(session_id: str) -> Any:
    row = await visible_row(session_id)
    await harbor().sessions.resume(session_id)
    return harbor().sessions.view(row)  # the status comes from the live actor


@endpoint(bp, "POST", "/sessions/<session_id>/stop", summary="Stop gracefully (TERM, then KILL after a grace)",
          role="operator", body=StopRequest, body_required=False, status=202, responses={202: Accepted})
async def stop_session(session_id: str, body: StopRequest) -> Any:
    await visible_row(session_id)
    status = await harbor().sessions.stop(session_id, body.reason)
    return {"status": "accepted", "sessionId": session_id, "sessionStatus": str(status)}, 202


@endpoint(bp, "DELETE", "/sessions/<session_id>", summary="Kill and delete a session and its workspace",
          role="operator", status=204, responses={204: None})
async def delete_session(session_id: str) -> Any:
    await visible_row(session_id)
    await harbor().sessions.delete(session_id)
    return "", 204


@endpoint(bp, "POST", "/sessions/<session_id>/prompt", summary="Send a prompt to the running agent",
          role="operator", body=PromptRequest, status=202, responses={202: PromptAccepted})
async def prompt_session(session_id: str, body: PromptRequest) -> Any:
    await visible_row(session_id)
    limit = harbor().settings.max_prompt_bytes
    if len(body.text.encode()) > limit:
        raise Problem(413, f"the prompt is larger than {limit} bytes", errors={"prompt": [f"at most {limit} bytes"]})
    return await harbor().sessions.prompt(session_id, body.text), 202


@endpoint(bp, "GET", "/sessions/<session_id>/logs", summary="The last log lines", query=LogsQuery)
async def session_logs(session_id: str, query: LogsQuery) -> Any:
    await visible_row(session_id)
    items = await harbor().events.logs(session_id, query.tail)
    return {"logs": items, "items": items, "nextPage": None}


@endpoint(bp, "GET", "/sessions/<session_id>/info", summary="Session fleet and endpoints")
async def session_info(session_id: str) -> Any:
    row = await visible_row(session_id)
    view = harbor().sessions.view(row)
    return {"id": row.id, "status": view["status"], "fleet": {"leader": row.id, "followers": []},
            "endpoints": {"events": f"/api/v1/sessions/{row.id}/events",
                          "ws": f"/api/v1/sessions/{row.id}/ws"}}
