"""Adapters for output that needs little interpretation: plain text, and the scenario agent's JSON."""

from __future__ import annotations

import json

from actors.events import Draft, EventKind

from .base import AdapterBase, log, strip_ansi, text_of, unreadable


class PlainTextAdapter(AdapterBase):
    """Any command's output: each non-blank stdout line is a ``log`` at level ``info``."""

    def stdout_line(self, line: bytes) -> list[Draft]:
        text = strip_ansi(text_of(line))
        return [log(text)] if text.strip() else []


#: The fields a scenario event must carry for its kind; ``status`` and ``snapshot`` are the
#: daemon's own and are never taken from an agent.
_REQUIRED: dict[str, str] = {
    EventKind.LOG: "message",
    EventKind.THOUGHT: "thought",
    EventKind.TOOL_USE: "tool_name",
    EventKind.TOOL_RESULT: "tool_name",
    EventKind.FILE_EDIT: "file_path",
    EventKind.DIFF: "path",
    EventKind.PROGRESS: "progress",
    EventKind.MESSAGE: "message",
}


class ScenarioAdapter(AdapterBase):
    """The scenario agent's stdout: one event per line, already in the contract's shape.

    ``{"type": "thought", "thought": "..."}`` becomes ``Draft("thought", {"thought": "..."})``.
    A line that is not a JSON object, has an unknown ``type`` or lacks its kind's main field is
    quoted in a ``log`` event instead.
    """

    def stdout_line(self, line: bytes) -> list[Draft]:
        if not line.strip():
            return []
        try:
            obj = json.loads(line)
        except ValueError:
            return [log(strip_ansi(text_of(line)))]
        if not isinstance(obj, dict):
            return [unreadable(line, "unexpected scenario output")]
        kind = obj.pop("type", None)
        required = _REQUIRED.get(kind) if isinstance(kind, str) else None
        if required is None or required not in obj:
            return [unreadable(line, "unexpected scenario event")]
        if kind == EventKind.LOG:
            obj.setdefault("level", "info")
            obj.setdefault("tool_execution_id", None)
        elif kind == EventKind.TOOL_USE:
            tool_id = obj.get("tool_execution_id")
            if isinstance(tool_id, str):
                self._open_tools[tool_id] = str(obj["tool_name"])
        elif kind == EventKind.TOOL_RESULT:
            tool_id = obj.get("tool_execution_id")
            if isinstance(tool_id, str):
                self._open_tools.pop(tool_id, None)
        return [Draft(kind, obj)]
