"""Initial schema: tasks, sessions, events, snapshots, moments, drafts, repositories, workspaces,
idempotency keys. Frozen copies of the models as they were when this migration was written."""

from peewee import BooleanField, CharField, CompositeKey, FloatField, IntegerField, Model, TextField

J = TextField  # JSON documents are text


def up(migrator, db):
    class M(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Task(M):
        id = CharField(primary_key=True, max_length=26)
        tenant_id = CharField(null=True)
        project_id = CharField(null=True)
        request = J()
        created_at = FloatField()

    class Session(M):
        id = CharField(primary_key=True, max_length=26)
        task_id = CharField(index=True)
        tenant_id = CharField(null=True, index=True)
        project_id = CharField(null=True)
        status = CharField(index=True)
        agent_type = CharField()
        agent_version = CharField(default="latest")
        agent_settings, prompt_blocks, repo, runtime = J(), J(), J(), J()
        workspace_request, delivery, labels, webhooks, stderr_tail = J(), J(), J(), J(), J()
        prompt = TextField(default="")
        created_at = FloatField(index=True)
        updated_at = FloatField()
        started_at = FloatField(null=True)
        ended_at = FloatField(null=True)
        exit_code = IntegerField(null=True)
        exit_signal = IntegerField(null=True)
        error = TextField(null=True)
        pid = IntegerField(null=True)
        proc_create_time = FloatField(null=True)
        workspace_path = TextField(null=True)
        base_commit = CharField(null=True)
        changes = J(null=True)
        parent_session_id = CharField(null=True)
        from_snapshot_id = CharField(null=True)
        timeout_seconds = FloatField(null=True)

    class Event(M):
        session_id = CharField()
        seq = IntegerField()
        kind = CharField()
        ts = FloatField()
        data = TextField()

        class Meta:
            primary_key = CompositeKey("session_id", "seq")

    class Snapshot(M):
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

    class Moment(M):
        id = CharField(primary_key=True, max_length=26)
        session_id = CharField(index=True)
        label = TextField()
        description = TextField(null=True)
        kind = CharField(default="manual")
        ts = FloatField()

    class Draft(M):
        id = CharField(primary_key=True, max_length=26)
        tenant_id = CharField(null=True, index=True)
        data = J()
        created_at = FloatField()
        updated_at = FloatField()

    class Repository(M):
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

    class Workspace(M):
        id = CharField(primary_key=True, max_length=26)
        session_id = CharField(index=True)
        path = TextField()
        kind = CharField()
        status = CharField(default="provisioned")
        base_commit = CharField(null=True)
        created_at = FloatField()
        removed_at = FloatField(null=True)

    class IdempotencyKey(M):
        tenant_id = CharField(default="")
        key = CharField()
        fingerprint = CharField()
        status = IntegerField()
        body = J()
        created_at = FloatField()
        pending = BooleanField(default=False)

        class Meta:
            primary_key = CompositeKey("tenant_id", "key")

    db.create_tables([Task, Session, Event, Snapshot, Moment, Draft, Repository, Workspace, IdempotencyKey])
