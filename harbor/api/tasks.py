"""``POST /tasks``: create work."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from harbor.api.deps import harbor, tenant
from harbor.api.problems import invalid
from harbor.api.routing import endpoint
from harbor.api.schemas import CreateTaskRequest, TaskCreated

bp = Blueprint("tasks", __name__, url_prefix="/api/v1")


@endpoint(bp, "POST", "/tasks", summary="Create a task: one session per agent and count", role="operator",
          body=CreateTaskRequest, status=201, responses={201: TaskCreated})
async def create_task(body: CreateTaskRequest) -> Any:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 255 and key.isprintable()):
        raise invalid({"Idempotency-Key": ["must be 1 to 255 printable characters"]})
    result = await harbor().sessions.create_task(body, idempotency_key=key, tenant_id=tenant())
    return result, 201, {"Location": result["links"]["self"]}
