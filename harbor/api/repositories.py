"""Repositories (indexed from tasks or registered), their branches and files; projects; workspaces."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from quart import Blueprint

from harbor.api.catalog import inventory
from harbor.api.deps import tenant
from harbor.api.problems import invalid
from harbor.api.routing import endpoint
from harbor.api.schemas import LOOSE, Items, Page, PageQuery
from harbor.inventory import MAX_REPO_FILES, repository_view
from harbor.repositories import local_path_problem

bp = Blueprint("repositories", __name__, url_prefix="/api/v1")



class ReposQuery(PageQuery):
    tenantId: str | None = Field(None, validation_alias=AliasChoices("tenantId", "tenant_id"), max_length=128)
    projectId: str | None = Field(None, validation_alias=AliasChoices("projectId", "project_id"), max_length=128)
    perPage: int = Field(200, ge=1, le=200, validation_alias=AliasChoices("perPage", "per_page"))


class RepositoryFilesQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    branch: str | None = Field(None, max_length=255, validation_alias=AliasChoices("branch", "ref"))
    path: str | None = Field(None, max_length=4096, description="Only paths starting with this prefix")
    limit: int = Field(1000, ge=1, le=MAX_REPO_FILES)


class WorkspacesQuery(PageQuery):
    status: str | None = Field(None, max_length=100, description="active, idle, removed, provisioned")


class RegisterRepository(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    url: str = Field(min_length=1, max_length=4096, validation_alias=AliasChoices("url", "remoteUrl"))
    branch: str | None = Field(None, max_length=255, validation_alias=AliasChoices("branch", "defaultBranch"))
    name: str | None = Field(None, max_length=200, validation_alias=AliasChoices("name", "displayName"))
    projectId: str | None = Field(None, max_length=128, validation_alias=AliasChoices("projectId", "project_id"))


class RepositoryDoc(BaseModel):
    model_config = LOOSE
    id: str
    name: str
    branch: str | None
    lastCommit: str | None
    url: str


class BranchDoc(BaseModel):
    model_config = LOOSE
    name: str
    is_default: bool
    isDefault: bool
    last_commit: str


class Branches(BaseModel):
    model_config = LOOSE
    repositoryId: str
    branches: list[BranchDoc]


class RepoFile(BaseModel):
    path: str
    detail: str


class RepositoryFiles(BaseModel):
    model_config = LOOSE
    repositoryId: str
    files: list[RepoFile]



class WorkspaceDoc(BaseModel):
    model_config = LOOSE
    id: str
    status: str
    executorId: str
    sessionId: str
    path: str
    storageUsed: int | None
    createdAt: str


@endpoint(bp, "GET", "/repositories", summary="Repositories tasks have used (or were registered)",
          query=PageQuery, responses={200: Page})
async def list_repositories(query: PageQuery) -> Any:
    return await inventory().repositories(tenant(), query.page, query.perPage)


@endpoint(bp, "POST", "/repositories", summary="Register a repository", role="operator", body=RegisterRepository,
          status=201, responses={201: RepositoryDoc, 200: RepositoryDoc})
async def register_repository(body: RegisterRepository) -> Any:
    url = body.url.strip()
    if problem := local_path_problem(url):
        raise invalid({"url": [problem]})
    doc, created = await inventory().register(url, body.branch, body.name, body.projectId, tenant())
    return doc, 201 if created else 200


@endpoint(bp, "GET", "/repositories/<repo_id>", summary="One repository", responses={200: RepositoryDoc})
async def get_repository(repo_id: str) -> Any:
    return repository_view(await inventory().repository(repo_id, tenant()))


@endpoint(bp, "GET", "/repositories/<repo_id>/branches", summary="A repository's branches (from its cached clone)",
          responses={200: Branches})
async def repository_branches(repo_id: str) -> Any:
    inv = inventory()
    return await inv.branches(await inv.repository(repo_id, tenant()))


@endpoint(bp, "GET", "/repositories/<repo_id>/files", summary="Files of a repository at a branch or revision",
          query=RepositoryFilesQuery, responses={200: RepositoryFiles})
async def repository_files(repo_id: str, query: RepositoryFilesQuery) -> Any:
    inv = inventory()
    return await inv.files(await inv.repository(repo_id, tenant()), query.branch, query.path, query.limit)


@endpoint(bp, "GET", "/repos", summary="Repositories (the spec's shape)", query=ReposQuery, responses={200: Page})
async def list_repos(query: ReposQuery) -> Any:
    return await inventory().repositories(tenant() or query.tenantId, query.page, query.perPage, query.projectId)


@endpoint(bp, "GET", "/projects", summary="Projects sessions and repositories belong to",
          responses={200: Items[dict[str, Any]]})
async def list_projects() -> Any:
    return await inventory().projects(tenant())


@endpoint(bp, "GET", "/workspaces", summary="Provisioned workspaces", query=WorkspacesQuery, responses={200: Page})
async def list_workspaces(query: WorkspacesQuery) -> Any:
    return await inventory().workspaces(tenant(), query.status, query.page, query.perPage)


@endpoint(bp, "GET", "/workspaces/<workspace_id>", summary="One workspace (by its id or its session's id)",
          responses={200: WorkspaceDoc})
async def get_workspace(workspace_id: str) -> Any:
    return await inventory().workspace(workspace_id, tenant())
