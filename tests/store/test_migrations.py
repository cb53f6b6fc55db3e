"""Schema migrations: empty → head, re-runs are no-ops, an older database upgrades, and the models
match what the migrations create."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from playhouse.migrations import Runner

from harbor.store.database import MIGRATIONS_DIR, migrate, open_database, schema_status
from harbor.store.models import ALL_MODELS
from tests.harness import REPO


def _columns(path: Path) -> dict[str, set[str]]:
    con = sqlite3.connect(path)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return {t: {r[1] for r in con.execute(f"PRAGMA table_info({t})")} for t in tables}


def test_empty_database_migrates_to_head_and_rerun_is_a_no_op(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'h.db'}")
    first = migrate(db)
    assert first == [p.stem for p in sorted(MIGRATIONS_DIR.glob("[0-9]*.py"))]
    assert migrate(db) == []
    status = schema_status(db)
    assert status.pending == []
    assert status.current == status.head


def test_database_at_an_older_version_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = open_database(f"sqlite:///{path}")
    Runner(db, str(MIGRATIONS_DIR)).up(target="0001_initial")
    assert "api_key" not in _columns(path)
    db.execute_sql("INSERT INTO task (id, request, created_at) VALUES ('T1', '{}', 1.0)")
    applied = migrate(db)
    assert applied
    assert applied[0] == "0002_keys_and_audit"
    columns = _columns(path)
    assert "api_key" in columns
    assert "audit_entry" in columns
    assert db.execute_sql("SELECT id FROM task").fetchall() == [("T1",)]  # data survives the upgrade


def test_models_match_the_migrated_schema(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    migrate(open_database(f"sqlite:///{path}"))
    columns = _columns(path)
    for model in ALL_MODELS:
        table = model._meta.table_name
        assert table in columns, table
        assert {f.column_name for f in model._meta.sorted_fields} == columns[table], table


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(db)
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ah_db_migrate_and_status_commands(tmp_path: Path) -> None:
    def ah(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harbor.cli", "db", *args, "--data-dir", str(tmp_path)],
                              capture_output=True, text=True, cwd=REPO, timeout=60)

    before = ah("status")
    assert before.returncode == 1
    assert "pending:  0001_initial" in before.stdout
    assert "applied: 0001_initial" in ah("migrate").stdout
    assert ah("migrate").stdout.strip() == "up to date"
    after = ah("status")
    assert after.returncode == 0
    assert "pending:  none" in after.stdout
