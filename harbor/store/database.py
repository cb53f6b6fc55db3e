"""Opening the database named by a URL, and bringing its schema to the head of ``migrations/``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import peewee
from playhouse.db_url import connect
from playhouse.migrations import Runner

import migrations as _migrations
from harbor.store.models import database

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(_migrations.__file__).parent

# WAL lets readers run beside the one writer; synchronous=normal is durable across a daemon crash
# (only an OS crash can lose the last transactions); busy_timeout rides out a concurrent writer.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "cache_size": -16000,
}


class DatabaseError(Exception):
    """The database cannot be opened or migrated; the message says what to do."""


def open_database(url: str) -> peewee.Database:
    """Open (lazily connect) the database at ``url`` and bind the models to it.

    ``sqlite:///path`` (the default; parent directories are created) or ``postgresql://...``.

    Raises:
        DatabaseError: the URL's scheme is not supported.
    """
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        path = url.removeprefix("sqlite:///")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db: peewee.Database = peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    elif scheme in ("postgres", "postgresql"):
        try:
            db = connect(url)
        except ImportError as exc:
            raise DatabaseError("PostgreSQL needs psycopg2: pip install 'agent-harbor[postgres]'") from exc
    else:
        raise DatabaseError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")
    database.initialize(db)
    return db


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str
    pending: list[str]


def _runner(db: peewee.Database) -> Runner:
    return Runner(db, str(MIGRATIONS_DIR))


def schema_status(db: peewee.Database) -> SchemaStatus:
    """Which migrations are applied and which are pending. Blocking."""
    rows = _runner(db).status()
    applied = [m.name for m in rows if m.applied]
    return SchemaStatus(current=applied[-1] if applied else None, head=rows[-1].name,
                        pending=[m.name for m in rows if not m.applied])


def migrate(db: peewee.Database) -> list[str]:
    """Apply pending migrations in order, each in its own transaction. Blocking; idempotent.

    Returns:
        The names applied (empty when the schema was already at head).

    Raises:
        DatabaseError: a migration failed (the schema stays at the last good version).
    """
    pending = schema_status(db).pending
    if not pending:
        return []
    try:
        _runner(db).up()
    except Exception as exc:
        raise DatabaseError(f"migration failed: {exc}") from exc
    log.info("database migrated", extra={"applied": pending})
    return pending
