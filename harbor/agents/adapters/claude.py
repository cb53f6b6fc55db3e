"""Claude Code's ``--output-format stream-json --verbose`` output, one JSON message per line.

The messages it reads (unknown ones become ``debug`` logs; partial ``stream_event`` deltas are
dropped, the complete message follows them)::

    {"type": "system", "subtype": "init", "cwd", "session_id", "model", "tools", ...}
    {"type": "assistant", "message": {"content": [{"type": "text" | "thinking" | "tool_use", ...}]}}
    {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id", "content",
     "is_error"}]}, "tool_use_result": {...}}
    {"type": "result", "subtype": "success" | "error_...", "is_error", "duration_ms", "num_turns",
     "total_cost_usd", "result"}

An ``Edit``, ``MultiEdit`` or ``Write`` that succeeds also yields a ``file_edit`` and, where the old
and new text are known, ``diff`` events. They are emitted with the tool's result, not its start,
so a refused or failed edit is never reported as a change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from actors.events import Draft, EventKind

from .base import AdapterBase, count_changed_lines, log, make_diff_drafts, strip_ansi, text_of, unreadable

#: Tools whose input describes a change to one file.
EDIT_TOOLS = frozenset({"Edit", "MultiEdit", "Write"})


def result_text(content: Any) -> str:
    """The text of a ``tool_result`` block's ``content`` (a string or a list of blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                if block.get("type") == "text":
                    parts.append(str(block.get("text", "")))
                else:
                    parts.append(f"[{block.get('type', 'content')}]")
        return "\n".join(parts)
    return json.dumps(content, ensure_ascii=False)


def _apply_edits(text: str, edits: list[tuple[str, str, bool]]) -> str | None:
    for old, new, replace_all in edits:
        if old not in text:
            return None
        text = text.replace(old, new) if replace_all else text.replace(old, new, 1)
    return text


