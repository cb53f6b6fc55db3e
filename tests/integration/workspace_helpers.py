"""Helpers for the workspace, timeline and path-safety tests: real git repositories, and waiting on
a session's events or the dashboard feed (never on sleeps)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.harness import read_sse

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str, raw: bool = False) -> Any:
    """Run git in ``cwd`` with no user configuration; stdout (bytes if ``raw``)."""
    out = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, check=True).stdout
    return out if raw else out.decode()


def make_repo(path: Path, files: dict[str, bytes | str]) -> str:
    """A git repository at ``path`` with ``files`` committed on ``main``; returns the commit id."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for rel, content in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    return git(path, "rev-parse", "HEAD").strip()


def follow(client: httpx.Client, session_id: str, until: Callable[[dict[str, Any]], bool], *,
           after: int = 0, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Read the session's SSE stream (events after seq ``after``) until ``until(event)``; every event seen.

    Raises:
        AssertionError: the stream ended, or ``timeout`` passed, first.
    """
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
    with client.stream("GET", f"/api/v1/sessions/{session_id}/events", headers=headers,
                       timeout=httpx.Timeout(10, read=timeout)) as r:
        assert r.status_code == 200, r.read()
        for ident, _name, data in read_sse(r):
            if ident is None:
                continue  # the opening status frame: not part of the history
            seen.append(data)
            if until(data):
                return seen
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"session {session_id}: condition not met; saw {[e['type'] for e in seen]}")


def log_says(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "log" and text in e.get("message", "")


def is_terminal(e: dict[str, Any]) -> bool:
    return e["type"] == "status" and e["status"] in {"completed", "failed", "stopped", "cancelled"}


class Feed:
    """The dashboard feed (``GET /api/v1/events``), subscribed before work starts so nothing is missed."""

    def __init__(self, client: httpx.Client, timeout: float = 60.0) -> None:
        self._cm = client.stream("GET", "/api/v1/events", headers={"Accept": "text/event-stream"},
                                 timeout=httpx.Timeout(10, read=timeout))
        self.timeout = timeout

    def __enter__(self) -> Feed:
        self._response = self._cm.__enter__()
        assert self._response.status_code == 200
        self._frames = read_sse(self._response)
        return self

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)

    def wait(self, kind: str, session_id: str) -> dict[str, Any]:
        """The next feed item of ``kind`` for ``session_id``."""
        deadline = time.monotonic() + self.timeout
        for _, _, data in self._frames:
            if data.get("type") == kind and data.get("sessionId") == session_id:
                return data
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"no {kind!r} item for {session_id} on the feed")


def create(client: httpx.Client, body: dict[str, Any]) -> str:
    r = client.post("/api/v1/tasks", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def workspace_of(client: httpx.Client, session_id: str) -> Path:
    path = client.get(f"/api/v1/sessions/{session_id}").json()["workspace"]["path"]
    assert path, "the session has no workspace yet"
    return Path(path)


def tree_of(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (``.git`` left out) and its bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            p = Path(dirpath) / name
            if name != ".git" and p.is_file() and not p.is_symlink():
                out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out
