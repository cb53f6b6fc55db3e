"""A session's timeline: moments, filesystem snapshots, seek (read-only view), session-branch, branches."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from quart import Blueprint

from harbor.api.deps import harbor
from harbor.api.routing import endpoint
from harbor.api.schemas import LOOSE, Items
from harbor.api.sessions import visible_row
from harbor.timeline import TimelineService

bp = Blueprint("timeline", __name__, url_prefix="/api/v1")

_BODY = ConfigDict(extra="allow", populate_by_name=True)
_TIME = "ISO-8601 time, unix seconds, or seconds since the session was created (numbers below 1e9)"


def service() -> TimelineService:
    core = harbor()
    found = core.extensions.get("timeline")
    if found is None:
        found = core.extensions["timeline"] = TimelineService(core)
    return found  # type: ignore[no-any-return]


class SnapshotRequest(BaseModel):
    model_config = _BODY
    label: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=4000)


class MomentRequest(BaseModel):
    model_config = _BODY
    label: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=4000)
    type: str | None = Field(None, max_length=64)


class SeekRequest(BaseModel):
    model_config = _BODY
    ts: str | float | None = Field(None, description=_TIME)
    fsSnapshotId: str | None = Field(None, max_length=64,
                                     validation_alias=AliasChoices("fsSnapshotId", "fs_snapshot_id", "snapshotId"))
    mountReadonly: bool = True


class BranchRequest(BaseModel):
    model_config = _BODY
    fsSnapshotId: str | None = Field(None, max_length=64,
                                     validation_alias=AliasChoices("fsSnapshotId", "fs_snapshot_id", "snapshotId"))
    fromTs: str | float | None = Field(None, validation_alias=AliasChoices("fromTs", "from_ts", "ts"),
                                       description=_TIME)
    name: str | None = Field(None, max_length=200)
    injectedMessage: str | None = Field(None, max_length=256 * 1024,
                                        validation_alias=AliasChoices("injectedMessage", "injected_message",
                                                                      "message", "prompt"))


class SnapshotInner(BaseModel):
    id: str
    mount: str | None
    size_bytes: int


class SnapshotDoc(BaseModel):
    model_config = LOOSE
    id: str
    ts: str
    label: str | None
    provider: str
    snapshot: SnapshotInner



class MomentDoc(BaseModel):
    model_config = LOOSE
    id: str
    ts: str
    label: str
    kind: str


class TimelineDoc(BaseModel):
    model_config = LOOSE
    sessionId: str
    durationSec: float
    currentTime: float
    moments: list[MomentDoc]
    fsSnapshots: list[SnapshotDoc]


class SeekDoc(BaseModel):
    model_config = LOOSE
    seekTime: str
    fsSnapshotId: str
    mountPath: str
    workspaceView: str


class BranchCreated(BaseModel):
    model_config = LOOSE
    id: str
    status: str
    parentSessionId: str
    fromSnapshotId: str
    links: dict[str, str]


@endpoint(bp, "GET", "/sessions/<session_id>/timeline", summary="Moments and filesystem snapshots in time order",
          responses={200: TimelineDoc})
async def timeline(session_id: str) -> Any:
    return await service().timeline(await visible_row(session_id))


@endpoint(bp, "GET", "/sessions/<session_id>/fs-snapshots", summary="The session's snapshots, oldest first",
          responses={200: Items[SnapshotDoc]})
async def list_snapshots(session_id: str) -> Any:
    return await service().list_snapshots(await visible_row(session_id))


@endpoint(bp, "POST", "/sessions/<session_id>/fs-snapshots", summary="Snapshot the workspace now",
          role="operator", body=SnapshotRequest, body_required=False, status=201, responses={201: SnapshotDoc})
async def take_snapshot(session_id: str, body: SnapshotRequest) -> Any:
    return await service().take(await visible_row(session_id), body.label, body.description), 201


@endpoint(bp, "POST", "/sessions/<session_id>/moments", summary="Mark a moment on the timeline",
          role="operator", body=MomentRequest, status=201, responses={201: MomentDoc})
async def add_moment(session_id: str, body: MomentRequest) -> Any:
    return await service().add_moment(await visible_row(session_id), body.label, body.description, body.type), 201


@endpoint(bp, "POST", "/sessions/<session_id>/seek", summary="Materialise a snapshot read-only",
          role="operator", body=SeekRequest, body_required=False, responses={200: SeekDoc})
async def seek(session_id: str, body: SeekRequest) -> Any:
    return await service().seek(await visible_row(session_id), body.fsSnapshotId, body.ts)


@endpoint(bp, "POST", "/sessions/<session_id>/session-branch",
          summary="A new session whose workspace starts from a snapshot", role="operator", body=BranchRequest,
          body_required=False, status=201, responses={201: BranchCreated})
async def session_branch(session_id: str, body: BranchRequest) -> Any:
    result = await service().branch(await visible_row(session_id), snapshot_id=body.fsSnapshotId,
                                    from_ts=body.fromTs, name=body.name, message=body.injectedMessage)
    return result, 201, {"Location": result["links"]["self"]}


@endpoint(bp, "GET", "/sessions/<session_id>/branches", summary="Sessions branched from this one")
async def branches(session_id: str) -> Any:
    return await service().branches(await visible_row(session_id))
