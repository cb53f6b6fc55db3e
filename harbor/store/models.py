"""The peewee models of what the daemon stores.

The schema itself is created and changed only by the numbered files in ``migrations/``; these
models must match the head of that history (``tests/store/test_migrations.py`` checks it).
Times are unix seconds (floats); ids are ULIDs.
"""

from __future__ import annotations

from peewee import (
    BooleanField,
    CharField,
    CompositeKey,
    DatabaseProxy,
    FloatField,
    IntegerField,
    Model,
    TextField,
)

from harbor.store.fields import JSONField

database = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Task(BaseModel):
    """One ``POST /tasks``: it fans out into one or more sessions."""

    id = CharField(primary_key=True, max_length=26)
    tenant_id = CharField(null=True)
    project_id = CharField(null=True)
    request = JSONField()
    created_at = FloatField()


class Session(BaseModel):
    """One agent run: the durable side of a ``SessionActor``."""

    id = CharField(primary_key=True, max_length=26)
    task_id = CharField(index=True)
    tenant_id = CharField(null=True, index=True)
    project_id = CharField(null=True)
    status = CharField(index=True)
    agent_type = CharField()
    agent_version = CharField(default="latest")
    agent_settings = JSONField(default=dict)
    prompt = TextField(default="")
    prompt_blocks = JSONField(default=list)
    repo = JSONField(default=dict)
    runtime = JSONField(default=dict)
    workspace_request = JSONField(default=dict)
    delivery = JSONField(default=dict)
    labels = JSONField(default=dict)
    webhooks = JSONField(default=list)
    created_at = FloatField(index=True)
    updated_at = FloatField()
    started_at = FloatField(null=True)
    ended_at = FloatField(null=True)
    exit_code = IntegerField(null=True)
    exit_signal = IntegerField(null=True)
    error = TextField(null=True)
    stderr_tail = JSONField(default=list)
    pid = IntegerField(null=True)
    proc_create_time = FloatField(null=True)
    workspace_path = TextField(null=True)
    base_commit = CharField(null=True)
    changes = JSONField(null=True)
    parent_session_id = CharField(null=True)
    from_snapshot_id = CharField(null=True)
    timeout_seconds = FloatField(null=True)


class Event(BaseModel):
    """One event of a session, keyed by (session, seq). Written in batches by the journal."""

    session_id = CharField()
    seq = IntegerField()
    kind = CharField()
    ts = FloatField()
    data = TextField()  # JSON, written raw by the journal's executemany

    class Meta:
        primary_key = CompositeKey("session_id", "seq")


class Snapshot(BaseModel):
    id = CharField(primary_key=True, max_length=26)
    session_id = CharField(index=True)
    provider = CharField()
    ref = TextField()
    label = TextField(null=True)
    description = TextField(null=True)
    trigger = CharField(default="manual")
    created_at = FloatField()
    size_bytes = IntegerField(default=0)
    parent_id = CharField(null=True)


class Moment(BaseModel):
    id = CharField(primary_key=True, max_length=26)
    session_id = CharField(index=True)
    label = TextField()
    description = TextField(null=True)
    kind = CharField(default="manual")
    ts = FloatField()


class Draft(BaseModel):
    id = CharField(primary_key=True, max_length=26)
    tenant_id = CharField(null=True, index=True)
    data = JSONField(default=dict)
    created_at = FloatField()
    updated_at = FloatField()


class Repository(BaseModel):
    id = CharField(primary_key=True, max_length=26)
    tenant_id = CharField(null=True)
    project_id = CharField(null=True)
    url = TextField()
    name = TextField()
    scm_provider = CharField(default="git")
    default_branch = CharField(null=True)
    last_commit = CharField(null=True)
    created_at = FloatField()
    last_used_at = FloatField()


class Workspace(BaseModel):
    id = CharField(primary_key=True, max_length=26)
    session_id = CharField(index=True)
    path = TextField()
    kind = CharField()
    status = CharField(default="provisioned")
    base_commit = CharField(null=True)
    created_at = FloatField()
    removed_at = FloatField(null=True)


class IdempotencyKey(BaseModel):
    """A remembered answer to a POST carrying ``Idempotency-Key``."""

    tenant_id = CharField(default="")
    key = CharField()
    fingerprint = CharField()
    status = IntegerField()
    body = JSONField()
    created_at = FloatField()
    pending = BooleanField(default=False)

    class Meta:
        primary_key = CompositeKey("tenant_id", "key")


ALL_MODELS: tuple[type[BaseModel], ...] = (
    Task, Session, Event, Snapshot, Moment, Draft, Repository, Workspace, IdempotencyKey,
)


class ApiKey(BaseModel):
    """An API key: only its SHA-256 is kept; ``prefix`` (the first characters) identifies it to people."""

    id = CharField(primary_key=True, max_length=26)
    name = TextField(null=True)
    prefix = CharField(index=True)
    key_hash = CharField(unique=True)
    role = CharField()
    tenant_id = CharField(null=True)
    created_at = FloatField()
    last_used_at = FloatField(null=True)
    revoked = BooleanField(default=False)


class AuditEntry(BaseModel):
    """One privileged action: who, in which tenant, what, on what, with which outcome."""

    id = IntegerField(primary_key=True)
    ts = FloatField(index=True)
    principal = TextField(null=True)
    tenant_id = CharField(null=True, index=True)
    action = CharField()
    target = TextField(null=True)
    outcome = CharField()
    request_id = CharField(null=True)
    client = CharField(null=True)
    detail = TextField(null=True)


ALL_MODELS = (*ALL_MODELS, ApiKey, AuditEntry)
