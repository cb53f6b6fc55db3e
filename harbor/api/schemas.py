"""Request and response models of the tasks and sessions API (api-contract.md).

Requests accept every shape the three client families send (browser, spec, Rust client): unknown
keys are kept, camelCase and snake_case aliases both work. Responses are documented loosely
(extra keys allowed) because the session object is a superset read by all of them.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

OPEN = ConfigDict(extra="allow", populate_by_name=True)
#: Response documents: clients may receive more fields than a model documents.
LOOSE = ConfigDict(extra="allow")

T = TypeVar("T")


class Items(BaseModel, Generic[T]):
    """The ``{"items": [...]}`` envelope of the catalogue-style lists."""

    model_config = LOOSE
    items: list[T]


class ContentBlock(BaseModel):
    model_config = OPEN
    type: Literal["text", "image", "audio", "resource"]
    text: str | None = None
    uri: str | None = None
    data: str | None = None
    mimeType: str | None = None

    @model_validator(mode="after")
    def _text_blocks_have_text(self) -> ContentBlock:
        if self.type == "text" and self.text is None:
            raise ValueError("a text block needs 'text'")
        return self


class RepoSpec(BaseModel):
    model_config = OPEN
    mode: Literal["git", "upload", "none"] | None = None
    url: str | None = Field(None, max_length=4096)
    branch: str | None = Field(None, max_length=255)
    commit: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _git_needs_url(self) -> RepoSpec:
        if self.mode is None:
            self.mode = "git" if self.url else "none"
        if self.mode == "git" and not self.url:
            raise ValueError("url: is required when mode is git")
        for name in ("branch", "commit"):
            value = getattr(self, name)
            if value is not None and (value.startswith("-") or any(c.isspace() for c in value)):
                raise ValueError(f"{name}: is not a valid git {name}")
        return self


class Resources(BaseModel):
    model_config = OPEN
    cpu: float | None = Field(None, gt=0)
    memoryMiB: int | None = Field(None, gt=0)


class RuntimeSpec(BaseModel):
    model_config = OPEN
    type: Literal["devcontainer", "local", "disabled"] = "local"
    devcontainerPath: str | None = None
    resources: Resources | None = None


class WorkspaceSpec(BaseModel):
    model_config = OPEN
    snapshotPreference: str | None = None
    executionHostId: str | None = None


class DeliverySpec(BaseModel):
    model_config = OPEN
    mode: Literal["pr", "branch", "patch"] | None = None
    targetBranch: str | None = None


class Webhook(BaseModel):
    model_config = OPEN
    event: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://", max_length=2048)


class AgentEntry(BaseModel):
    model_config = OPEN
    type: str = Field(min_length=1, max_length=64)
    version: str = Field("latest", max_length=64)
    count: int = Field(1, ge=1, le=50)
    settings: dict[str, Any] = Field(default_factory=dict)


class CreateTaskRequest(BaseModel):
    """``POST /tasks`` in any of the contract's three shapes."""

    # Documented as well as enforced: at least one of ``agents`` (spec) or ``agent`` (browser).
    model_config = ConfigDict(extra="allow", populate_by_name=True, json_schema_extra={
        "anyOf": [{"required": ["agents"]}, {"required": ["agent"]}]})
    prompt: str | list[ContentBlock]
    agent: AgentEntry | None = None
    agents: list[AgentEntry] | None = Field(None, min_length=1, max_length=20)
    tenantId: str | None = Field(None, validation_alias=AliasChoices("tenantId", "tenant_id"), max_length=128)
    projectId: str | None = Field(None, validation_alias=AliasChoices("projectId", "project_id"), max_length=128)
    repo: RepoSpec = Field(default_factory=RepoSpec)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    workspace: WorkspaceSpec = Field(default_factory=WorkspaceSpec)
    delivery: DeliverySpec = Field(default_factory=DeliverySpec)
    labels: dict[str, str] = Field(default_factory=dict)
    webhooks: list[Webhook] = Field(default_factory=list, max_length=20)
    timeoutSeconds: float | None = Field(None, gt=0, le=7 * 86400)

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, value: str | list[ContentBlock]) -> str | list[ContentBlock]:
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("must not be empty")
            # The prompt reaches agents on their command line or in their environment, where one
            # string may not exceed 128 KiB (MAX_ARG_STRLEN): keep well under it.
            if len(value.encode()) > 64 * 1024:
                raise ValueError("must be at most 64 KiB")
        elif not value:
            raise ValueError("must not be empty")
        elif sum(len((b.text or "").encode()) for b in value) > 64 * 1024:
            raise ValueError("its text must be at most 64 KiB")
        return value

    @property
    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        return "\n\n".join(b.text for b in self.prompt if b.type == "text" and b.text)

    def agent_entries(self) -> tuple[str, list[AgentEntry]]:
        """The agents asked for and the field name they came under (``agents`` or ``agent``)."""
        if self.agents:
            return "agents", self.agents
        if self.agent is not None:
            return "agent", [self.agent]
        return "agents", []


class TaskLinks(BaseModel):
    self: str
    events: str
    logs: str


class TaskCreated(BaseModel):
    id: str
    session_ids: list[str]
    status: str
    links: TaskLinks


class StopRequest(BaseModel):
    model_config = OPEN
    reason: str | None = Field(None, max_length=1000)


class PromptRequest(BaseModel):
    """``{"prompt": [content blocks]}`` or the legacy ``{"message": "text"}``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, json_schema_extra={
        "anyOf": [{"required": ["prompt"]}, {"required": ["message"]}]})
    prompt: str | list[ContentBlock] | None = None
    message: str | None = None

    @model_validator(mode="after")
    def _has_text(self) -> PromptRequest:
        if not self.text.strip():
            raise ValueError("prompt: is required (content blocks with text, or 'message')")
        return self

    @property
    def text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if self.prompt:
            return "\n\n".join(b.text for b in self.prompt if b.type == "text" and b.text)
        return self.message or ""


class Pagination(BaseModel):
    page: int
    perPage: int
    total: int
    totalPages: int


class Page(BaseModel):
    """The superset list envelope every client reads."""

    model_config = ConfigDict(extra="allow")
    items: list[dict[str, Any]]
    pagination: Pagination
    total: int
    nextPage: int | None


class SessionObject(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    status: str
    createdAt: str
    prompt: str
    agent: dict[str, Any]
    links: dict[str, str]
    recent_events: list[dict[str, Any]]
    pid: int | None = Field(None, description="The agent's process id (leader of its process group), once started")


class Accepted(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str


class PromptAccepted(BaseModel):
    sessionId: str
    accepted: bool
    ts: str


class PageQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    page: int = Field(1, ge=1, le=1_000_000)
    perPage: int = Field(20, ge=1, le=200, validation_alias=AliasChoices("perPage", "per_page"))


class SessionQuery(PageQuery):
    status: str | None = Field(None, max_length=200, description="Comma-separated statuses")
    agent: str | None = Field(None, max_length=64)
    projectId: str | None = Field(None, validation_alias=AliasChoices("projectId", "project_id"), max_length=128)
    tenantId: str | None = Field(None, validation_alias=AliasChoices("tenantId", "tenant_id"), max_length=128)


class LogsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tail: int = Field(100, ge=1, le=10_000)
