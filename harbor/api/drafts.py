"""Drafts: task requests kept as sent until submitted (``/drafts``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from quart import Blueprint

from harbor.api.deps import harbor, tenant
from harbor.api.routing import endpoint
from harbor.api.schemas import Page, PageQuery
from harbor.drafts import DraftStore

bp = Blueprint("drafts", __name__, url_prefix="/api/v1")


def store() -> DraftStore:
    core = harbor()
    found = core.extensions.get("drafts")
    if found is None:
        found = core.extensions["drafts"] = DraftStore(core.journal)
    return found  # type: ignore[no-any-return]


class DraftBody(BaseModel):
    """Any JSON object: typically a ``POST /tasks`` body in progress. Every field is kept as sent."""

    model_config = ConfigDict(extra="allow")
    prompt: Any = None
    repo: Any = None
    agents: Any = None
    agent: Any = None
    runtime: Any = None
    delivery: Any = None
    labels: Any = None

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class Draft(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    createdAt: str
    updatedAt: str


@endpoint(bp, "POST", "/drafts", summary="Save a draft", role="operator", body=DraftBody, body_required=False,
          status=201, responses={201: Draft})
async def create_draft(body: DraftBody) -> Any:
    doc = await store().create(body.fields(), tenant())
    return doc, 201, {"Location": f"/api/v1/drafts/{doc['id']}"}


@endpoint(bp, "GET", "/drafts", summary="List drafts, most recently updated first", query=PageQuery,
          responses={200: Page})
async def list_drafts(query: PageQuery) -> Any:
    return await store().list(tenant(), query.page, query.perPage)


@endpoint(bp, "GET", "/drafts/<draft_id>", summary="One draft", responses={200: Draft})
async def get_draft(draft_id: str) -> Any:
    return await store().get(draft_id, tenant())


@endpoint(bp, "PUT", "/drafts/<draft_id>", summary="Merge fields into a draft", role="operator", body=DraftBody,
          body_required=False, responses={200: Draft})
async def update_draft(draft_id: str, body: DraftBody) -> Any:
    return await store().update(draft_id, body.fields(), tenant())


@endpoint(bp, "DELETE", "/drafts/<draft_id>", summary="Delete a draft", role="operator", status=204,
          responses={204: None})
async def delete_draft(draft_id: str) -> Any:
    await store().delete(draft_id, tenant())
    return "", 204


@endpoint(bp, "PATCH", "/drafts/<draft_id>", summary="Merge fields into a draft (same as PUT)", role="operator",
          body=DraftBody, body_required=False, responses={200: Draft})
async def patch_draft(draft_id: str, body: DraftBody) -> Any:
    return await store().update(draft_id, body.fields(), tenant())
