"""Running the real daemon for tests: a child process on a free loopback port, a temporary data dir.

Nothing here is mocked: the daemon is started exactly as a user starts it (``ah agent
access-point --port 0``) and reached over real HTTP.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


class DaemonProcess:
    """``ah agent access-point`` as a child process."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None,
                 command: str = "agent access-point") -> None:
        self.data_dir = data_dir
        self.extra = list(extra)
        self.env = {**os.environ, **(env or {})}
        self.env.pop("NOTIFY_SOCKET", None) if env is None or "NOTIFY_SOCKET" not in env else None
        self.command = command.split()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.stderr_path = data_dir.parent / f"{data_dir.name}-daemon.log"

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "harbor.cli", *self.command, "--port", "0", "--data-dir", str(self.data_dir),
                *self.extra]
        self._stderr = self.stderr_path.open("ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._stderr, env=self.env, cwd=REPO)
        self.url = self._read_url(timeout)
        return self

    def _read_url(self, timeout: float) -> str:
        assert self.proc is not None
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            line += chunk
            if b"\n" in line:
                first = line.split(b"\n", 1)[0].decode()
                if first.startswith("listening on "):
                    return first.removeprefix("listening on ").strip()
                raise RuntimeError(f"unexpected first line {first!r}; log:\n{self.log()}")
        raise RuntimeError(f"daemon did not report its address in {timeout}s; log:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-8000:]
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, float]:
        """Signal the daemon and wait; returns (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            raise
        finally:
            self._stderr.close()
        return code, time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the daemon's state is concerned."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self._stderr.close()

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=httpx.Timeout(10, read=30), **kwargs)

    def aclient(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(10, read=30), **kwargs)


def scenario_task(scenario: Any = "demo", *, speed: float = 50, prompt: str = "test", count: int = 1,
                  **extra: Any) -> dict[str, Any]:
    """A ``POST /tasks`` body for the built-in scenario agent."""
    return {"prompt": prompt, "agents": [{"type": "scenario", "count": count,
                                          "settings": {"scenario": scenario, "speed": speed}}], **extra}


def command_task(argv: list[str], *, count: int = 1, **extra: Any) -> dict[str, Any]:
    return {"prompt": "run", "agents": [{"type": "command", "count": count, "settings": {"command": argv}}],
            **extra}


def read_sse(response: httpx.Response) -> Any:
    """Yield (id, event, data) from an httpx streaming response, one per SSE frame."""
    ident, name, data = None, None, []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield ident, name, json.loads("\n".join(data))
            ident, name, data = None, None, []
        elif line.startswith("id:"):
            ident = int(line[3:].strip())
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def wait_status(client: httpx.Client, session_id: str, wanted: set[str] | str, timeout: float = 20.0
                ) -> dict[str, Any]:
    """Follow the session's SSE stream until its status is one of ``wanted`` (no polling sleeps)."""
    wanted = {wanted} if isinstance(wanted, str) else wanted
    deadline = time.monotonic() + timeout
    current = client.get(f"/api/v1/sessions/{session_id}").json()
    if current["status"] in wanted:
        return current
    with client.stream("GET", f"/api/v1/sessions/{session_id}/events",
                       headers={"Accept": "text/event-stream"}, timeout=httpx.Timeout(10, read=timeout)) as r:
        for _, name, data in read_sse(r):
            if name == "status" and data.get("status") in wanted:
                return client.get(f"/api/v1/sessions/{session_id}").json()
            if time.monotonic() > deadline:
                break
    current = client.get(f"/api/v1/sessions/{session_id}").json()
    if current["status"] in wanted:
        return current
    raise AssertionError(f"session {session_id} is {current['status']}, not {wanted}")


class FeedThread:
    """The dashboard feed (``GET /api/v1/events``) read in a background thread; tests wait on what it
    has delivered.

    Attributes:
        items: the feed's objects, in arrival order.
        arrived: each item's arrival time (``time.perf_counter``), for benchmarks.
    """

    def __init__(self, daemon: DaemonProcess) -> None:
        self.items: list[dict[str, Any]] = []
        self.arrived: list[float] = []
        self._changed = threading.Condition()
        self._client = httpx.Client(base_url=daemon.url, timeout=httpx.Timeout(10, read=None))
        self._response = self._client.send(self._client.build_request("GET", "/api/v1/events"), stream=True)
        assert self._response.status_code == 200
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for _, _, data in read_sse(self._response):
                with self._changed:
                    self.items.append(data)
                    self.arrived.append(time.perf_counter())
                    self._changed.notify_all()
        except httpx.HTTPError:
            pass  # closed by close()

    def statuses(self, session_id: str) -> list[str]:
        """The statuses the feed announced for ``session_id``, in order."""
        return [i["status"] for i in self.items if i.get("sessionId") == session_id and i["type"] == "status"]

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Block until ``predicate()`` holds (checked as items arrive) or fail after ``timeout`` s."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise AssertionError(f"the feed never showed {what}: {self.items}")

    def when(self, session_id: str, statuses: set[str] | frozenset[str], timeout: float = 60.0) -> float:
        """Arrival time of the first status of ``session_id`` that is one of ``statuses``."""
        def found() -> float | None:
            return next((t for t, i in zip(self.arrived, self.items, strict=True)
                         if i.get("sessionId") == session_id and i["type"] == "status"
                         and i.get("status") in statuses), None)

        self.wait(lambda: found() is not None, f"{session_id} reaching {sorted(statuses)}", timeout)
        with self._changed:
            return found()  # type: ignore[return-value]

    def close(self) -> None:
        self._response.close()
        self._client.close()
        self._thread.join(5)
