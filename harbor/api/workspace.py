"""Workspace views of a session: changed files, file metadata/content/preview, diffs, tree, search, info.

Every path parameter is relative to the workspace root and is checked by
:class:`~harbor.workspace_views.WorkspaceViews` (``..``, absolute paths and symlinks leading out
are refused with 400; nothing outside the workspace is read). The HTTP layer decodes a path once.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from quart import Blueprint
from quart.blueprints import BlueprintSetupState

from harbor.api.deps import harbor
from harbor.api.routing import endpoint
from harbor.api.schemas import LOOSE
from harbor.api.sessions import visible_row
from harbor.workspace_views import WorkspaceViews

bp = Blueprint("workspace", __name__, url_prefix="/api/v1")

_QUERY = ConfigDict(populate_by_name=True, extra="ignore")


def views() -> WorkspaceViews:
    core = harbor()
    found = core.extensions.get("workspace_views")
    if found is None:
        found = core.extensions["workspace_views"] = WorkspaceViews(core)
    return found  # type: ignore[no-any-return]


# -- query and response models ------------------------------------------------------------------


class FilesQuery(BaseModel):
    model_config = _QUERY
    status: str | None = Field(None, max_length=100, description="Comma-separated: added,modified,deleted,renamed")
    path: str | None = Field(None, max_length=4096, description="Glob (or directory prefix) the path must match")


class PreviewQuery(BaseModel):
    model_config = _QUERY
    max_lines: int = Field(50, ge=1, le=10_000, validation_alias=AliasChoices("max_lines", "maxLines"))
    max_bytes: int = Field(65_536, ge=1, le=1 << 20, validation_alias=AliasChoices("max_bytes", "maxBytes"))


class DiffQuery(BaseModel):
    model_config = _QUERY
    context: int = Field(3, ge=0, le=1000, description="Context lines around each change")
    full: bool = Field(False, description="Show the whole file as context and return its content")
    format: Literal["unified", "split", "html"] = "unified"


class DiffManyQuery(BaseModel):
    model_config = _QUERY
    files: str | list[str] | None = Field(None, description="Comma-separated paths (default: every changed file)")
    context: int = Field(3, ge=0, le=1000)
    format: Literal["unified", "split", "html"] = "unified"

    def paths(self) -> list[str]:
        raw = self.files if isinstance(self.files, list) else [self.files] if self.files else []
        return [p.strip() for item in raw for p in item.split(",") if p.strip()]


class TreeQuery(BaseModel):
    model_config = _QUERY
    path: str = Field("", max_length=4096)
    recursive: bool = False
    modified_only: bool = Field(False, validation_alias=AliasChoices("modified_only", "modifiedOnly"))


class SearchQuery(BaseModel):
    model_config = _QUERY
    q: str = Field(min_length=1, max_length=200, description="Substring of the name, or a glob (*, ?, [])")
    type: Literal["file", "directory", "all", "any"] = "all"
    limit: int = Field(50, ge=1, le=1000)


class ChangedFile(BaseModel):
    model_config = LOOSE
    path: str
    status: str
    lines_added: int
    lines_removed: int
    last_modified: str | None
    size_bytes: int | None
    change_type: str


class ChangedFiles(BaseModel):
    model_config = LOOSE
    items: list[ChangedFile]
    total: int


class FileContent(BaseModel):
    model_config = LOOSE
    path: str
    content: str
    encoding: str
    size_bytes: int
    last_modified: str | None
    is_modified: bool


class HunkDoc(BaseModel):
    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    content: str


class FileDiffDoc(BaseModel):
    model_config = LOOSE
    path: str
    status: str
    diff: str
    lines_added: int
    lines_removed: int
    context_lines: int
    full_file: bool
    file_content: str | None
    hunks: list[HunkDoc]


class MultiDiff(BaseModel):
    model_config = LOOSE
    files: list[FileDiffDoc]
    total_lines_added: int
    total_lines_removed: int


class TreeNode(BaseModel):
    model_config = LOOSE
    path: str
    type: str
    size_bytes: int | None
    last_modified: str | None
    is_modified: bool
    children: list[TreeNode] | None


# -- routes -------------------------------------------------------------------------------------


@endpoint(bp, "GET", "/sessions/<session_id>/files", summary="Files the session changed, against its base",
          query=FilesQuery, responses={200: ChangedFiles})
async def changed_files(session_id: str, query: FilesQuery) -> Any:
    return await views().list_changes(await visible_row(session_id), query.status, query.path)


@endpoint(bp, "GET", "/sessions/<session_id>/files/<path:path>", summary="A file's metadata and edit history")
async def file_info(session_id: str, path: str) -> Any:
    return await views().file_info(await visible_row(session_id), path)


@endpoint(bp, "GET", "/sessions/<session_id>/files/<path:path>/content", summary="A file's content",
          responses={200: FileContent})
async def file_content(session_id: str, path: str) -> Any:
    return await views().content(await visible_row(session_id), path)


@endpoint(bp, "GET", "/sessions/<session_id>/files/<path:path>/preview", summary="The first lines of a file",
          query=PreviewQuery)
async def file_preview(session_id: str, path: str, query: PreviewQuery) -> Any:
    return await views().preview(await visible_row(session_id), path, query.max_lines, query.max_bytes)


@endpoint(bp, "GET", "/sessions/<session_id>/diff", summary="Diffs of several files (default: every changed file)",
          query=DiffManyQuery, responses={200: MultiDiff})
async def session_diff(session_id: str, query: DiffManyQuery) -> Any:
    return await views().diffs(await visible_row(session_id), query.paths(), context=query.context,
                               fmt=query.format)


@endpoint(bp, "GET", "/sessions/<session_id>/diff/<path:path>", summary="One file's diff against the base",
          query=DiffQuery, responses={200: FileDiffDoc})
async def file_diff(session_id: str, path: str, query: DiffQuery) -> Any:
    return await views().diff(await visible_row(session_id), path, context=query.context, full=query.full,
                              fmt=query.format)


@endpoint(bp, "GET", "/sessions/<session_id>/workspace/files", summary="The workspace as a tree",
          query=TreeQuery, responses={200: TreeNode})
async def workspace_tree(session_id: str, query: TreeQuery) -> Any:
    return await views().tree(await visible_row(session_id), query.path, recursive=query.recursive,
                              modified_only=query.modified_only)


@endpoint(bp, "GET", "/sessions/<session_id>/workspace/info", summary="The workspace: where, what kind, how big")
async def workspace_info(session_id: str) -> Any:
    return await views().info(await visible_row(session_id))


@endpoint(bp, "GET", "/sessions/<session_id>/workspace/search/files", summary="Find files by name",
          query=SearchQuery)
async def workspace_search(session_id: str, query: SearchQuery) -> Any:
    kind = "all" if query.type == "any" else query.type
    return await views().search(await visible_row(session_id), query.q, kind, query.limit)


@bp.record_once
def _no_slash_merging(state: BlueprintSetupState) -> None:
    """``files//etc/passwd`` is an absolute path: refuse it (404) instead of redirecting to the merged
    ``files/etc/passwd``, which names a different file than the client asked for."""
    for rule in state.app.url_map.iter_rules():
        if rule.endpoint.startswith(f"{bp.name}."):
            rule.merge_slashes = False
