"""Playing a checked scenario: the clock, the steps, injected prompts and signals.

One thread (the main one) plays the timeline and writes every event, so events never interleave.
Two helpers only feed it through one bounded inbox: a reader of stdin (injected prompts) and, while
a command runs, a reader of the command's output. Waiting on that inbox is how the clock sleeps,
so a prompt is answered at once even in the middle of a long wait.

Signals: SIGTERM (or SIGINT) raises :class:`Terminated` in the main thread, unless an event is half
written, in which case it is raised right after that event. SIGSTOP/SIGCONT pause the clock: time
spent stopped does not count toward the scenario's waits.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from . import actions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from .loader import Scenario

#: Longest single sleep (seconds). Bounds how much stopped time a wake-up after SIGCONT may count
#: as scenario time, and how late a command's timeout is noticed.
SLICE = 0.05
#: Inbox bound: a reader blocks (and so its command or the daemon's writes do) rather than
#: letting output pile up in memory while an event write is slow.
INBOX_SIZE = 256
#: A command's output kept for its ``tool_result`` (the tail; the progress events carry it all).
OUTPUT_KEEP_CHARS = 64 * 1024
#: Longest progress line sent as one event.
PROGRESS_LINE_CHARS = 4096


class Terminated(Exception):
    """Raised in the main thread by SIGTERM/SIGINT (or when stdout is gone: ``quiet``)."""

    def __init__(self, signum: int, quiet: bool = False) -> None:
        super().__init__(signum)
        self.signum = signum
        self.quiet = quiet


class Output:
    """Writes events as JSON lines, and holds back SIGTERM while a line is half written."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._busy = False
        self._pending: int | None = None

    def install_signal_handlers(self, clock: Clock) -> None:
        """Route SIGTERM/SIGINT to :class:`Terminated` and SIGCONT to the clock. Main thread only."""
        signal.signal(signal.SIGTERM, self._on_terminate)
        signal.signal(signal.SIGINT, self._on_terminate)
        signal.signal(signal.SIGCONT, lambda signum, frame: clock.resumed())

    def _on_terminate(self, signum: int, frame: object) -> None:
        if self._busy:
            self._pending = signum
            return
        raise Terminated(signum)

    def emit(self, event: dict[str, Any]) -> None:
        """Write one event line and flush it.

        Raises:
            Terminated: a signal arrived while writing, or stdout is closed (``quiet``).
        """
        data = json.dumps(event, ensure_ascii=False).encode("utf-8", "replace") + b"\n"
        self._busy = True
        try:
            self._stream.write(data)
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            raise Terminated(signal.SIGPIPE, quiet=True) from None
        finally:
            self._busy = False
        if self._pending is not None:
            signum, self._pending = self._pending, None
            raise Terminated(signum)

    def forget_pending(self) -> None:
        self._pending = None


class Clock:
    """Scenario time in seconds since start, not counting time the process spent stopped.

    A stopped process cannot tell how long it was stopped; it only sees SIGCONT afterwards. So the
    first reading after a SIGCONT counts at most :data:`SLICE` of the time since the previous
    reading, and the player never sleeps longer than :data:`SLICE` between readings.
    """

    def __init__(self) -> None:
        self._last = time.monotonic()
        self._elapsed = 0.0
        self._resumed = False

    def resumed(self) -> None:
        self._resumed = True

    def now(self) -> float:
        t = time.monotonic()
        dt, self._last = t - self._last, t
        if self._resumed:
            self._resumed = False
            dt = min(dt, SLICE)
        self._elapsed += dt
        return self._elapsed


def _log(message: str, level: str = "info", **extra: Any) -> dict[str, Any]:
    return {"type": "log", "level": level, "message": message, "tool_execution_id": None, **extra}


