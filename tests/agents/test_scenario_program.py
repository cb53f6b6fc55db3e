"""The scenario agent as a real child process: it plays every step kind, really runs commands and
edits files, seeds the workspace, reads injected prompts, ends on signals and refuses bad input."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import trio

from harbor.agents.adapters import ScenarioAdapter
from harbor.agents.scenario.loader import SHIPPED_DIR, read_scenario_file, shipped_names

from .conftest import SCENARIO_ARGV, AgentProcess, StartAgent, scenario_json

EVERY_STEP = textwrap.dedent("""\
    name: every_step
    initialPrompt: exercise everything
    repo:
      init: true
      files:
        - path: src/app.py
          contents: "print('v1')\\n"
        - path: data/blob.bin
          contents: {base64: AAEC/w==}
    timeline:
      - llmResponse:
          - think: [[10, thinking inside llmResponse]]
          - assistant: [[10, assistant text]]
      - think: [[0, top-level think]]
      - agentToolUse:
          toolName: run_cmd
          args: {cmd: "echo out-line-1; echo out-line-2; git log --oneline | wc -l > commits.txt"}
      - agentToolUse:
          toolName: search
          args: {query: login}
          progress: [[10, searching...], [20, found 2 matches]]
          result: 2 matches
          status: ok
      - agentToolUse:
          toolName: runCmd
          args: {command: "echo failing; exit 3"}
      - agentToolUse:
          toolName: deploy
          args: {}
          result: refused
          status: error
      - agentEdits: {path: src/app.py, linesAdded: 2, linesRemoved: 1}
      - agentEdits: {path: new/dir/notes.md, linesAdded: 3, linesRemoved: 0}
      - writeFile: {path: written.txt, content: "one\\ntwo\\n"}
      - editFile: {path: written.txt, old_string: two, new_string: TWO}
      - editFile: {path: written.txt, old_string: absent, new_string: x}
      - userInputs: [{relativeTime: 10, input: scripted user input}]
      - progress: {progress: 42, stage: halfway}
      - error: {message: scripted error}
      - screenshot: ignored
      - assert: {fs: {exists: [src/app.py]}}
      - baseTimeDelta: 10
      - complete: true
      - think: [[0, never played]]
    expect: {exitCode: 3}