class ClaudeStreamJsonAdapter(AdapterBase):
    """Claude Code's stream-json messages → thoughts, messages, tool events, file edits and diffs."""

    def __init__(self, session_id: str, workspace: Any = None) -> None:
        super().__init__(session_id, workspace)
        #: tool_use id → (tool name, input) of edit tools awaiting their result.
        self._edits: dict[str, tuple[str, dict[str, Any]]] = {}
        self._idle = False

    @property
    def idle(self) -> bool:
        return self._idle

    def stdout_line(self, line: bytes) -> list[Draft]:
        if not line.strip():
            return []
        try:
            msg = json.loads(line)
        except ValueError:
            return [log(strip_ansi(text_of(line)))]
        if not isinstance(msg, dict):
            return [unreadable(line, "unexpected claude-code output")]
        kind = msg.get("type")
        handler = self._HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return [unreadable(line, "unknown claude-code message", "debug")]
        try:
            return handler(self, msg)
        except Exception:  # a known message in a shape this version does not know: quote it
            return [unreadable(line, "unreadable claude-code message")]

    def _system(self, msg: dict[str, Any]) -> list[Draft]:
        subtype = msg.get("subtype")
        if subtype != "init":
            return [log(f"claude-code: {subtype or 'system message'}", "debug")]
        self.add_root(msg.get("cwd"))
        tools = msg.get("tools")
        return [log(
            f"claude-code {msg.get('claude_code_version', '')} session {msg.get('session_id', '?')} started: "
            f"model {msg.get('model', '?')}, permission mode {msg.get('permissionMode', '?')}, "
            f"{len(tools) if isinstance(tools, list) else 0} tools", "debug")]

    def _assistant(self, msg: dict[str, Any]) -> list[Draft]:
        self._idle = False
        content = msg["message"].get("content")
        if isinstance(content, str):
            return [Draft(EventKind.MESSAGE, {"message": content, "role": "assistant"})] if content else []
        drafts: list[Draft] = []
        for block in content or ():
            kind = block.get("type")
            if kind == "text":
                text = block.get("text") or ""
                if text.strip():
                    drafts.append(Draft(EventKind.MESSAGE, {"message": text, "role": "assistant"}))
            elif kind == "thinking":
                thought = block.get("thinking") or ""
                if thought.strip():
                    drafts.append(Draft(EventKind.THOUGHT, {"thought": thought}))
            elif kind in ("tool_use", "server_tool_use"):
                tool_id, name, args = str(block["id"]), str(block.get("name", "unknown")), block.get("input")
                drafts.append(self.tool_use(name, args if args is not None else {}, tool_id))
                if name in EDIT_TOOLS and isinstance(args, dict):
                    self._edits[tool_id] = (name, args)
            elif kind != "redacted_thinking":
                drafts.append(log(f"claude-code content block {kind!r}", "debug"))
        return drafts

    def _user(self, msg: dict[str, Any]) -> list[Draft]:
        self._idle = False
        content = msg["message"].get("content")
        if isinstance(content, str):
            return [log(content, role="user")] if content.strip() else []
        drafts: list[Draft] = []
        for block in content or ():
            kind = block.get("type")
            if kind == "tool_result":
                tool_id = str(block.get("tool_use_id", ""))
                ok = not block.get("is_error")
                drafts.append(self.tool_result(tool_id, result_text(block.get("content")), ok))
                edit = self._edits.pop(tool_id, None)
                if ok and edit is not None:
                    drafts.extend(self._edit_drafts(*edit, msg.get("tool_use_result")))
            elif kind == "text" and str(block.get("text", "")).strip():
                drafts.append(log(str(block["text"]), role="user"))
        return drafts

    def _result(self, msg: dict[str, Any]) -> list[Draft]:
        self._idle = True
        subtype = msg.get("subtype", "success")
        failed = bool(msg.get("is_error")) or subtype != "success"
        parts = [f"claude-code finished ({subtype})"]
        duration = msg.get("duration_ms")
        if isinstance(duration, (int, float)):
            parts.append(f"in {duration / 1000:.1f} s")
        turns = msg.get("num_turns")
        if isinstance(turns, int):
            parts.append(f"{turns} turns")
        cost = msg.get("total_cost_usd", msg.get("cost_usd"))
        if isinstance(cost, (int, float)):
            parts.append(f"cost ${cost:.4f}")
        text = ", ".join(parts)
        if failed:
            detail = msg.get("result") or "; ".join(str(e) for e in msg.get("errors") or ())
            if detail:
                text += f": {detail}"
        return [log(text, "error" if failed else "info")]

    def _ignore(self, msg: dict[str, Any]) -> list[Draft]:
        return []

    def _edit_drafts(self, name: str, args: dict[str, Any], extra: Any) -> list[Draft]:
        abs_path = args.get("file_path")
        if not isinstance(abs_path, str):
            return []
        path = self.relative(abs_path)
        url = self.diff_url(path)
        # ``tool_use_result`` (newer versions) knows the file before the change, when it is ours.
        known = isinstance(extra, dict) and extra.get("filePath") == abs_path
        original = extra.get("originalFile") if known else None
        if name == "Write":
            content = str(args.get("content", ""))
            old = original if isinstance(original, str) else ("" if known and extra.get("type") == "create"
                                                              else None)
            if old is None:
                return [self.file_edit(path, len(content.splitlines()), 0, "Write: file written")]
            added, removed = count_changed_lines(old, content)
            desc = "Write: file created" if old == "" else "Write: file replaced"
            return [self.file_edit(path, added, removed, desc), *make_diff_drafts(path, old, content, url)]
        raw = args.get("edits") if name == "MultiEdit" else [args]
        edits = [(str(e.get("old_string", "")), str(e.get("new_string", "")), bool(e.get("replace_all")))
                 for e in raw or () if isinstance(e, dict)]
        desc = f"{name}: {len(edits)} edit{'s' if len(edits) != 1 else ''}"
        if isinstance(original, str) and (after := _apply_edits(original, edits)) is not None:
            added, removed = count_changed_lines(original, after)
            return [self.file_edit(path, added, removed, desc), *make_diff_drafts(path, original, after, url)]
        added = removed = 0
        diffs: list[Draft] = []
        for old, new, _ in edits:
            a, r = count_changed_lines(old, new)
            added, removed = added + a, removed + r
            diffs.extend(make_diff_drafts(path, old, new, url))
        return [self.file_edit(path, added, removed, desc), *diffs]

    _HANDLERS: dict[str, Callable[[ClaudeStreamJsonAdapter, dict[str, Any]], list[Draft]]] = {
        "system": _system,
        "assistant": _assistant,
        "user": _user,
        "result": _result,
        "stream_event": _ignore,
        "keep_alive": _ignore,
    }
