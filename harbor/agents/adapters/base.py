"""What every output adapter shares: the :class:`OutputAdapter` protocol, log drafts, tool tracking
and the ``diff`` truncation rule.

An adapter turns an agent's output lines into :class:`~actors.events.Draft` events. It runs on the
hot event path, once per line, so it parses with plain :func:`json.loads` and builds dicts directly.
It never raises on bad input: a line it cannot read becomes a ``log`` event.
"""

from __future__ import annotations

import os
import re
from difflib import SequenceMatcher
from pathlib import PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote

from actors.events import Draft, EventKind

#: A diff event carries the whole texts up to these sizes (api-contract.md, "Events").
DIFF_MAX_BYTES = 64 * 1024
DIFF_MAX_LINES = 2000
#: Lines kept at each end of each side of a truncated diff.
DIFF_EDGE_LINES = 100
#: Characters kept in each head/tail, so one enormous line cannot defeat the truncation.
DIFF_EDGE_CHARS = 16 * 1024
#: Longest raw line quoted back in a ``log`` event about output that could not be read.
RAW_QUOTE_CHARS = 2000
#: Above this many lines, changed-line counts are plain line counts (a matcher is quadratic).
_COUNT_MATCH_MAX_LINES = 5000

_ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


class OutputAdapter(Protocol):
    """Turns one agent's output lines into event drafts.

    The actor owns one adapter per agent process and calls it from one task, so an adapter may
    keep state (tool ids seen, the workspace it learnt) without locking. None of these methods is
    a checkpoint, and none raises on malformed input.
    """

    def stdout_line(self, line: bytes) -> list[Draft]:
        """Drafts for one stdout line (without its line terminator, or with it: both work)."""
        ...

    def stderr_line(self, line: bytes) -> list[Draft]:
        """Drafts for one stderr line; by default a ``log`` at level ``warn``."""
        ...

    def finish(self) -> list[Draft]:
        """Drafts owed at end of output, e.g. a failed ``tool_result`` for a tool that never ended."""
        ...

    @property
    def idle(self) -> bool:
        """True when the agent has finished its work and only waits for more input on stdin.

        Claude Code in stream-json input mode reaches this after each ``result`` message and exits
        only once its stdin is closed: the actor closes stdin when the adapter is idle and no
        prompt is waiting to be delivered. Every other adapter here is never idle.
        """
        ...


def text_of(line: bytes) -> str:
    """Decode an output line leniently and drop its line terminator."""
    return line.decode("utf-8", "replace").rstrip("\r\n")


def log(message: str, level: str = "info", **extra: Any) -> Draft:
    """A ``log`` draft in the contract's shape."""
    return Draft(EventKind.LOG, {"level": level, "message": message, "tool_execution_id": None, **extra})


def unreadable(line: bytes, why: str, level: str = "warn") -> Draft:
    """A ``log`` draft quoting a line the adapter could not interpret."""
    raw = text_of(line)
    if len(raw) > RAW_QUOTE_CHARS:
        raw = raw[:RAW_QUOTE_CHARS] + "…"
    return log(f"{why}: {raw}", level)


def strip_ansi(text: str) -> str:
    """Remove terminal escape sequences (colours, cursor moves) from a line of text."""
    return _ANSI_ESCAPE.sub("", text) if "\x1b" in text else text


def count_changed_lines(old: str, new: str) -> tuple[int, int]:
    """``(lines_added, lines_removed)`` turning ``old`` into ``new``, line by line."""
    a, b = old.splitlines(), new.splitlines()
    if len(a) + len(b) > _COUNT_MATCH_MAX_LINES:
        return len(b), len(a)
    added = removed = 0
    for op, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op != "equal":
            removed += i2 - i1
            added += j2 - j1
    return added, removed


def _head(lines: list[str]) -> str:
    return "".join(lines[:DIFF_EDGE_LINES])[:DIFF_EDGE_CHARS]


def _tail(lines: list[str]) -> str:
    # The tail starts after the head so a short side is never shown twice.
    return "".join(lines[max(DIFF_EDGE_LINES, len(lines) - DIFF_EDGE_LINES) :])[-DIFF_EDGE_CHARS:]