class Player:
    """Plays one scenario in ``workspace`` at ``speed``, writing events to ``out``.

    Args:
        scenario: the checked scenario.
        speed: every wait is divided by it (> 0).
        prompt: the task's prompt (only the built-in demo shows it).
        workspace: the directory to work in (resolved).
        out: where events go.
        clock: the scenario clock (shared with the signal handlers).
    """

    def __init__(self, scenario: Scenario, *, speed: float, workspace: Path, out: Output,
                 clock: Clock) -> None:
        self.scenario = scenario
        self.speed = speed
        self.workspace = workspace
        self.out = out
        self.clock = clock
        #: ("prompt", text, None) from stdin; ("line", text, proc) / ("exit", code, proc) from commands.
        self.inbox: queue.Queue[tuple[str, Any, Any]] = queue.Queue(maxsize=INBOX_SIZE)
        self._tool: tuple[str, str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- running ----------------------------------------------------------------------------------

    def start_stdin_reader(self, stdin: BinaryIO) -> None:
        """Read injected prompts, one per line, in a daemon thread."""
        threading.Thread(target=self._read_stdin, args=(stdin,), name="stdin", daemon=True).start()

    def _read_stdin(self, stdin: BinaryIO) -> None:
        try:
            for raw in stdin:
                self.inbox.put(("prompt", raw.decode("utf-8", "replace").strip(), None))
        except (OSError, ValueError):
            pass  # stdin closed under us: no more prompts

    def run(self) -> int:
        """Seed the workspace, play the timeline and return the exit status to end with."""
        try:
            steps = self.scenario.steps
            self.out.emit(_log(f"scenario {self.scenario.name or '(unnamed)'}: {len(steps)} steps "
                               f"at speed {self.speed:g}", "debug"))
            if self.scenario.repo is not None:
                try:
                    for warning in actions.seed(self.workspace, self.scenario.repo, self.scenario.base_dir):
                        self.out.emit(_log(warning, "warn"))
                except actions.ActionError as exc:
                    self.out.emit(_log(f"cannot seed the workspace: {exc}", "error"))
                    return 1
            for kind, payload in steps:
                end = self._PLAY[kind](self, payload)
                if end is not None:
                    return int(end)
            return self.scenario.exit_code
        except Terminated as stop:
            return self._shutdown(stop)

    def _shutdown(self, stop: Terminated) -> int:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.out.forget_pending()
        self._stop_command()
        if os.getpgrp() == os.getpid():
            # As the leader of its own process group (how the daemon starts agents), also end what
            # a command left behind (a shell's children); SIGTERM is ignored here by now. Never
            # done otherwise: the group would be someone else's, a test runner's for instance.
            os.killpg(os.getpid(), signal.SIGTERM)
        if not stop.quiet:
            name = signal.Signals(stop.signum).name
            try:
                if self._tool is not None:
                    tool_id, tool_name = self._tool
                    self.out.emit({"type": "tool_result", "tool_name": tool_name,
                                   "tool_execution_id": tool_id, "tool_output": f"interrupted by {name}",
                                   "status": "failed", "tool_status": "error"})
                self.out.emit(_log(f"received {name}; stopping", "warn"))
            except Terminated:
                pass
        return 128 + stop.signum

    # -- the clock ----------------------------------------------------------------------------------

    def _at(self, start: float, ms: float) -> None:
        self._wait_until(start + ms / 1000 / self.speed)

    def _wait_until(self, target: float) -> None:
        while (remaining := target - self.clock.now()) > 0:
            try:
                kind, value, _ = self.inbox.get(timeout=min(remaining, SLICE))
            except queue.Empty:
                continue
            if kind == "prompt":
                self._answer(value)

    def _answer(self, text: str) -> None:
        if text:
            self.out.emit(_log(text, role="user"))
            self.out.emit({"type": "thought", "thought": f"New instruction from the user: {text}"})

    # -- steps -----------------------------------------------------------------------------------

    def _timed(self, items: list[tuple[float, str]], make: Any) -> None:
        start = self.clock.now()
        for ms, text in items:
            self._at(start, ms)
            self.out.emit(make(text))

    def _think(self, items: list[tuple[float, str]]) -> None:
        self._timed(items, lambda text: {"type": "thought", "thought": text})

    def _assistant(self, items: list[tuple[float, str]]) -> None:
        self._timed(items, lambda text: {"type": "message", "message": text, "role": "assistant"})

    def _inputs(self, items: list[tuple[float, str]]) -> None:
        self._timed(items, lambda text: _log(text, role="user"))

    def _progress(self, payload: dict[str, Any]) -> None:
        self.out.emit({"type": "progress", **payload})

    def _error(self, message: str) -> None:
        self.out.emit(_log(message, "error"))

    def _wait(self, ms: float) -> None:
        self._at(self.clock.now(), ms)

    def _complete(self, payload: None) -> int:
        return self.scenario.exit_code

    def _fail(self, payload: dict[str, Any]) -> int:
        self.out.emit(_log(payload["message"], "error"))
        return int(payload["exit_code"])

    def _start_tool(self, name: str, args: Any) -> str:
        tool_id = f"call_{os.urandom(6).hex()}"
        self.out.emit({"type": "tool_use", "tool_name": name, "tool_args": args, "tool_execution_id": tool_id,
                       "status": "started"})
        self._tool = (tool_id, name)
        return tool_id

    def _end_tool(self, output: str, ok: bool, **extra: Any) -> None:
        assert self._tool is not None
        tool_id, name = self._tool
        self.out.emit({"type": "tool_result", "tool_name": name, "tool_output": output,
                       "tool_execution_id": tool_id, "status": "completed" if ok else "failed",
                       "tool_status": "success" if ok else "error", **extra})
        self._tool = None

    def _progress_line(self, tool_id: str, name: str, line: str) -> dict[str, Any]:
        line = line[:PROGRESS_LINE_CHARS]
        return {"type": "log", "level": "info", "message": line, "tool_execution_id": tool_id,
                "tool_name": name, "last_line": line}

    def _tool_step(self, p: dict[str, Any]) -> None:
        start = self.clock.now()
        tool_id = self._start_tool(p["name"], p["args"])
        if p["command"] is None:
            for ms, line in p["progress"]:
                self._at(start, ms)
                self.out.emit(self._progress_line(tool_id, p["name"], line))
            self._end_tool(p["result"] or "", not p["failed"])
            return
        try:
            cwd = actions.inside(self.workspace, p["cwd"])
        except actions.ActionError as exc:
            self._end_tool(str(exc), False)
            return
        output, code = self._run_command(tool_id, p["name"], p["command"], cwd, p["timeout_ms"])
        self._end_tool(output, code == 0 and not p["failed"], exit_code=code)

    def _run_command(self, tool_id: str, name: str, command: str, cwd: Path,
                     timeout_ms: float | None) -> tuple[str, int]:
        """Run ``command`` through the shell; each output line is a progress event.

        The command stays in the agent's process group, so pausing or stopping the session reaches it.
        """
        try:
            proc = subprocess.Popen(command, shell=True, cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as exc:
            return f"cannot run the command: {exc}", 127
        self._proc = proc
        threading.Thread(target=self._read_command, args=(proc,), name="command", daemon=True).start()
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        kept: deque[str] = deque()
        kept_chars = 0
        try:
            while True:
                try:
                    kind, value, source = self.inbox.get(timeout=SLICE)
                except queue.Empty:
                    self.clock.now()  # keep reading the clock, so stopped time is recognised
                    if deadline is not None and time.monotonic() > deadline:
                        self._stop_command()
                        kept.append(f"[timed out after {timeout_ms:g} ms]\n")
                        return "".join(kept), 124
                    continue
                if kind == "prompt":
                    self._answer(value)
                elif source is not proc:
                    continue  # left over from an earlier command
                elif kind == "exit":
                    return "".join(kept), value
                else:
                    kept.append(value)
                    kept_chars += len(value)
                    while kept_chars > OUTPUT_KEEP_CHARS and len(kept) > 1:
                        kept_chars -= len(kept.popleft())
                    if value.strip():
                        self.out.emit(self._progress_line(tool_id, name, value.rstrip("\r\n")))
        finally:
            self._stop_command()

    def _read_command(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self.inbox.put(("line", raw.decode("utf-8", "replace"), proc))
        self.inbox.put(("exit", proc.wait(), proc))

    def _stop_command(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _file_step(self, p: dict[str, Any]) -> None:
        if p["kind"] == "write":
            self._start_tool(p["tool_name"], {"path": p["path"], "content": p["content"]})
        else:
            self._start_tool(p["tool_name"], {"path": p["path"], "old_string": p["old"],
                                              "new_string": p["new"], "replace_all": p["replace_all"]})
        try:
            if p["kind"] == "write":
                added, removed = actions.write_file(self.workspace, p["path"], p["content"])
            else:
                added, removed = actions.edit_file(self.workspace, p["path"], p["old"], p["new"],
                                                   p["replace_all"])
        except actions.ActionError as exc:
            self._end_tool(str(exc), False)
            return
        verb = "wrote" if p["kind"] == "write" else "edited"
        self._end_tool(f"{verb} {p['path']}", True)
        self._file_edit(p["path"], added, removed, f"{p['tool_name']}: {verb} the file")

    def _write(self, p: dict[str, Any]) -> None:
        self._file_step({**p, "kind": "write"})

    def _edit(self, p: dict[str, Any]) -> None:
        self._file_step({**p, "kind": "edit"})

    def _agent_edits(self, p: dict[str, Any]) -> None:
        try:
            added, removed = actions.change_lines(self.workspace, p["path"], p["added"], p["removed"])
        except actions.ActionError as exc:
            self.out.emit(_log(f"agentEdits on {p['path']} failed: {exc}", "error"))
            return
        description = p["description"] or f"added {added} lines, removed {removed}"
        self._file_edit(p["path"], added, removed, description)

    def _file_edit(self, path: str, added: int, removed: int, description: str) -> None:
        self.out.emit({"type": "file_edit", "file_path": path, "lines_added": added, "lines_removed": removed,
                       "description": description})

    _PLAY: dict[str, Any] = {
        "think": _think,
        "assistant": _assistant,
        "inputs": _inputs,
        "tool": _tool_step,
        "agent_edits": _agent_edits,
        "write": _write,
        "edit": _edit,
        "progress": _progress,
        "error": _error,
        "wait": _wait,
        "complete": _complete,
        "fail": _fail,
    }
