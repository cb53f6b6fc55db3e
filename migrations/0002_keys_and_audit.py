"""API keys (only a hash is stored) and the audit log of privileged actions."""

from peewee import BooleanField, CharField, FloatField, IntegerField, Model, TextField


def up(migrator, db):
    class M(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class ApiKey(M):
        id = CharField(primary_key=True, max_length=26)
        name = TextField(null=True)
        prefix = CharField(index=True)
        key_hash = CharField(unique=True)
        role = CharField()
        tenant_id = CharField(null=True)
        created_at = FloatField()
        last_used_at = FloatField(null=True)
        revoked = BooleanField(default=False)

    class AuditEntry(M):
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

    db.create_tables([ApiKey, AuditEntry])
