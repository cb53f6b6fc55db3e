"""``ah task`` and ``ah session`` as a person or a script runs them: subprocesses against the real daemon."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import REPO, DaemonProcess, command_task, scenario_task, wait_status

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "NO_COLOR": "1"}


def ah(*args: str, url: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
       ) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "harbor.cli", *args]
    if url is not None:
        argv += ["--remote-server", url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env or ENV)


def create(daemon: DaemonProcess, body: dict[str, Any]) -> str:
    with daemon.client() as c:
        r = c.post("/api/v1/tasks", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_task_create_follow_prints_the_activity_and_exits_0(daemon: DaemonProcess) -> None:
    done = ah("task", "create", "-p", "say hello", "--agent", "scenario", "--setting", "speed=50", "--follow",
              url=daemon.url)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("created session ")
    for shown in ("● running", "… Reading the task: say hello", "▶ run_cmd ls -la", "│ total",
                  "✔ run_cmd", "✎ HARBOR_DEMO.md +3 -0", "» Done:", "● completed"):
        assert shown in out, f"{shown!r} missing from:\n{out}"
    assert "ended: completed" in done.stderr


def test_follow_exit_code_says_how_the_session_ended(daemon: DaemonProcess) -> None:
    failed = ah("task", "create", "-p", "x", "--agent", "command", "-s", 'command=["sh","-c","exit 3"]',
                "--follow", url=daemon.url)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "● failed" in failed.stdout

    session_id = create(daemon, scenario_task("long_running", speed=1))
    with daemon.client() as c:
        wait_status(c, session_id, "running")
    follower = subprocess.Popen([sys.executable, "-m", "harbor.cli", "session", "follow", session_id,
                                 "--remote-server", daemon.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=REPO, env=ENV)
    try:
        assert follower.stdout is not None
        assert "● running" in follower.stdout.readline() + follower.stdout.readline()  # it is following
        stopped = ah("session", "stop", session_id, "--reason", "enough", "--wait", url=daemon.url)
        assert stopped.returncode == 0, stopped.stderr
        assert f"session {session_id}: stopped" in stopped.stdout
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill() if follower.poll() is None else None
    assert follower.returncode == 2, err
    assert "● stopped" in out


def test_pause_resume_stop_change_the_session(daemon: DaemonProcess) -> None:
    session_id = create(daemon, command_task(["sleep", "30"]))
    with daemon.client() as c:
        wait_status(c, session_id, "running")

        paused = ah("session", "pause", session_id, url=daemon.url)
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.strip() == f"session {session_id}: paused"
        assert c.get(f"/api/v1/sessions/{session_id}").json()["status"] == "paused"

        again = ah("session", "pause", session_id, url=daemon.url)  # 409: one line, non-zero
        assert again.returncode == 1
        assert again.stderr.strip() == "Error: cannot pause a session that is paused"

        resumed = ah("session", "resume", session_id, "--json", url=daemon.url)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["status"] == "running"
        assert c.get(f"/api/v1/sessions/{session_id}").json()["status"] == "running"

        stopping = ah("session", "stop", session_id, "--json", url=daemon.url)
        assert stopping.returncode == 0, stopping.stderr
        assert json.loads(stopping.stdout)["status"] == "accepted"
        assert wait_status(c, session_id, {"stopped"})["status"] == "stopped"

        killed = ah("session", "kill", session_id, url=daemon.url)
        assert killed.returncode == 0, killed.stderr
        assert c.get(f"/api/v1/sessions/{session_id}").status_code == 404


def test_json_output_is_machine_readable(daemon: DaemonProcess) -> None:
    created = ah("task", "create", "-p", "json please", "--setting", "speed=50", "--count", "2", "--json",
                 url=daemon.url)
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    assert len(doc["session_ids"]) == 2
    assert doc["id"] == doc["session_ids"][0]

    listed = ah("session", "list", "--limit", "200", "--json", url=daemon.url)
    assert listed.returncode == 0, listed.stderr
    ids = {s["id"] for s in json.loads(listed.stdout)["items"]}
    assert set(doc["session_ids"]) <= ids

    shown = ah("session", "show", doc["id"], "--json", url=daemon.url)
    assert shown.returncode == 0, shown.stderr
    session = json.loads(shown.stdout)
    assert session["id"] == doc["id"]
    assert session["agent"]["type"] == "scenario"

    with daemon.client() as c:
        wait_status(c, doc["id"], "completed")
    events = ah("session", "follow", doc["id"], "--json", url=daemon.url)
    assert events.returncode == 0
    lines = [json.loads(line) for line in events.stdout.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert lines[-1]["status"] == "completed"


def test_human_list_show_and_logs(daemon: DaemonProcess) -> None:
    session_id = create(daemon, scenario_task(speed=50, prompt="tabulate me"))
    with daemon.client() as c:
        wait_status(c, session_id, "completed")
    listed = ah("session", "list", "--limit", "200", url=daemon.url)
    row = next(line for line in listed.stdout.splitlines() if line.startswith(session_id))
    assert "completed" in row
    assert "scenario" in row
    assert "tabulate me" in row
    shown = ah("session", "show", session_id, url=daemon.url)
    assert "status      completed" in shown.stdout
    logs = ah("session", "logs", session_id, "--tail", "50", url=daemon.url)
    assert logs.returncode == 0
    assert "README.md" in logs.stdout or "Done:" in logs.stdout


def test_unknown_session_is_one_line_and_non_zero(daemon: DaemonProcess) -> None:
    for verb in ("show", "pause", "follow", "kill"):
        done = ah("session", verb, "01NOSUCHSESSION0000000000", url=daemon.url)
        assert done.returncode == 1, verb
        assert done.stdout == ""
        assert done.stderr.strip() == "Error: session '01NOSUCHSESSION0000000000' does not exist", verb


def test_daemon_down_is_a_clear_message() -> None:
    port = closed_port()
    done = ah("session", "list", url=f"http://127.0.0.1:{port}", timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"Error: cannot reach the daemon at http://127.0.0.1:{port}: "
                                   "is it running? (ah agent access-point)")
    # Without --remote-server the local daemon's address comes from the settings.
    local = ah("status", "--once", env={**ENV, "AH_PORT": str(port)}, timeout=30)
    assert local.returncode == 1
    assert f"cannot reach the daemon at http://127.0.0.1:{port}" in local.stderr
    remote = ah("session", "list", env={**ENV, "AH_REMOTE_SERVER": f"http://127.0.0.1:{port}"}, timeout=30)
    assert f"cannot reach the daemon at http://127.0.0.1:{port}" in remote.stderr


def test_bad_setting_is_a_usage_error(daemon: DaemonProcess) -> None:
    done = ah("task", "create", "-p", "x", "--setting", "no-equals-sign", url=daemon.url)
    assert done.returncode == 2
    assert "'no-equals-sign' is not key=value" in done.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_shell_script(shell: str) -> None:
    script = ah("completion", shell)
    assert script.returncode == 0
    assert "_AH_COMPLETE" in script.stdout


def test_shell_completion_completes_subcommands() -> None:
    # What the bash script asks the installed ``ah`` (the variable's name comes from the program name).
    env = {**ENV, "_AH_COMPLETE": "bash_complete", "COMP_WORDS": "ah session p", "COMP_CWORD": "2"}
    completed = subprocess.run([str(Path(sys.executable).parent / "ah")], capture_output=True, text=True,
                               env=env, cwd=REPO, timeout=30)
    assert completed.stdout.split() == ["plain,pause", "plain,prompt"]
