"""Launch plans run for real, the way the session actor runs them: spawn ``argv`` in the workspace
with ``env`` added, write ``stdin_data``, keep or close stdin, feed stdout to the spec's adapter.

Claude Code and Codex are replaced by the fake executables in ``tests/fixtures/bin``, found on PATH.
"""

from __future__ import annotations

import os
from pathlib import Path
from subprocess import PIPE

import pytest
import trio

from actors.events import Draft
from harbor.agents.catalog import AgentCatalog, AgentContext, AgentSpec, LaunchPlan

from .conftest import DEADLINE, FIXTURES, LineReader
from .test_adapters import TRANSCRIPTS, feed

FAKE_BIN = FIXTURES / "bin"


@pytest.fixture(autouse=True)
def fake_binaries_first_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")


async def spawn(plan: LaunchPlan, workspace: Path) -> trio.Process:
    proc = await trio.lowlevel.open_process(plan.argv, stdin=PIPE, stdout=PIPE, cwd=workspace,
                                            env={**os.environ, **plan.env})
    assert proc.stdin is not None
    if plan.stdin_data:
        await proc.stdin.send_all(plan.stdin_data)
    if not plan.keep_stdin_open:
        await proc.stdin.aclose()
    return proc


def launch(agent: str, settings: dict[str, object], workspace: Path, prompt: str = "Fix the login bug"
           ) -> tuple[AgentSpec, LaunchPlan]:
    spec, normalised = AgentCatalog(allow_command_agent=True).resolve(agent, settings)
    return spec, spec.launch(AgentContext("01JSESSION", prompt, workspace, normalised))


async def test_claude_plan_runs_a_turn_takes_an_injected_prompt_and_exits_when_idle(workspace: Path) -> None:
    spec, plan = launch("claude-code", {}, workspace)
    adapter = spec.adapter("01JSESSION", workspace)
    proc = await spawn(plan, workspace)
    assert proc.stdin is not None
    assert proc.stdout is not None
    reader, drafts, injected = LineReader(proc.stdout), list[Draft](), False
    with trio.fail_after(DEADLINE):
        while (line := await reader.readline()) is not None:
            drafts += adapter.stdout_line(line)
            if adapter.idle and not injected:
                await proc.stdin.send_all(spec.encode_prompt("also update the docs"))
                injected = True
            elif adapter.idle:
                await proc.stdin.aclose()  # nothing more to say: let it exit
        drafts += adapter.finish()
        assert await proc.wait() == 0

    recorded = feed(spec.adapter("01JSESSION"), TRANSCRIPTS / "claude-stream-json.jsonl")
    assert drafts[: len(recorded)] == recorded
    expected_kinds = {"thought", "message", "tool_use", "tool_result", "file_edit", "diff", "log"}
    assert expected_kinds <= {d.kind for d in drafts}
    second_turn = drafts[len(recorded):]
    assert [d.kind for d in second_turn] == ["message", "log"]
    assert second_turn[0].data["message"] == "Noted: also update the docs"


async def test_codex_plan_replays_through_the_adapter(workspace: Path) -> None:
    spec, plan = launch("codex", {}, workspace)
    adapter = spec.adapter("01JSESSION")
    proc = await spawn(plan, workspace)
    assert proc.stdout is not None
    reader, drafts = LineReader(proc.stdout), list[Draft]()
    with trio.fail_after(DEADLINE):  # stdin was closed at once, so it does not wait for more input
        while (line := await reader.readline()) is not None:
            drafts += adapter.stdout_line(line)
        drafts += adapter.finish()
        assert await proc.wait() == 0
    assert drafts == feed(spec.adapter("01JSESSION"), TRANSCRIPTS / "codex-exec.jsonl")
    assert [d.data["tool_execution_id"] for d in drafts if d.kind == "tool_result"] == ["item_1", "item_5"]


async def test_scenario_plan_runs_the_agent_and_its_events_parse(workspace: Path) -> None:
    spec, plan = launch("mock", {"speed": 100, "scenario": {"timeline": [
        {"think": [[0, "planning"]]},
        {"agentToolUse": {"toolName": "run_cmd", "args": {"cmd": "echo $AH_SESSION_ID"}}},
        {"agentEdits": {"path": "out.txt", "linesAdded": 1, "linesRemoved": 0}},
        {"userInputs": [[20, "simulated input"]]},
    ]}}, workspace)
    adapter = spec.adapter("01JSESSION")
    proc = await spawn(plan, workspace)
    assert proc.stdin is not None
    assert proc.stdout is not None
    reader, drafts = LineReader(proc.stdout), list[Draft]()
    with trio.fail_after(DEADLINE):
        while (line := await reader.readline()) is not None:
            drafts += adapter.stdout_line(line)
            if drafts[-1].data.get("role") == "user" and drafts[-1].data["message"] == "simulated input":
                await proc.stdin.aclose()
        assert await proc.wait() == 0
    assert [d.kind for d in drafts] == [
        "log", "thought", "tool_use", "log", "tool_result", "file_edit", "log"]
    assert drafts[3].data["last_line"] == "01JSESSION"
    assert (workspace / "out.txt").exists()
