"""What the session actor needs to know about an agent type, without knowing which one it is.

- :class:`AgentSpec` validates a task's ``settings`` (:meth:`AgentSpec.validate`, raising
  :class:`InvalidAgentSettings`: the API's 400), says how to start the agent
  (:meth:`AgentSpec.launch` → :class:`LaunchPlan`), how to deliver an injected prompt on its stdin
  (:meth:`AgentSpec.encode_prompt`) and how to read its output (:meth:`AgentSpec.adapter`).
- :class:`AgentUnavailable` (a known type that cannot run here: the API's 422) and
  :class:`UnknownAgent` (the API's 400) come from the catalog.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .adapters import OutputAdapter, PlainTextAdapter


@dataclass(frozen=True)
class LaunchPlan:
    """How to start one agent process.

    Attributes:
        argv: program and arguments; run with the session's workspace as working directory.
        env: variables to set on top of the daemon's environment.
        stdin_data: bytes to write to the agent's stdin right after it starts (Claude Code reads
            its first prompt there).
        keep_stdin_open: False when stdin must be closed after ``stdin_data``: the agent reads
            stdin to its end before it starts working (``codex exec``), so it cannot take
            injected prompts.
    """

    argv: list[str]
    env: dict[str, str]
    stdin_data: bytes = b""
    keep_stdin_open: bool = True


@dataclass(frozen=True)
class AgentContext:
    """What a launch needs to know about the session."""

    session_id: str
    prompt: str
    workspace: Path
    settings: dict[str, Any]  #: the validated, normalised settings (:meth:`AgentSpec.validate`)


class AgentUnavailable(Exception):
    """A known agent type that cannot run on this host (the API answers 422).

    Attributes:
        type: the agent type.
        hint: what to install or configure to make it available.
    """

    def __init__(self, agent_type: str, hint: str) -> None:
        super().__init__(f"agent {agent_type!r} is not available here: {hint}")
        self.type = agent_type
        self.hint = hint


class UnknownAgent(Exception):
    """No agent of that type or alias (the API answers 400 naming ``agents[0].type``).

    Attributes:
        type: the type asked for.
        known: the types that exist.
    """

    def __init__(self, agent_type: str, known: Sequence[str]) -> None:
        super().__init__(f"unknown agent type {agent_type!r}; known types: {', '.join(known)}")
        self.type = agent_type
        self.known = tuple(known)


class InvalidAgentSettings(Exception):
    """Settings an agent cannot run with (the API answers 400 with ``errors``).

    Attributes:
        errors: field path → messages, e.g. ``{"settings.speed": ["must be a number > 0"]}``.
    """

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors


class SettingsErrors:
    """Collects validation messages by field path."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(f"settings.{name}", []).append(message)

    def raise_any(self) -> None:
        if self.errors:
            raise InvalidAgentSettings(self.errors)


def pick(settings: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` present (camelCase first, snake_case accepted)."""
    return next((settings[n] for n in names if n in settings), None)


def string_list(value: Any, name: str, errors: SettingsErrors, *, required: bool = False) -> list[str] | None:
    if value is None:
        if required:
            errors.add(name, "is required")
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.add(name, "must be a list of strings")
        return None
    if required and (not value or not value[0]):
        errors.add(name, "must name a program to run")
        return None
    return list(value)


def positive_number(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and value > 0)


def optional_str(value: Any, name: str, errors: SettingsErrors) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        errors.add(name, "must be a non-empty string")
        return None
    return value


@dataclass(frozen=True, eq=False)  # eq=False: specs are compared and hashed by identity
class AgentSpec:
    """One agent type. Subclasses say how to validate, launch and read it.

    Attributes:
        type: the agent type, as tasks name it.
        aliases: other names accepted for it.
        versions: versions tasks may ask for.
        description: one line for the catalogue.
        settings_schema: JSON Schema of its ``settings`` (served at
            ``/api/v1/schemas/agents/<type>.json``).
    """

    type: str
    aliases: tuple[str, ...]
    versions: tuple[str, ...]
    description: str
    settings_schema: dict[str, Any]

    def availability(self) -> tuple[bool, str | None]:
        """``(True, None)``, or ``(False, hint)`` saying what to install or configure."""
        return True, None

    def validate(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The settings, checked and normalised (defaults filled in, unknown keys dropped).

        Raises:
            InvalidAgentSettings: with every problem found, by ``settings.<field>``.
        """
        return {}

    def launch(self, ctx: AgentContext) -> LaunchPlan:
        """How to start the agent for a session; ``ctx.settings`` must come from :meth:`validate`.

        Not a checkpoint; it may look at the filesystem (find a program or a scenario file).

        Raises:
            AgentUnavailable: the agent's program is gone since the task was accepted.
            InvalidAgentSettings: what the settings name is gone (a scenario file).
        """
        raise NotImplementedError

    def adapter(self, session_id: str, workspace: Path | None = None) -> OutputAdapter:
        """A new adapter for one process's output."""
        return PlainTextAdapter(session_id, workspace)

    def encode_prompt(self, text: str) -> bytes:
        """The bytes that deliver an injected prompt on the agent's stdin: the text and a newline
        (a multi-line text arrives as several lines)."""
        return text.encode("utf-8") + b"\n"
