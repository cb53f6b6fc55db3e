"""Output adapters against recorded transcripts, and against output they cannot read."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from actors.events import Draft, EventKind
from harbor.agents.adapters import (
    ClaudeStreamJsonAdapter,
    CodexJsonAdapter,
    OutputAdapter,
    PlainTextAdapter,
    ScenarioAdapter,
)
from harbor.agents.adapters.base import AdapterBase

from .conftest import FIXTURES

TRANSCRIPTS = FIXTURES / "transcripts"
WORKDIR = "/home/dev/work/login-service"  # the cwd recorded in the transcripts


def feed(adapter: OutputAdapter, path: Path) -> list[Draft]:
    drafts = [d for line in path.read_bytes().splitlines() for d in adapter.stdout_line(line)]
    return drafts + adapter.finish()


def kinds(drafts: list[Draft]) -> list[str]:
    return [d.kind for d in drafts]


def only(drafts: list[Draft], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [d.data for d in drafts if d.kind == kind and all(d.data.get(k) == v for k, v in match.items())]


# -- Claude Code -------------------------------------------------------------------------------------


def test_claude_transcript_becomes_typed_events() -> None:
    adapter = ClaudeStreamJsonAdapter("sess1")
    drafts = feed(adapter, TRANSCRIPTS / "claude-stream-json.jsonl")

    init = drafts[0]
    assert init.kind == "log"
    assert init.data["level"] == "debug"
    assert "claude-sonnet-4-5" in init.data["message"]
    assert only(drafts, "thought")[0]["thought"].startswith("Users with the right password are rejected")
    messages = [m["message"] for m in only(drafts, "message", role="assistant")]
    assert messages[0] == "I'll run the test suite to see the failure."
    assert messages[-1].startswith("Fixed: login() now hashes")

    uses = only(drafts, "tool_use")
    assert [u["tool_name"] for u in uses] == ["Bash", "Read", "Edit", "Write", "MultiEdit", "Edit", "Bash"]
    assert uses[0] == {"tool_name": "Bash", "tool_execution_id": "toolu_01Bash1", "status": "started",
                       "tool_args": {"command": "python3 -m unittest discover -s tests -v",
                                     "description": "Run the tests"}}
    results = {r["tool_execution_id"]: r for r in only(drafts, "tool_result")}
    bash = results["toolu_01Bash1"]
    assert (bash["status"], bash["tool_status"]) == ("failed", "error")
    assert results["toolu_01Bash1"]["tool_name"] == "Bash"
    assert "1→import hashlib" in results["toolu_01Read1"]["tool_output"]  # a list of text blocks
    assert results["toolu_01Bash2"]["status"] == "completed"
    assert results["toolu_01Edit2"]["status"] == "failed"

    # Paths are made relative to the workspace the init message named.
    edits = {e["file_path"]: e for e in only(drafts, "file_edit")}
    assert set(edits) == {"app/auth.py", "tests/test_login_regression.py", "README.md"}  # not the failed edit
    assert (edits["app/auth.py"]["lines_added"], edits["app/auth.py"]["lines_removed"]) == (1, 1)
    assert (edits["tests/test_login_regression.py"]["lines_added"],
            edits["tests/test_login_regression.py"]["lines_removed"]) == (8, 0)
    assert edits["README.md"]["lines_added"] == 4

    # With the original file known (tool_use_result), the diff is of the whole file.
    (auth,) = only(drafts, "diff", path="app/auth.py")
    assert auth["truncated"] is False
    assert auth["oldText"].endswith("stored == password\n")
    assert auth["newText"].endswith("stored == hash_password(password)\n")
    (created,) = only(drafts, "diff", path="tests/test_login_regression.py")
    assert created["oldText"] == ""
    assert "test_right_password" in created["newText"]
    readme = only(drafts, "diff", path="README.md")  # fragments: one diff per edit
    assert [d["oldText"] for d in readme] == ["# Login service", "-v`."]

    (result,) = [d for d in only(drafts, "log") if "finished" in d["message"]]
    assert result["level"] == "info"
    assert "48.2 s" in result["message"]
    assert "9 turns" in result["message"]
    assert "$0.0841" in result["message"]
    assert adapter.idle


def test_claude_is_idle_only_between_a_result_and_the_next_turn() -> None:
    adapter = ClaudeStreamJsonAdapter("sess1")
    lines = (TRANSCRIPTS / "claude-stream-json.jsonl").read_bytes().splitlines()
    for line in lines[:-1]:
        adapter.stdout_line(line)
        assert not adapter.idle
    adapter.stdout_line(lines[-1])
    assert adapter.idle
    adapter.stdout_line(lines[2])  # an assistant message: a new turn started
    assert not adapter.idle


def test_claude_error_result_is_an_error_log() -> None:
    adapter = ClaudeStreamJsonAdapter("sess1")
    (draft,) = adapter.stdout_line(json.dumps({
        "type": "result", "subtype": "error_max_turns", "is_error": True, "duration_ms": 1000, "num_turns": 3,
        "total_cost_usd": 0.5}).encode())
    assert draft.kind == "log"
    assert draft.data["level"] == "error"
    assert "error_max_turns" in draft.data["message"]


def test_claude_unfinished_tool_fails_at_end_of_output() -> None:
    adapter = ClaudeStreamJsonAdapter("sess1", workspace="/w")
    adapter.stdout_line(json.dumps({"type": "assistant", "message": {"content": [
        {"type": "tool_use", "id": "toolu_x", "name": "Bash", "input": {"command": "sleep 100"}}]}}).encode())
    (draft,) = adapter.finish()
    assert draft == Draft("tool_result", {
        "tool_name": "Bash", "tool_output": "the agent's output ended before this tool finished",
        "tool_execution_id": "toolu_x", "status": "failed", "tool_status": "error"})
    assert adapter.finish() == []


# -- Codex -------------------------------------------------------------------------------------------


def test_codex_transcript_becomes_typed_events() -> None:
    drafts = feed(CodexJsonAdapter("sess1", workspace=WORKDIR), TRANSCRIPTS / "codex-exec.jsonl")
    assert kinds(drafts) == [
        "log", "thought", "tool_use", "tool_result", "thought", "log", "file_edit", "file_edit", "log", "log",
        "tool_use", "tool_result", "message", "log"]
    assert drafts[0].data["level"] == "debug"
    assert "0199a213" in drafts[0].data["message"]
    assert drafts[1].data["thought"].startswith("**Inspecting the login check**")
    assert drafts[2].data == {"tool_name": "shell", "tool_execution_id": "item_1", "status": "started",
                              "tool_args": {"command": "bash -lc 'rg -n \"def login\" -A4 app'"}}
    first = drafts[3].data
    assert (first["status"], first["tool_status"], first["exit_code"]) == ("completed", "success", 0)
    assert "def login(user, password)" in first["tool_output"]
    plans = [d.data["message"] for d in drafts if d.kind == "log" and d.data["message"].startswith("Plan:")]
    assert plans == [
        "Plan:\n[ ] Hash the password in login()\n[ ] Add a regression test\n[ ] Run the tests",
        "Plan:\n[x] Hash the password in login()\n[x] Add a regression test\n[ ] Run the tests"]
    assert [(e["file_path"], e["description"]) for e in only(drafts, "file_edit")] == [
        ("app/auth.py", "update (codex patch)"), ("tests/test_login_regression.py", "add (codex patch)")]
    assert only(drafts, "log", level="error")[0]["message"].startswith("stream error: stream disconnected")
    tests = only(drafts, "tool_result", tool_execution_id="item_5")[0]
    assert (tests["status"], tests["tool_status"], tests["exit_code"]) == ("failed", "error", 1)
    assert only(drafts, "message")[0]["role"] == "assistant"
    assert "24763 input tokens" in drafts[-1].data["message"]


def test_codex_without_workspace_keeps_absolute_paths() -> None:
    drafts = feed(CodexJsonAdapter("sess1"), TRANSCRIPTS / "codex-exec.jsonl")
    assert only(drafts, "file_edit")[0]["file_path"] == f"{WORKDIR}/app/auth.py"


def test_codex_legacy_msg_transcript_becomes_typed_events() -> None:
    drafts = feed(CodexJsonAdapter("sess1"), TRANSCRIPTS / "codex-exec-legacy.jsonl")
    assert kinds(drafts) == [
        "log", "thought", "tool_use", "tool_result", "tool_use", "tool_result", "file_edit", "file_edit",
        "diff", "tool_use", "tool_result", "message", "log", "log"]
    assert drafts[0].data["level"] == "debug"
    assert "codex-mini-latest" in drafts[0].data["message"]
    assert drafts[2].data["tool_args"]["command"].startswith("bash -lc ")
    assert drafts[3].data["status"] == "completed"
    assert drafts[4].data["tool_args"] == {"files": ["app/auth.py", "NOTES.md"]}  # relative to the workdir
    assert [(e["file_path"], e["lines_added"], e["lines_removed"]) for e in only(drafts, "file_edit")] == [
        ("app/auth.py", 1, 1), ("NOTES.md", 1, 0)]
    assert only(drafts, "diff")[0] == {"path": "NOTES.md", "oldText": "", "truncated": False,
                                       "newText": "Passwords are compared as hashes.\n"}
    failed = drafts[10].data
    assert (failed["status"], failed["exit_code"]) == ("failed", 1)
    assert "ERROR: test_auth" in failed["tool_output"]
    assert drafts[11].data["message"].startswith("I fixed the comparison")


def test_codex_command_that_never_completes_fails_at_end_of_output() -> None:
    adapter = CodexJsonAdapter("sess1")
    adapter.stdout_line(b'{"type":"item.started","item":{"id":"item_9","type":"command_execution",'
                        b'"command":"sleep 1000","aggregated_output":"","exit_code":null,'
                        b'"status":"in_progress"}}')
    (draft,) = adapter.finish()
    assert draft.kind == "tool_result"
    assert (draft.data["tool_execution_id"], draft.data["status"]) == ("item_9", "failed")


# -- unreadable output ------------------------------------------------------------------------------

UNREADABLE = [
    b"not json at all",
    b"[1, 2, 3]",
    b'"just a string"',
    b'{"type": "from-the-future"}',
    b'{"type": ["not", "a", "string"]}',
    b'{"type": "assistant"}',
    b'{"type": "user", "message": {"content": [{"type": "tool_result"}, 7]}}',
    b'{"type": "item.completed"}',
    b'{"type": "item.completed", "item": {"id": "x", "type": "from-the-future"}}',
    b'{"type": "item.completed", "item": {"id": 1, "type": "command_execution", "exit_code": []}}',
    b'{"id": "0", "msg": {"type": "mystery"}}',
    b'{"id": "0", "msg": {"type": "patch_apply_begin", "changes": [1, 2]}}',
    b"\xff\xfe\x00 invalid utf-8",
    b'{"type": "thought"}',
    b'{"type": "status", "status": "completed"}',
    b"{" * 10_000,
]


@pytest.mark.parametrize("adapter_class", [ClaudeStreamJsonAdapter, CodexJsonAdapter, ScenarioAdapter,
                                           PlainTextAdapter])
@pytest.mark.parametrize("line", UNREADABLE, ids=lambda b: b[:30].decode("latin-1"))
def test_unreadable_lines_become_logs_never_exceptions(adapter_class: type[AdapterBase], line: bytes) -> None:
    drafts = adapter_class("sess1").stdout_line(line)
    for draft in drafts:
        assert draft.kind in set(EventKind)
        json.dumps(draft.data)  # and it can go on the wire
    assert all(d.kind in ("log", "tool_result", "tool_use") for d in drafts)


def test_scenario_adapter_rejects_what_an_agent_may_not_say() -> None:
    adapter = ScenarioAdapter("sess1")
    for line in (b'{"type": "status", "status": "completed"}', b'{"type": "snapshot", "snapshotId": "x"}',
                 b'{"type": "thought"}', b'{"type": "from-the-future", "x": 1}'):
        (draft,) = adapter.stdout_line(line)
        assert draft.kind == "log"
        assert "unexpected scenario event" in draft.data["message"]


@pytest.mark.parametrize("adapter_class", [ClaudeStreamJsonAdapter, CodexJsonAdapter, ScenarioAdapter,
                                           PlainTextAdapter])
def test_random_output_never_raises(adapter_class: type[AdapterBase]) -> None:
    rng = random.Random(20250101)
    shapes: list[Any] = [None, 0, 1.5, "x", [], {}, [{"type": "text"}], {"type": "tool_use"},
                         {"content": None}]
    adapter = adapter_class("sess1")
    for _ in range(3000):
        if rng.random() < 0.3:
            line = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        else:
            obj: dict[str, Any] = {"type": rng.choice([
                "system", "assistant", "user", "result", "item.started", "item.completed", "thread.started",
                "turn.completed", "log", "thought", "tool_use", "tool_result", "error", None])}
            for key in rng.sample(["message", "item", "msg", "content", "subtype", "usage", "thought",
                                   "tool_name", "tool_execution_id", "progress", "file_path"], 3):
                obj[key] = rng.choice(shapes)
            line = json.dumps(obj).encode()
        for draft in adapter.stdout_line(line) + adapter.stderr_line(line):
            assert draft.kind in set(EventKind)
    adapter.finish()


# -- plain text and scenario output ---------------------------------------------------------------


def test_plain_text_lines_are_info_logs_and_stderr_warns() -> None:
    adapter = PlainTextAdapter("sess1")
    assert adapter.stdout_line(b"\x1b[32mcompiling\x1b[0m 3 files\n") == [
        Draft("log", {"level": "info", "message": "compiling 3 files", "tool_execution_id": None})]
    assert adapter.stdout_line(b"   \n") == []
    assert adapter.stderr_line(b"warning: deprecated\n") == [
        Draft("log", {"level": "warn", "message": "warning: deprecated", "tool_execution_id": None})]
    assert adapter.finish() == []
    assert not adapter.idle


def test_scenario_events_pass_through_in_contract_shape() -> None:
    adapter = ScenarioAdapter("sess1")
    assert adapter.stdout_line(b'{"type": "thought", "thought": "hm"}') == [
        Draft("thought", {"thought": "hm"})]
    (log,) = adapter.stdout_line(b'{"type": "log", "message": "x"}')
    assert log.data == {"message": "x", "level": "info", "tool_execution_id": None}
    adapter.stdout_line(b'{"type": "tool_use", "tool_name": "run_cmd", "tool_args": {}, '
                        b'"tool_execution_id": "c1", "status": "started"}')
    (plain,) = adapter.stdout_line(b"Traceback (most recent call last):")
    assert plain.data["message"] == "Traceback (most recent call last):"
    (unfinished,) = adapter.finish()  # e.g. the agent was SIGKILLed mid-command
    assert unfinished.data["tool_execution_id"] == "c1"
    assert unfinished.data["status"] == "failed"
