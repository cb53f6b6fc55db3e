"""Column types shared by the models and the frozen models of ``migrations/``."""

from __future__ import annotations

import json
from typing import Any

from peewee import TextField


class JSONField(TextField):
    """A JSON document kept as text (portable across SQLite and PostgreSQL)."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)
