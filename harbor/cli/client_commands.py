"""The client commands (they reach a daemon over HTTP), for ``cli/main.py`` to register."""

from __future__ import annotations

from harbor.cli.session import session
from harbor.cli.status import completion, status
from harbor.cli.task import task

COMMANDS = (task, session, status, completion)

__all__ = ["COMMANDS"]