def make_diff_drafts(path: str, old_text: str, new_text: str, full_diff_url: str) -> list[Draft]:
    """The ``diff`` event(s) for one file going from ``old_text`` to ``new_text``.

    Small changes carry both texts whole: ``{"path", "oldText", "newText", "truncated": False}``.
    When the two texts together exceed 64 KiB (UTF-8) or 2,000 lines, the event carries instead
    ``truncated: True``, the first and last 100 lines of each side (``oldHead``, ``oldTail``,
    ``newHead``, ``newTail``; each also capped at 16 KiB of characters, and a side of at most 100
    lines has an empty tail) and ``fullDiffUrl``, where the client fetches the whole diff.

    Args:
        path: the file, relative to the workspace root.
        old_text: the file (or the replaced fragment) before.
        new_text: the file (or the replacing fragment) after.
        full_diff_url: the API URL of the complete diff of ``path``.

    Returns:
        A list with one ``diff`` draft.
    """
    old_lines = old_text.splitlines(keepends=True)
    new_lines = new_text.splitlines(keepends=True)
    too_long = len(old_lines) + len(new_lines) > DIFF_MAX_LINES
    # Character count bounds the UTF-8 size from below; encode only when it could matter.
    too_big = len(old_text) + len(new_text) > DIFF_MAX_BYTES or (
        len(old_text) + len(new_text) > DIFF_MAX_BYTES // 4
        and len(old_text.encode("utf-8", "surrogatepass")) + len(new_text.encode("utf-8", "surrogatepass"))
        > DIFF_MAX_BYTES
    )
    if not (too_long or too_big):
        data: dict[str, Any] = {"path": path, "oldText": old_text, "newText": new_text, "truncated": False}
    else:
        data = {
            "path": path,
            "truncated": True,
            "oldHead": _head(old_lines),
            "oldTail": _tail(old_lines),
            "newHead": _head(new_lines),
            "newTail": _tail(new_lines),
            "fullDiffUrl": full_diff_url,
        }
    return [Draft(EventKind.DIFF, data)]


class AdapterBase:
    """Shared behaviour: stderr as ``warn`` logs, workspace-relative paths, unfinished tools.

    Args:
        session_id: the session the output belongs to (for ``fullDiffUrl``).
        workspace: the agent's working directory, used to make absolute file paths relative.
            The directory an agent reports itself (Claude's ``init`` ``cwd``, Codex's ``workdir``)
            is used as well: it may spell the same place differently (a resolved symlink).
    """

    def __init__(self, session_id: str, workspace: str | os.PathLike[str] | None = None) -> None:
        self.session_id = session_id
        self._roots: list[str] = [os.fspath(workspace)] if workspace is not None else []
        #: tool_execution_id → tool_name of tools started and not yet finished.
        self._open_tools: dict[str, str] = {}

    @property
    def idle(self) -> bool:
        return False

    def stdout_line(self, line: bytes) -> list[Draft]:  # pragma: no cover - overridden
        raise NotImplementedError

    def stderr_line(self, line: bytes) -> list[Draft]:
        text = strip_ansi(text_of(line))
        return [log(text, "warn")] if text.strip() else []

    def finish(self) -> list[Draft]:
        drafts = [
            Draft(EventKind.TOOL_RESULT, {
                "tool_name": name, "tool_output": "the agent's output ended before this tool finished",
                "tool_execution_id": tool_id, "status": "failed", "tool_status": "error"})
            for tool_id, name in self._open_tools.items()
        ]
        self._open_tools.clear()
        return drafts

    def add_root(self, directory: Any) -> None:
        """Also treat ``directory`` (as the agent reports its working directory) as the workspace."""
        if isinstance(directory, str) and os.path.isabs(directory) and directory not in self._roots:
            self._roots.append(directory)

    def relative(self, path: str) -> str:
        """``path`` relative to the workspace when it lies inside it, else unchanged."""
        if not os.path.isabs(path):
            return path
        for root in self._roots:
            rel = os.path.relpath(path, root)
            if rel != ".." and not rel.startswith(".." + os.sep):
                return PurePosixPath(*rel.split(os.sep)).as_posix()
        return path

    def diff_url(self, path: str) -> str:
        """The API URL of the full diff of a workspace-relative ``path``."""
        return f"/api/v1/sessions/{self.session_id}/diff/{quote(path, safe='/')}"

    def tool_use(self, name: str, args: Any, tool_id: str) -> Draft:
        self._open_tools[tool_id] = name
        return Draft(EventKind.TOOL_USE, {"tool_name": name, "tool_args": args, "tool_execution_id": tool_id,
                                          "status": "started"})

    def tool_result(self, tool_id: str, output: str, ok: bool, name: str | None = None,
                    **extra: Any) -> Draft:
        started_as = self._open_tools.pop(tool_id, None)
        return Draft(EventKind.TOOL_RESULT, {
            "tool_name": name or started_as or "unknown", "tool_output": output, "tool_execution_id": tool_id,
            "status": "completed" if ok else "failed", "tool_status": "success" if ok else "error", **extra})

    def file_edit(self, path: str, added: int, removed: int, description: str) -> Draft:
        return Draft(EventKind.FILE_EDIT, {"file_path": path, "lines_added": added, "lines_removed": removed,
                                           "description": description})
