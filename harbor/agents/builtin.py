"""The agent types built into the daemon: ``scenario``, ``claude-code``, ``codex`` and ``command``."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .adapters import ClaudeStreamJsonAdapter, CodexJsonAdapter, OutputAdapter, ScenarioAdapter
from .scenario.loader import ScenarioError, find_scenario, parse_scenario, read_scenario_file, shipped_names
from .spec import (
    AgentContext,
    AgentSpec,
    AgentUnavailable,
    InvalidAgentSettings,
    LaunchPlan,
    SettingsErrors,
    optional_str,
    pick,
    positive_number,
    string_list,
)

_SCHEMA = "https://json-schema.org/draft/2020-12/schema"
#: A scenario name from a task: a file name in the scenario directories, never a path.
_SCENARIO_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def _base_schema(title: str, properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    return {"$schema": _SCHEMA, "title": title, "type": "object", "properties": properties,
            "required": list(required), "additionalProperties": True}


def inline_scenario_path(workspace: Path) -> Path:
    """Where a session's inline scenario is written: beside its workspace (removed with it)."""
    return workspace.with_name(f".{workspace.name}.scenario.json")


_COMMAND_TOOLS = frozenset({"run_cmd", "run_command", "runCmd"})


def runs_commands(scenario: Mapping[str, Any]) -> bool:
    """Whether a raw scenario has a step that really runs a shell command."""
    steps = scenario.get("timeline")
    for step in steps if isinstance(steps, list) else []:
        tool = step.get("agentToolUse") if isinstance(step, dict) else None
        if isinstance(tool, dict) and tool.get("toolName") in _COMMAND_TOOLS:
            return True
    return False


