"""The agents the daemon can run, by type and alias.

Built in (:mod:`.builtin`): ``scenario`` (alias ``mock``), ``claude-code`` (alias ``claude``),
``codex`` and ``command`` (off unless the configuration allows it: it runs whatever argv a task
names). What each one is to the session actor is an :class:`~.spec.AgentSpec`; the types the actor
and the API use are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from .builtin import (
    ClaudeCodeSpec,
    CodexSpec,
    CommandAgentSpec,
    ScenarioAgentSpec,
    claude_schema,
    codex_schema,
    command_schema,
    scenario_schema,
)
from .spec import (
    AgentContext,
    AgentSpec,
    AgentUnavailable,
    InvalidAgentSettings,
    LaunchPlan,
    UnknownAgent,
    positive_number,
)


class AgentCatalog:
    """The agent types this daemon knows, by type and alias.

    Args:
        allow_command_agent: make the ``command`` agent available.
        scenario_dirs: directories of scenario files, searched before the shipped scenarios.
        binaries: agent type → path of its program, overriding the PATH lookup
            (``{"claude-code": "/opt/claude/bin/claude"}``).
        default_speed: the scenario agent's speed when a task gives none.
    """

    DEFAULT_VERSIONS: ClassVar[tuple[str, ...]] = ("latest",)

    def __init__(self, *, allow_command_agent: bool = False, scenario_dirs: Sequence[Path] = (),
                 binaries: Mapping[str, str] | None = None, default_speed: float = 1.0) -> None:
        binaries = binaries or {}
        if not positive_number(default_speed):
            raise ValueError("default_speed must be > 0")
        dirs = tuple(Path(d) for d in scenario_dirs)
        self._specs: list[AgentSpec] = [
            ScenarioAgentSpec(
                type="scenario", aliases=("mock",), versions=self.DEFAULT_VERSIONS,
                description="Scripted, deterministic agent that plays a scenario: real commands, real edits",
                settings_schema=scenario_schema(), scenario_dirs=dirs, default_speed=default_speed,
                allow_commands=allow_command_agent),
            ClaudeCodeSpec(
                type="claude-code", aliases=("claude",), versions=self.DEFAULT_VERSIONS,
                description="Anthropic's Claude Code, non-interactive with stream-json input and output",
                settings_schema=claude_schema(), program="claude", binary=binaries.get("claude-code"),
                install_hint="install Claude Code (npm install -g @anthropic-ai/claude-code) or set the path "
                             "of its binary for claude-code in the daemon's configuration"),
            CodexSpec(
                type="codex", aliases=(), versions=self.DEFAULT_VERSIONS,
                description="OpenAI's Codex CLI, non-interactive (codex exec --json)",
                settings_schema=codex_schema(), program="codex", binary=binaries.get("codex"),
                install_hint="install the Codex CLI (npm install -g @openai/codex) or set the path of its "
                             "binary for codex in the daemon's configuration"),
            CommandAgentSpec(
                type="command", aliases=(), versions=self.DEFAULT_VERSIONS,
                description="Any program given as an argv list; its output lines become log events",
                settings_schema=command_schema(), allowed=allow_command_agent),
        ]
        self._by_name: dict[str, AgentSpec] = {}
        for spec in self._specs:
            for name in (spec.type, *spec.aliases):
                self._by_name[name.lower()] = spec

    def __iter__(self) -> Iterator[AgentSpec]:
        return iter(self._specs)

    def get(self, type_or_alias: str) -> AgentSpec:
        """The spec of a type or alias (case-insensitive).

        Raises:
            UnknownAgent: no such type.
        """
        spec = self._by_name.get(type_or_alias.strip().lower()) if isinstance(type_or_alias, str) else None
        if spec is None:
            raise UnknownAgent(str(type_or_alias), [s.type for s in self._specs])
        return spec

    def resolve(self, type_or_alias: str,
                settings: Mapping[str, Any] | None) -> tuple[AgentSpec, dict[str, Any]]:
        """The spec and normalised settings for a task's agent entry.

        Raises:
            UnknownAgent: no such type.
            AgentUnavailable: it cannot run here (checked before the settings).
            InvalidAgentSettings: the settings are wrong.
        """
        spec = self.get(type_or_alias)
        available, hint = spec.availability()
        if not available:
            raise AgentUnavailable(spec.type, hint or "")
        if settings is None:
            settings = {}
        if not isinstance(settings, Mapping):
            raise InvalidAgentSettings({"settings": ["must be an object"]})
        return spec, spec.validate(settings)




__all__ = [
    "AgentCatalog",
    "AgentContext",
    "AgentSpec",
    "AgentUnavailable",
    "ClaudeCodeSpec",
    "CodexSpec",
    "CommandAgentSpec",
    "InvalidAgentSettings",
    "LaunchPlan",
    "ScenarioAgentSpec",
    "UnknownAgent",
]
