"""Catalogues: the agent types (with their settings schemas), runtimes, and executors (this host)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from quart import Blueprint

from harbor.api.deps import harbor
from harbor.api.routing import endpoint
from harbor.inventory import Inventory

bp = Blueprint("catalog", __name__, url_prefix="/api/v1")

_LOOSE = ConfigDict(extra="allow")


def inventory() -> Inventory:
    core = harbor()
    found = core.extensions.get("inventory")
    if found is None:
        found = core.extensions["inventory"] = Inventory(core)
    return found  # type: ignore[no-any-return]


class AgentDoc(BaseModel):
    model_config = _LOOSE
    type: str
    versions: list[str]
    settingsSchemaRef: str
    available: bool


class AgentList(BaseModel):
    model_config = _LOOSE
    items: list[AgentDoc]


class RuntimeDoc(BaseModel):
    model_config = _LOOSE
    type: str
    sandboxProfiles: list[str]


class RuntimeList(BaseModel):
    model_config = _LOOSE
    items: list[RuntimeDoc]


class ExecutorDoc(BaseModel):
    model_config = _LOOSE
    id: str
    os: str
    arch: str
    snapshotCapabilities: list[str]
    health: str
    maxConcurrentTasks: int
    runningTasks: int


class ExecutorList(BaseModel):
    model_config = _LOOSE
    items: list[ExecutorDoc]


@endpoint(bp, "GET", "/agents", summary="Agent types this daemon runs", responses={200: AgentList})
async def agents() -> Any:
    return inventory().agents()


@endpoint(bp, "GET", "/schemas/agents/<agent_type>.json", summary="JSON Schema of an agent type's settings",
          responses={200: {"type": "object"}})
async def agent_schema(agent_type: str) -> Any:
    return inventory().agent_schema(agent_type)


@endpoint(bp, "GET", "/runtimes", summary="Runtimes sessions can run in", responses={200: RuntimeList})
async def runtimes() -> Any:
    return inventory().runtimes()


@endpoint(bp, "GET", "/executors", summary="Executors (this host)", responses={200: ExecutorList})
async def executors() -> Any:
    return await inventory().executors()
