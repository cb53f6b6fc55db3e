"""Catalogues: the agent types (with their settings schemas), runtimes, and executors (this host)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from quart import Blueprint

from harbor.api.deps import harbor
from harbor.api.routing import endpoint
from harbor.api.schemas import LOOSE, Items
from harbor.inventory import Inventory

bp = Blueprint("catalog", __name__, url_prefix="/api/v1")



def inventory() -> Inventory:
    core = harbor()
    found = core.extensions.get("inventory")
    if found is None:
        found = core.extensions["inventory"] = Inventory(core)
    return found  # type: ignore[no-any-return]


class AgentDoc(BaseModel):
    model_config = LOOSE
    type: str
    versions: list[str]
    settingsSchemaRef: str
    available: bool



class RuntimeDoc(BaseModel):
    model_config = LOOSE
    type: str
    sandboxProfiles: list[str]



class ExecutorDoc(BaseModel):
    model_config = LOOSE
    id: str
    os: str
    arch: str
    snapshotCapabilities: list[str]
    health: str
    maxConcurrentTasks: int
    runningTasks: int



@endpoint(bp, "GET", "/agents", summary="Agent types this daemon runs", responses={200: Items[AgentDoc]})
async def agents() -> Any:
    return inventory().agents()


@endpoint(bp, "GET", "/schemas/agents/<agent_type>.json", summary="JSON Schema of an agent type's settings",
          responses={200: {"type": "object"}})
async def agent_schema(agent_type: str) -> Any:
    return inventory().agent_schema(agent_type)


@endpoint(bp, "GET", "/runtimes", summary="Runtimes sessions can run in", responses={200: Items[RuntimeDoc]})
async def runtimes() -> Any:
    return inventory().runtimes()


@endpoint(bp, "GET", "/executors", summary="Executors (this host)", responses={200: Items[ExecutorDoc]})
async def executors() -> Any:
    return await inventory().executors()
