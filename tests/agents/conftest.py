"""Helpers for the agent tests: real agent processes driven over their pipes, synchronised on the
events they print (never on sleeps)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
import trio

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SCENARIO_ARGV = [sys.executable, "-u", "-m", "harbor.agents.scenario"]
#: Generous: a loaded CI machine may be slow to start Python; a hang still fails well within it.
DEADLINE = 20


class LineReader:
    """Splits a byte stream into lines (the stream gives arbitrary chunks)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self.eof = False

    async def readline(self) -> bytes | None:
        """The next line without its newline; the last partial line at EOF; None after that."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if self.eof:
                if self._buffer:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line
                return None
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                self.eof = True
            self._buffer += chunk


class AgentProcess:
    """A running agent; its stdout lines are parsed as JSON events and kept in :attr:`events`."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        assert proc.stdout is not None
        self.stdout = LineReader(proc.stdout)
        self.events: list[dict[str, Any]] = []
        self.lines: list[bytes] = []

    async def next_event(self) -> dict[str, Any] | None:
        line = await self.stdout.readline()
        if line is None:
            return None
        self.lines.append(line)
        event = json.loads(line)
        self.events.append(event)
        return event

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = DEADLINE
                       ) -> dict[str, Any]:
        """Read events until one matches ``predicate``."""
        with trio.fail_after(timeout):
            while True:
                event = await self.next_event()
                if event is None:
                    raise AssertionError(f"the agent's output ended without the awaited event: {self.events}")
                if predicate(event):
                    return event

    async def finish(self, timeout: float = DEADLINE) -> int:
        """Read every remaining event and return the exit status."""
        with trio.fail_after(timeout):
            while await self.next_event() is not None:
                pass
            return await self.proc.wait()

    async def send_line(self, text: str) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(text.encode() + b"\n")

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        chunks = []
        with trio.fail_after(DEADLINE):
            while chunk := await self.proc.stderr.receive_some(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


StartAgent = Callable[..., Awaitable[AgentProcess]]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws


@pytest.fixture
async def start_agent(workspace: Path) -> AsyncIterator[StartAgent]:
    """Start ``argv`` (default: the scenario agent with ``args``) with piped stdio in the workspace;
    every process still running at the end of the test is killed."""
    procs: list[trio.Process] = []

    async def start(*args: str, argv: Sequence[str] | None = None, cwd: Path | None = None,
                    env: dict[str, str] | None = None) -> AgentProcess:
        proc = await trio.lowlevel.open_process([*(argv or SCENARIO_ARGV), *args], stdin=PIPE, stdout=PIPE,
                                                stderr=PIPE, cwd=cwd or workspace, env=env)
        procs.append(proc)
        return AgentProcess(proc)

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
        with trio.move_on_after(DEADLINE):
            await proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                await stream.aclose()


def scenario_json(scenario: dict[str, Any]) -> tuple[str, str]:
    """The ``--scenario-json`` arguments for an inline scenario."""
    return "--scenario-json", json.dumps(scenario)