""")


WAITS_TEN_MINUTES = {"timeline": [{"think": [[0, "ready"], [600_000, "much later"]]}]}


async def test_plays_every_step_kind_for_real(start_agent: StartAgent, workspace: Path,
                                              tmp_path: Path) -> None:
    scenario = tmp_path / "every_step.yaml"
    scenario.write_text(EVERY_STEP)
    agent = await start_agent("--scenario", str(scenario), "--speed", "100")

    assert await agent.finish() == 3  # expect.exitCode, reached through `complete`

    thoughts = [e["thought"] for e in agent.of_type("thought")]
    assert thoughts == ["thinking inside llmResponse", "top-level think"]
    assert [e["message"] for e in agent.of_type("message")] == ["assistant text"]
    assert all(e["role"] == "assistant" for e in agent.of_type("message"))

    uses = agent.of_type("tool_use")
    results = {e["tool_execution_id"]: e for e in agent.of_type("tool_result")}
    assert [u["tool_name"] for u in uses] == [
        "run_cmd", "search", "runCmd", "deploy", "writeFile", "editFile", "editFile"]
    assert all(u["status"] == "started" for u in uses)
    echo, search, failing, deploy, write, edit, bad_edit = (results[u["tool_execution_id"]] for u in uses)
    progress = [e for e in agent.of_type("log") if "last_line" in e]
    assert [(p["tool_execution_id"], p["last_line"]) for p in progress] == [
        (echo["tool_execution_id"], "out-line-1"), (echo["tool_execution_id"], "out-line-2"),
        (search["tool_execution_id"], "searching..."), (search["tool_execution_id"], "found 2 matches"),
        (failing["tool_execution_id"], "failing")]
    assert (echo["status"], echo["tool_status"], echo["exit_code"]) == ("completed", "success", 0)
    assert echo["tool_output"] == "out-line-1\nout-line-2\n"
    assert (search["status"], search["tool_output"]) == ("completed", "2 matches")
    assert (failing["status"], failing["tool_status"], failing["exit_code"]) == ("failed", "error", 3)
    assert (deploy["status"], deploy["tool_output"]) == ("failed", "refused")
    assert (write["status"], edit["status"], bad_edit["status"]) == ("completed", "completed", "failed")
    assert "not found" in bad_edit["tool_output"]

    # The command ran in the seeded repository, after its initial commit.
    assert (workspace / "commits.txt").read_text().strip() == "1"
    assert (workspace / "data/blob.bin").read_bytes() == b"\x00\x01\x02\xff"
    app_lines = (workspace / "src/app.py").read_text().splitlines()
    assert len(app_lines) == 2
    assert "print('v1')" not in app_lines
    assert len((workspace / "new/dir/notes.md").read_text().splitlines()) == 3
    assert (workspace / "written.txt").read_text() == "one\nTWO\n"
    edits = [(e["file_path"], e["lines_added"], e["lines_removed"]) for e in agent.of_type("file_edit")]
    assert edits == [
        ("src/app.py", 2, 1), ("new/dir/notes.md", 3, 0), ("written.txt", 2, 0), ("written.txt", 1, 1)]

    user = [e for e in agent.of_type("log") if e.get("role") == "user"]
    assert [u["message"] for u in user] == ["scripted user input"]
    assert agent.of_type("progress") == [{"type": "progress", "progress": 42, "stage": "halfway"}]
    assert [e["message"] for e in agent.of_type("log") if e["level"] == "error"] == ["scripted error"]

    # Every line is an event the daemon's adapter takes as it is.
    adapter = ScenarioAdapter("s1")
    drafts = [d for line in agent.lines for d in adapter.stdout_line(line)]
    assert len(drafts) == len(agent.lines)
    assert not [d for d in drafts if "unexpected" in str(d.data.get("message", ""))]
    assert adapter.finish() == []


async def test_fail_step_ends_with_its_exit_code(start_agent: StartAgent) -> None:
    agent = await start_agent(*scenario_json({"timeline": [
        {"think": [[0, "before"]]},
        {"fail": {"exitCode": 7, "message": "cannot continue"}},
        {"think": [[0, "after"]]},
    ]}), "--speed", "100")
    assert await agent.finish() == 7
    assert [e["thought"] for e in agent.of_type("thought")] == ["before"]
    assert agent.events[-1] == {"type": "log", "level": "error", "message": "cannot continue",
                                "tool_execution_id": None}


async def test_timeline_end_exits_with_expected_code(start_agent: StartAgent) -> None:
    agent = await start_agent(*scenario_json({"timeline": [{"think": ["only"]}], "expect": {"exitCode": 5}}))
    assert await agent.finish() == 5


async def test_named_scenario_is_found_in_scenario_dirs(start_agent: StartAgent, tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "mine.yml").write_text("name: mine\ntimeline:\n  - think: [[0, from my directory]]\n")
    agent = await start_agent("--scenario", "mine", "--scenario-dir", str(scenarios))
    assert await agent.finish() == 0
    assert [e["thought"] for e in agent.of_type("thought")] == ["from my directory"]


@pytest.mark.parametrize("name", shipped_names())
async def test_shipped_scenarios_play_to_the_end(start_agent: StartAgent, workspace: Path, name: str) -> None:
    expected = read_scenario_file(SHIPPED_DIR / f"{name}.yaml").exit_code
    agent = await start_agent("--scenario", name, "--speed", "5000")
    assert await agent.finish() == expected
    assert agent.of_type("progress")[-1]["progress"] == 100
    failed = [r for r in agent.of_type("tool_result") if r["status"] != "completed"]
    if name == "fix_login_bug":  # the first test run fails, the fix makes the second pass
        assert [r["tool_name"] for r in failed] == ["run_cmd"]
        assert "hash_password(password)" in (workspace / "app/auth.py").read_text()
    else:
        assert failed == []


async def test_builtin_demo_reads_the_prompt_runs_a_command_and_edits(start_agent: StartAgent,
                                                                     workspace: Path) -> None:
    agent = await start_agent("--speed", "50", "--prompt", "tidy the README")
    assert await agent.finish() == 0
    assert "tidy the README" in agent.of_type("thought")[0]["thought"]
    (use,) = agent.of_type("tool_use")
    assert use["tool_args"] == {"cmd": "ls -la"}
    assert agent.of_type("tool_result")[0]["status"] == "completed"
    assert agent.of_type("file_edit")[0]["file_path"] == "HARBOR_DEMO.md"
    assert len((workspace / "HARBOR_DEMO.md").read_text().splitlines()) == 3


async def test_injected_prompt_is_answered_while_the_clock_waits(start_agent: StartAgent) -> None:
    agent = await start_agent(*scenario_json(WAITS_TEN_MINUTES))
    await agent.wait_for(lambda e: e.get("thought") == "ready")
    await agent.send_line("please also add tests")
    echo = await agent.wait_for(lambda e: e["type"] != "log" or e.get("role") == "user", timeout=5)
    assert echo == {"type": "log", "level": "info", "message": "please also add tests", "role": "user",
                    "tool_execution_id": None}
    answer = await agent.next_event()
    assert answer is not None
    assert answer["type"] == "thought"
    assert "please also add tests" in answer["thought"]


async def test_sigterm_mid_wait_exits_143_promptly(start_agent: StartAgent) -> None:
    # Regression guard: the clock's wait must not defer SIGTERM until the scenario's next event.
    agent = await start_agent(*scenario_json(WAITS_TEN_MINUTES))
    await agent.wait_for(lambda e: e.get("thought") == "ready")
    agent.proc.send_signal(signal.SIGTERM)
    assert await agent.finish(timeout=3) == 143
    assert agent.events[-1] == {"type": "log", "level": "warn", "message": "received SIGTERM; stopping",
                                "tool_execution_id": None}


async def test_sigterm_mid_command_fails_the_tool_and_exits_143(start_agent: StartAgent) -> None:
    agent = await start_agent(*scenario_json({"timeline": [
        {"agentToolUse": {"toolName": "run_cmd", "args": {"cmd": "echo started; sleep 60"}}}]}))
    await agent.wait_for(lambda e: e.get("last_line") == "started")
    await agent.send_line("a prompt while a command runs")
    await agent.wait_for(lambda e: e.get("role") == "user")
    agent.proc.send_signal(signal.SIGTERM)
    assert await agent.finish(timeout=3) == 143
    (result,) = agent.of_type("tool_result")
    assert (result["status"], result["tool_output"]) == ("failed", "interrupted by SIGTERM")


async def test_stopped_time_does_not_count(start_agent: StartAgent) -> None:
    # "b" is due 2 s of running time after "a"; the agent is stopped for 2.5 s. Without a pause-aware
    # clock "b" would follow SIGCONT at once. With one it comes (2 s - the time that ran before the
    # stop) later: the gap leaves room for a loaded machine's delay between "a" and SIGSTOP.
    agent = await start_agent(*scenario_json({"timeline": [{"think": [[0, "a"], [2000, "b"]]}]}))
    await agent.wait_for(lambda e: e.get("thought") == "a")
    agent.proc.send_signal(signal.SIGSTOP)
    await trio.sleep(2.5)  # the pause itself is the stimulus here, not a synchronisation
    agent.proc.send_signal(signal.SIGCONT)
    continued = trio.current_time()
    await agent.wait_for(lambda e: e.get("thought") == "b")
    assert trio.current_time() - continued > 0.3
    assert await agent.finish() == 0


@pytest.mark.parametrize(("args", "why"), [
    (("--scenario-json", "{not json"), "not valid JSON"),
    (("--scenario-json", '{"timeline": {"think": []}}'), "timeline: must be a list"),
    (("--scenario-json", '{"timeline": [{"think": [[-5, "x"]]}]}'), "timeline[0].think[0]"),
    (("--scenario-json", '{"timeline": [{"agentEdits": {"path": "../outside"}}]}'), "leaves the workspace"),
    (("--scenario-json", '{"timeline": [], "expect": {"exitCode": "zero"}}'), "expect.exitCode"),
    (("--scenario", "no-such-scenario"), "no scenario named 'no-such-scenario'"),
    (("--speed", "0"), "bad arguments"),
])
async def test_malformed_input_exits_2_with_a_clear_message(start_agent: StartAgent, args: tuple[str, ...],
                                                            why: str) -> None:
    agent = await start_agent(*args)
    assert await agent.finish() == 2
    assert len(agent.events) == 1
    assert agent.events[0]["type"] == "log"
    assert agent.events[0]["level"] == "error"
    assert why in agent.events[0]["message"]
    assert why in await agent.stderr()


async def test_malformed_yaml_file_exits_2_before_touching_the_workspace(
        start_agent: StartAgent, workspace: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("repo:\n  files:\n    - path: seeded.txt\n      contents: x\n"
                   "timeline:\n  - think: [[0, ok]\n")
    agent = await start_agent("--scenario", str(bad))
    assert await agent.finish() == 2
    assert "invalid YAML" in agent.events[0]["message"]
    assert not (workspace / "seeded.txt").exists()


def test_startup_imports_neither_yaml_nor_the_daemon(tmp_path: Path) -> None:
    # Start-up time matters: an inline scenario needs only the standard library.
    proc = subprocess.run([sys.executable, "-X", "importtime", *SCENARIO_ARGV[1:], "--scenario-json",
                           '{"timeline": []}'], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "harbor.agents.scenario.player" in imported
    unwanted = {"yaml", "trio", "actors", "actors.events", "harbor.agents.catalog", "harbor.agents.adapters"}
    assert not imported & unwanted


async def test_sigterm_to_a_group_leader_also_ends_what_its_command_left(workspace: Path) -> None:
    # As the daemon starts it (its own process group), the agent also ends a command's children.
    proc = await trio.lowlevel.open_process(
        [*SCENARIO_ARGV, *scenario_json({"timeline": [{"agentToolUse": {"toolName": "run_cmd", "args": {
            "cmd": "sleep 60 & echo $! > sleep.pid; echo started; wait"}}}]})],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, cwd=workspace, start_new_session=True)
    agent = AgentProcess(proc)
    try:
        await agent.wait_for(lambda e: e.get("last_line") == "started")
        sleeper = psutil.Process(int((workspace / "sleep.pid").read_text()))
        proc.send_signal(signal.SIGTERM)
        assert await agent.finish(timeout=3) == 143
        await trio.to_thread.run_sync(sleeper.wait, 5)  # raises TimeoutExpired if it survived
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
