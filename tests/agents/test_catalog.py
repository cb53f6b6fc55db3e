"""The agent catalog: types and aliases, availability, settings validation and launch plans."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from harbor.agents.adapters import (
    ClaudeStreamJsonAdapter,
    CodexJsonAdapter,
    PlainTextAdapter,
    ScenarioAdapter,
)
from harbor.agents.catalog import (
    AgentCatalog,
    AgentContext,
    AgentUnavailable,
    InvalidAgentSettings,
    UnknownAgent,
)

from .conftest import FIXTURES

FAKE_BIN = FIXTURES / "bin"


def ctx(settings: dict[str, Any], prompt: str = "Fix the login bug") -> AgentContext:
    return AgentContext(session_id="01JSESSION", prompt=prompt, workspace=Path("/w"), settings=settings)


def settings_errors(catalog: AgentCatalog, agent: str, settings: Any) -> dict[str, list[str]]:
    with pytest.raises(InvalidAgentSettings) as caught:
        catalog.resolve(agent, settings)
    return caught.value.errors


@pytest.fixture
def with_fake_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(FAKE_BIN))


@pytest.fixture
def without_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))


def test_catalog_lists_the_built_in_agents_with_their_schemas() -> None:
    specs = list(AgentCatalog())
    assert [s.type for s in specs] == ["scenario", "claude-code", "codex", "command"]
    for spec in specs:
        assert spec.versions
        assert spec.description
        assert spec.settings_schema["type"] == "object"
        assert spec.settings_schema["$schema"].startswith("https://json-schema.org/")
        json.dumps(spec.settings_schema)


def test_mock_is_an_alias_of_scenario_and_names_ignore_case() -> None:
    catalog = AgentCatalog()
    assert catalog.get("mock") is catalog.get("scenario") is catalog.get(" Scenario ")
    assert catalog.get("claude") is catalog.get("CLAUDE-CODE")
    spec, settings = catalog.resolve("mock", None)
    assert spec.type == "scenario"
    assert settings == {"speed": 1.0}


def test_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(UnknownAgent) as caught:
        AgentCatalog().resolve("gpt-pilot", {})
    assert caught.value.type == "gpt-pilot"
    assert caught.value.known == ("scenario", "claude-code", "codex", "command")
    assert "gpt-pilot" in str(caught.value)


def test_command_agent_is_unavailable_unless_allowed() -> None:
    spec = AgentCatalog().get("command")
    assert spec.availability()[0] is False
    with pytest.raises(AgentUnavailable) as caught:
        AgentCatalog().resolve("command", {"command": ["make", "test"]})
    hint = caught.value.hint
    assert "allow_command_agent = true" in hint
    assert "AH_ALLOW_COMMAND_AGENT=1" in hint
    assert "--allow-command-agent" in hint
    with pytest.raises(AgentUnavailable):
        spec.launch(ctx({"command": ["make"]}))


def test_allowed_command_agent_runs_the_argv_with_the_prompt_in_the_environment() -> None:
    catalog = AgentCatalog(allow_command_agent=True)
    command = ["sh", "-c", "echo $AH_PROMPT"]
    spec, settings = catalog.resolve("command", {"command": command, "env": {"X": "1"}})
    plan = spec.launch(ctx(settings, prompt="do it"))
    assert plan.argv == ["sh", "-c", "echo $AH_PROMPT"]
    assert plan.env == {"X": "1", "AH_PROMPT": "do it", "AH_SESSION_ID": "01JSESSION", "AH_WORKSPACE": "/w"}
    assert plan.keep_stdin_open
    assert plan.stdin_data == b""
    assert isinstance(spec.adapter("s1"), PlainTextAdapter)
    assert spec.encode_prompt("more") == b"more\n"


@pytest.mark.parametrize(("settings", "message"), [
    ({}, "is required"),
    ({"command": "make test"}, "argv list"),
    ({"command": []}, "must name a program"),
    ({"command": ["make", 3]}, "list of strings"),
    ({"command": ["make"], "env": {"A": 1}}, None),
])
def test_command_settings_are_validated(settings: dict[str, Any], message: str | None) -> None:
    errors = settings_errors(AgentCatalog(allow_command_agent=True), "command", settings)
    if message is None:
        assert list(errors) == ["settings.env"]
    else:
        assert message in errors["settings.command"][0]


@pytest.mark.parametrize("speed", [0, -1, "fast", True, math.nan, math.inf])
def test_scenario_speed_must_be_a_positive_number(speed: Any) -> None:
    assert settings_errors(AgentCatalog(), "scenario", {"speed": speed}) == {
        "settings.speed": ["must be a number > 0"]}


def test_scenario_settings_report_every_problem_at_once() -> None:
    errors = settings_errors(AgentCatalog(), "scenario", {"speed": 0, "scenario": 5})
    assert set(errors) == {"settings.speed", "settings.scenario"}


@pytest.mark.parametrize(("name", "message"), [
    ("no_such_scenario", "no scenario named 'no_such_scenario'"),
    ("../../etc/passwd", "is not a scenario name"),
    ("/etc/hostname", "is not a scenario name"),
])
def test_scenario_name_must_resolve_to_a_scenario_file(name: str, message: str) -> None:
    errors = settings_errors(AgentCatalog(), "scenario", {"scenario": name})
    assert message in errors["settings.scenario"][0]


def test_inline_scenario_is_checked_before_the_session_starts() -> None:
    errors = settings_errors(AgentCatalog(), "scenario", {"scenario": {"timeline": [{"think": "ok"},
                                                                                    {"progress": {}}]}})
    assert "timeline[1].progress" in errors["settings.scenario"][0]


def test_settings_must_be_an_object() -> None:
    assert settings_errors(AgentCatalog(), "scenario", ["speed", 2]) == {"settings": ["must be an object"]}


def test_scenario_launch_plan_for_an_inline_scenario(tmp_path: Path) -> None:
    catalog = AgentCatalog(default_speed=50)
    inline = {"timeline": [{"think": [[0, "hi"]]}]}
    spec, settings = catalog.resolve("scenario", {"scenario": inline})
    workspace = tmp_path / "ws"
    plan = spec.launch(AgentContext(session_id="01JSESSION", prompt="Fix the login bug", workspace=workspace,
                                    settings=settings))
    assert plan.argv[:4] == [sys.executable, "-u", "-m", "harbor.agents.scenario"]
    args = dict(zip(plan.argv[4::2], plan.argv[5::2], strict=True))
    assert args["--speed"] == "50.0"
    # Written beside the workspace (not on the command line: one argument may not exceed 128 KiB).
    scenario_file = Path(args["--scenario"])
    assert json.loads(scenario_file.read_text()) == inline
    assert scenario_file.parent == tmp_path
    assert args["--prompt"] == "Fix the login bug"
    assert plan.env["PYTHONUNBUFFERED"] == "1"
    assert plan.keep_stdin_open
    assert isinstance(spec.adapter("s1"), ScenarioAdapter)
    assert spec.encode_prompt("also this") == b"also this\n"


def test_scenario_dirs_come_before_the_shipped_scenarios(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_text("name: my-demo\ntimeline: []\n")
    (tmp_path / "broken.yaml").write_text("timeline: [\n")
    catalog = AgentCatalog(scenario_dirs=[tmp_path])
    spec, settings = catalog.resolve("scenario", {"scenario": "demo", "speed": 2})
    args = spec.launch(ctx(settings)).argv
    assert args[args.index("--scenario") + 1] == str((tmp_path / "demo.yaml").resolve())
    errors = settings_errors(catalog, "scenario", {"scenario": "broken"})
    assert "invalid YAML" in errors["settings.scenario"][0]


def test_shipped_scenario_names_resolve() -> None:
    spec, settings = AgentCatalog().resolve("scenario", {"scenario": "fix_login_bug"})
    args = spec.launch(ctx(settings)).argv
    assert args[args.index("--scenario") + 1].endswith("harbor/agents/scenarios/fix_login_bug.yaml")


def test_claude_is_unavailable_without_its_binary(without_binaries: None) -> None:
    available, hint = AgentCatalog().get("claude-code").availability()
    assert available is False
    assert hint is not None
    assert "'claude' is not on PATH" in hint
    assert "npm install -g @anthropic-ai/claude-code" in hint
    with pytest.raises(AgentUnavailable):
        AgentCatalog().resolve("claude-code", {})


def test_configured_binary_path_replaces_the_path_lookup(without_binaries: None, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    catalog = AgentCatalog(binaries={"claude-code": str(FAKE_BIN / "claude"), "codex": str(missing)})
    spec, settings = catalog.resolve("claude-code", {})
    assert spec.launch(ctx(settings)).argv[0] == str(FAKE_BIN / "claude")
    available, hint = catalog.get("codex").availability()
    assert available is False
    assert hint is not None
    assert str(tmp_path / "nope") in hint


def test_claude_launch_plan_streams_json_both_ways(with_fake_binaries: None) -> None:
    spec, settings = AgentCatalog().resolve("claude", {"model": "sonnet", "max_turns": 3,
                                                       "allowedTools": ["Bash(git:*)", "Edit"]})
    plan = spec.launch(ctx(settings, prompt="Fix it\nplease"))
    assert plan.argv == [str(FAKE_BIN / "claude"), "-p", "--output-format", "stream-json", "--input-format",
                         "stream-json", "--verbose", "--permission-mode", "acceptEdits", "--model", "sonnet",
                         "--max-turns", "3", "--allowedTools", "Bash(git:*),Edit"]
    assert plan.keep_stdin_open
    assert plan.stdin_data == spec.encode_prompt("Fix it\nplease")
    assert isinstance(spec.adapter("s1"), ClaudeStreamJsonAdapter)


def test_claude_prompt_is_one_stream_json_user_message_line(with_fake_binaries: None) -> None:
    encoded = AgentCatalog().get("claude-code").encode_prompt("two\nlines ✓")
    assert encoded.endswith(b"\n")
    assert encoded.count(b"\n") == 1
    message = json.loads(encoded)
    assert message["type"] == "user"
    assert message["message"] == {"role": "user", "content": "two\nlines ✓"}


@pytest.mark.parametrize(("settings", "field"), [
    ({"permissionMode": "yolo"}, "settings.permissionMode"),
    ({"maxTurns": 0}, "settings.maxTurns"),
    ({"allowedTools": "Bash"}, "settings.allowedTools"),
    ({"model": ""}, "settings.model"),
    ({"extraArgs": [1]}, "settings.extraArgs"),
])
def test_claude_settings_are_validated(with_fake_binaries: None, settings: dict[str, Any],
                                       field: str) -> None:
    assert list(settings_errors(AgentCatalog(), "claude-code", settings)) == [field]


def test_codex_launch_plan_closes_stdin(with_fake_binaries: None) -> None:
    spec, settings = AgentCatalog().resolve("codex", {"model": "o4-mini"})
    plan = spec.launch(ctx(settings, prompt="-starts with a dash"))
    assert plan.argv == [str(FAKE_BIN / "codex"), "exec", "--json", "--skip-git-repo-check", "--sandbox",
                         "workspace-write", "--model", "o4-mini", "--", "-starts with a dash"]
    assert plan.keep_stdin_open is False
    assert plan.stdin_data == b""
    assert isinstance(spec.adapter("s1"), CodexJsonAdapter)
    assert spec.encode_prompt("x") == b"x\n"
    assert list(settings_errors(AgentCatalog(), "codex", {"sandbox": "none"})) == ["settings.sandbox"]


def test_default_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="default_speed"):
        AgentCatalog(default_speed=0)


def test_scenario_file_removed_after_validation_fails_the_launch_cleanly(tmp_path: Path) -> None:
    (tmp_path / "short-lived.yaml").write_text("timeline: []\n")
    spec, settings = AgentCatalog(scenario_dirs=[tmp_path]).resolve("scenario", {"scenario": "short-lived"})
    (tmp_path / "short-lived.yaml").unlink()
    with pytest.raises(InvalidAgentSettings) as caught:
        spec.launch(ctx(settings))
    assert list(caught.value.errors) == ["settings.scenario"]


def test_an_inline_scenario_that_runs_commands_needs_the_command_agent_enabled() -> None:
    # An inline scenario's run_cmd steps run shell commands on the host: as powerful as the command
    # agent, so they follow its switch. Scenario files (put there by the operator) stay trusted.
    inline = {"timeline": [{"agentToolUse": {"toolName": "run_cmd", "args": {"cmd": "id"}}}]}
    errors = settings_errors(AgentCatalog(), "scenario", {"scenario": inline})
    assert "allow_command_agent" in errors["settings.scenario"][0]
    AgentCatalog(allow_command_agent=True).resolve("scenario", {"scenario": inline})
    AgentCatalog().resolve("scenario", {"scenario": {"timeline": [{"think": [[0, "no commands"]]}]}})
    AgentCatalog().resolve("scenario", {"scenario": "fix_login_bug"})