@dataclass(frozen=True, eq=False)
class ScenarioAgentSpec(AgentSpec):
    """The built-in scripted agent (``python -m harbor.agents.scenario``).

    Settings: ``scenario`` (an inline scenario object, or the name of a file in the scenario
    directories or among the shipped ones; absent: the built-in demo) and ``speed`` (> 0).
    """

    scenario_dirs: tuple[Path, ...] = ()
    default_speed: float = 1.0
    #: Whether an *inline* scenario may run shell commands (``run_cmd`` steps). Such a scenario is as
    #: powerful as the ``command`` agent, so it follows the same switch (``allow_command_agent``);
    #: shipped and configured scenario files are trusted: the operator put them there.
    allow_commands: bool = True

    def validate(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        errors = SettingsErrors()
        out: dict[str, Any] = {}
        speed = settings.get("speed")
        if speed is None:
            speed = self.default_speed
        if not positive_number(speed):
            errors.add("speed", "must be a number > 0")
        else:
            out["speed"] = float(speed)
        scenario = settings.get("scenario")
        if isinstance(scenario, dict):
            try:
                parse_scenario(scenario)
            except ScenarioError as exc:
                errors.add("scenario", str(exc))
            if not self.allow_commands and runs_commands(scenario):
                errors.add("scenario", "an inline scenario that runs shell commands needs the command agent "
                                       "enabled (allow_command_agent = true, AH_ALLOW_COMMAND_AGENT=1 or "
                                       "--allow-command-agent); or use a scenario file")
            out["scenario"] = scenario
        elif isinstance(scenario, str):
            try:
                self._scenario_file(scenario)
            except ScenarioError as exc:
                errors.add("scenario", str(exc))
            out["scenario"] = scenario
        elif scenario is not None:
            errors.add("scenario", "must be a scenario object or the name of a scenario file")
        errors.raise_any()
        return out

    def _scenario_file(self, name: str) -> Path:
        if not _SCENARIO_NAME.fullmatch(name):
            raise ScenarioError(f"{name!r} is not a scenario name (letters, digits, '.', '_' and '-')")
        path = find_scenario(name, self.scenario_dirs, allow_path=False)
        read_scenario_file(path)  # a malformed file is the task's 400, not the session's failure
        return path.resolve()

    def launch(self, ctx: AgentContext) -> LaunchPlan:
        speed = ctx.settings.get("speed", self.default_speed)
        argv = [sys.executable, "-u", "-m", "harbor.agents.scenario", "--speed", repr(float(speed))]
        scenario = ctx.settings.get("scenario")
        if isinstance(scenario, dict):
            # Beside the workspace, not on the command line: one argument may not exceed 128 KiB
            # (MAX_ARG_STRLEN), and not inside the workspace, whose files are the agent's work.
            path = inline_scenario_path(ctx.workspace)
            path.write_text(json.dumps(scenario, separators=(",", ":")))
            argv += ["--scenario", str(path)]
        elif isinstance(scenario, str):
            try:
                argv += ["--scenario", str(self._scenario_file(scenario))]
            except ScenarioError as exc:  # the file changed since the task was accepted
                raise InvalidAgentSettings({"settings.scenario": [str(exc)]}) from None
        argv += ["--prompt", ctx.prompt]
        return LaunchPlan(argv, {"PYTHONUNBUFFERED": "1", "AH_SESSION_ID": ctx.session_id})

    def adapter(self, session_id: str, workspace: Path | None = None) -> OutputAdapter:
        return ScenarioAdapter(session_id, workspace)


@dataclass(frozen=True, eq=False)
class _BinaryAgentSpec(AgentSpec):
    """An agent that is an external program, found on PATH or at a configured path."""

    program: str = ""
    binary: str | None = None  #: configured path; else ``program`` is looked up on PATH
    install_hint: str = ""

    def executable(self) -> str | None:
        """The program's absolute path, or None when it is not installed."""
        if self.binary:
            path = Path(self.binary).expanduser()
            return str(path) if path.is_file() and os.access(path, os.X_OK) else None
        return shutil.which(self.program)

    def availability(self) -> tuple[bool, str | None]:
        if self.executable() is not None:
            return True, None
        if self.binary:
            where = f"{self.binary} is not an executable file"
        else:
            where = f"{self.program!r} is not on PATH"
        return False, f"{where}; {self.install_hint}"

    def _program(self) -> str:
        exe = self.executable()
        if exe is None:
            raise AgentUnavailable(self.type, self.availability()[1] or "")
        return exe


_PERMISSION_MODES = ("default", "acceptEdits", "bypassPermissions", "plan")


@dataclass(frozen=True, eq=False)
class ClaudeCodeSpec(_BinaryAgentSpec):
    """Claude Code in print mode: ``claude -p --output-format stream-json --input-format stream-json
    --verbose``.

    Prompts travel on stdin as stream-json user messages, one JSON object per line:
    ``{"type": "user", "message": {"role": "user", "content": "<text>"}, "parent_tool_use_id": null,
    "session_id": "default"}``. The task's prompt is the first (:attr:`LaunchPlan.stdin_data`);
    injected prompts follow (:meth:`encode_prompt`) and are queued by Claude for its next turn.
    Claude ends each turn with a ``result`` message and then waits for more input: it exits when
    its stdin is closed, which the actor does once the adapter reports :attr:`idle`.

    Settings: ``model``, ``permissionMode`` (default ``acceptEdits``: it may edit files in its
    workspace but asks, and in print mode therefore refuses, anything else unless allowed),
    ``allowedTools``, ``disallowedTools``, ``maxTurns``, ``appendSystemPrompt``, ``extraArgs``.
    """

    def validate(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        errors = SettingsErrors()
        out: dict[str, Any] = {}
        if (model := optional_str(settings.get("model"), "model", errors)) is not None:
            out["model"] = model
        mode = pick(settings, "permissionMode", "permission_mode")
        if mode is None:
            out["permissionMode"] = "acceptEdits"
        elif mode in _PERMISSION_MODES:
            out["permissionMode"] = mode
        else:
            errors.add("permissionMode", f"must be one of {', '.join(_PERMISSION_MODES)}")
        for key, alias in (("allowedTools", "allowed_tools"), ("disallowedTools", "disallowed_tools"),
                           ("extraArgs", "extra_args")):
            if (values := string_list(pick(settings, key, alias), key, errors)) is not None:
                out[key] = values
        turns = pick(settings, "maxTurns", "max_turns")
        if turns is not None:
            if isinstance(turns, bool) or not isinstance(turns, int) or turns < 1:
                errors.add("maxTurns", "must be a whole number >= 1")
            else:
                out["maxTurns"] = turns
        prompt = optional_str(pick(settings, "appendSystemPrompt", "append_system_prompt"),
                               "appendSystemPrompt", errors)
        if prompt is not None:
            out["appendSystemPrompt"] = prompt
        errors.raise_any()
        return out

    def launch(self, ctx: AgentContext) -> LaunchPlan:
        s = ctx.settings
        argv = [self._program(), "-p", "--output-format", "stream-json", "--input-format", "stream-json",
                "--verbose", "--permission-mode", s.get("permissionMode", "acceptEdits")]
        if "model" in s:
            argv += ["--model", s["model"]]
        if "maxTurns" in s:
            argv += ["--max-turns", str(s["maxTurns"])]
        if s.get("allowedTools"):
            argv += ["--allowedTools", ",".join(s["allowedTools"])]
        if s.get("disallowedTools"):
            argv += ["--disallowedTools", ",".join(s["disallowedTools"])]
        if "appendSystemPrompt" in s:
            argv += ["--append-system-prompt", s["appendSystemPrompt"]]
        argv += s.get("extraArgs", [])
        return LaunchPlan(argv, {}, stdin_data=self.encode_prompt(ctx.prompt), keep_stdin_open=True)

    def adapter(self, session_id: str, workspace: Path | None = None) -> OutputAdapter:
        return ClaudeStreamJsonAdapter(session_id, workspace)

    def encode_prompt(self, text: str) -> bytes:
        """One stream-json user message line carrying ``text``."""
        message = {"type": "user", "message": {"role": "user", "content": text}, "parent_tool_use_id": None,
                   "session_id": "default"}
        return json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n"


_SANDBOXES = ("read-only", "workspace-write", "danger-full-access")


@dataclass(frozen=True, eq=False)
class CodexSpec(_BinaryAgentSpec):
    """Codex non-interactively: ``codex exec --json --skip-git-repo-check --sandbox <mode> -- <prompt>``.

    ``codex exec`` reads its stdin to the end before it starts (as more prompt), so stdin is closed
    at once (:attr:`LaunchPlan.keep_stdin_open` is False) and a Codex session cannot take injected
    prompts; :meth:`encode_prompt` still gives ``text + "\\n"`` for symmetry.

    Settings: ``model``, ``sandbox`` (default ``workspace-write``), ``extraArgs``.
    """

    def validate(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        errors = SettingsErrors()
        out: dict[str, Any] = {}
        if (model := optional_str(settings.get("model"), "model", errors)) is not None:
            out["model"] = model
        sandbox = settings.get("sandbox", "workspace-write")
        if sandbox in _SANDBOXES:
            out["sandbox"] = sandbox
        else:
            errors.add("sandbox", f"must be one of {', '.join(_SANDBOXES)}")
        extra = string_list(pick(settings, "extraArgs", "extra_args"), "extraArgs", errors)
        if extra is not None:
            out["extraArgs"] = extra
        errors.raise_any()
        return out

    def launch(self, ctx: AgentContext) -> LaunchPlan:
        s = ctx.settings
        argv = [self._program(), "exec", "--json", "--skip-git-repo-check", "--sandbox",
                s.get("sandbox", "workspace-write")]
        if "model" in s:
            argv += ["--model", s["model"]]
        argv += [*s.get("extraArgs", []), "--", ctx.prompt]
        return LaunchPlan(argv, {}, keep_stdin_open=False)

    def adapter(self, session_id: str, workspace: Path | None = None) -> OutputAdapter:
        return CodexJsonAdapter(session_id, workspace)


@dataclass(frozen=True, eq=False)
class CommandAgentSpec(AgentSpec):
    """Any program: ``settings.command`` is its argv (a list of strings), ``settings.env`` extra
    variables. The prompt reaches it as ``$AH_PROMPT``; injected prompts arrive as stdin lines;
    each stdout line is a ``log`` event.

    It runs whatever a task names, so it is unavailable unless the daemon's configuration allows it.
    """

    allowed: bool = False

    def availability(self) -> tuple[bool, str | None]:
        if self.allowed:
            return True, None
        return False, ("the command agent runs arbitrary programs and is disabled; enable it with "
                       "allow_command_agent = true in the config file, AH_ALLOW_COMMAND_AGENT=1 or "
                       "--allow-command-agent")

    def validate(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        errors = SettingsErrors()
        out: dict[str, Any] = {}
        command = settings.get("command")
        if isinstance(command, str):
            errors.add("command", 'must be an argv list of strings, e.g. ["sh", "-c", "make test"]')
        elif (argv := string_list(command, "command", errors, required=True)) is not None:
            out["command"] = argv
        env = settings.get("env")
        if env is not None:
            if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
                errors.add("env", "must map variable names to string values")
            else:
                out["env"] = dict(env)
        errors.raise_any()
        return out

    def launch(self, ctx: AgentContext) -> LaunchPlan:
        if not self.allowed:
            raise AgentUnavailable(self.type, self.availability()[1] or "")
        env = {**ctx.settings.get("env", {}), "AH_PROMPT": ctx.prompt, "AH_SESSION_ID": ctx.session_id,
               "AH_WORKSPACE": str(ctx.workspace)}
        return LaunchPlan(list(ctx.settings["command"]), env)


def scenario_schema() -> dict[str, Any]:
    return _base_schema("scenario agent settings", {
        "scenario": {
            "description": "An inline scenario (scenario-format.md), or the name of a scenario file. "
                           f"Shipped: {', '.join(shipped_names())}. Absent: a short built-in demo.",
            "oneOf": [{"type": "string", "pattern": _SCENARIO_NAME.pattern},
                      {"type": "object", "properties": {"timeline": {"type": "array"}}}],
        },
        "speed": {"type": "number", "exclusiveMinimum": 0, "default": 1.0,
                  "description": "Every wait of the scenario is divided by this."},
    })


def claude_schema() -> dict[str, Any]:
    strings = {"type": "array", "items": {"type": "string"}}
    return _base_schema("claude-code agent settings", {
        "model": {"type": "string", "description": "Model name or alias (--model)."},
        "permissionMode": {"enum": list(_PERMISSION_MODES), "default": "acceptEdits"},
        "allowedTools": {**strings, "description": 'Tools allowed without asking, e.g. "Bash(git:*)".'},
        "disallowedTools": strings,
        "maxTurns": {"type": "integer", "minimum": 1},
        "appendSystemPrompt": {"type": "string"},
        "extraArgs": {**strings, "description": "Further command-line arguments, passed as given."},
    })


def codex_schema() -> dict[str, Any]:
    return _base_schema("codex agent settings", {
        "model": {"type": "string"},
        "sandbox": {"enum": list(_SANDBOXES), "default": "workspace-write"},
        "extraArgs": {"type": "array", "items": {"type": "string"}},
    })


def command_schema() -> dict[str, Any]:
    return _base_schema("command agent settings", {
        "command": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                    "description": "argv of the program run in the workspace; the prompt is in $AH_PROMPT."},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
    }, required=["command"])
