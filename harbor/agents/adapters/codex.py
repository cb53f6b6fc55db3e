"""Codex's ``codex exec --json`` output, one JSON event per line, in its two generations.

Current (thread/turn/item events)::

    {"type": "thread.started", "thread_id"}   {"type": "turn.started"}
    {"type": "item.started" | "item.updated" | "item.completed", "item": {"id", "type", ...}}
        item types: reasoning, agent_message, command_execution (command, aggregated_output,
        exit_code, status), file_change (changes: [{path, kind}], status), mcp_tool_call,
        web_search, todo_list, plan, error
    {"type": "turn.completed", "usage": {...}}   {"type": "turn.failed", "error": {"message"}}
    {"type": "error", "message"}

An intermediate release spelled ``item_type`` for ``type``, ``assistant_message`` for
``agent_message`` and ``session.created`` for ``thread.started``; both spellings are read.

Older releases printed a configuration summary object, a ``{"prompt"}`` object, then protocol
events wrapped as ``{"id", "msg": {"type": ...}}``: ``agent_reasoning``, ``agent_message``,
``exec_command_begin``/``exec_command_end``, ``patch_apply_begin``/``patch_apply_end``,
``token_count``, ``task_complete``, ``error``. Those are read too.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

from actors.events import Draft, EventKind

from .base import AdapterBase, log, make_diff_drafts, strip_ansi, text_of, unreadable

Handler = Callable[["CodexJsonAdapter", dict[str, Any]], list[Draft]]


def _usage_text(usage: Any) -> str:
    if not isinstance(usage, dict):
        return "token usage unknown"
    return (f"{usage.get('input_tokens', 0)} input tokens ({usage.get('cached_input_tokens', 0)} cached), "
            f"{usage.get('output_tokens', 0)} output tokens")


def _diff_counts(unified_diff: str) -> tuple[int, int]:
    added = removed = 0
    for line in unified_diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed


class CodexJsonAdapter(AdapterBase):
    """Codex exec JSON events → thoughts, messages, shell tool events and file edits."""

    def __init__(self, session_id: str, workspace: Any = None) -> None:
        super().__init__(session_id, workspace)
        #: legacy patch call_id → its ``changes`` map, until ``patch_apply_end``.
        self._patches: dict[str, dict[str, Any]] = {}
        #: todo_list item id → the plan text last reported, so repeats are not re-emitted.
        self._plans: dict[str, str] = {}

    def stdout_line(self, line: bytes) -> list[Draft]:
        if not line.strip():
            return []
        try:
            event = json.loads(line)
        except ValueError:
            return [log(strip_ansi(text_of(line)))]
        if not isinstance(event, dict):
            return [unreadable(line, "unexpected codex output")]
        try:
            msg = event.get("msg")
            if isinstance(msg, dict):
                handler = self._LEGACY.get(msg.get("type"))  # type: ignore[arg-type]
                if handler is None:
                    return [log(f"codex event {msg.get('type')!r}", "debug")]
                return handler(self, msg)
            kind = event.get("type")
            if kind is None:
                return self._preamble(event)
            handler = self._EVENTS.get(kind)
            if handler is None:
                return [unreadable(line, "unknown codex event", "debug")]
            return handler(self, event)
        except Exception:  # a known event in a shape this version does not know: quote it
            return [unreadable(line, "unreadable codex event")]

    # -- current format ------------------------------------------------------------------------

    def _thread_started(self, event: dict[str, Any]) -> list[Draft]:
        return [log(f"codex thread {event.get('thread_id') or event.get('session_id')} started", "debug")]

    def _turn_completed(self, event: dict[str, Any]) -> list[Draft]:
        return [log(f"codex turn completed: {_usage_text(event.get('usage'))}", "debug")]

    def _turn_failed(self, event: dict[str, Any]) -> list[Draft]:
        error = event.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        return [log(f"codex turn failed: {message}", "error")]

    def _error(self, event: dict[str, Any]) -> list[Draft]:
        return [log(str(event.get("message", "codex error")), "error")]

    def _user_input(self, event: dict[str, Any]) -> list[Draft]:
        questions = [str(q.get("question", q)) if isinstance(q, dict) else str(q)
                     for q in event.get("questions") or ()]
        return [log("codex asks: " + " / ".join(questions), "warn")]

    def _ignore(self, event: dict[str, Any]) -> list[Draft]:
        return []

    def _item(self, event: dict[str, Any]) -> list[Draft]:
        item = event["item"]
        phase = event["type"].rpartition(".")[2]  # started | updated | completed
        kind = item.get("type") or item.get("item_type")
        item_id = str(item.get("id", ""))
        if kind == "command_execution":
            return self._command(phase, item_id, item)
        if kind == "mcp_tool_call":
            return self._mcp_call(phase, item_id, item)
        if kind == "todo_list":
            return self._plan(item_id, item)
        if phase != "completed":
            if kind == "web_search" and phase == "started":
                return [self.tool_use("web_search", {"query": item.get("query")}, item_id)]
            return []
        if kind == "reasoning":
            text = str(item.get("text", ""))
            return [Draft(EventKind.THOUGHT, {"thought": text})] if text.strip() else []
        if kind in ("agent_message", "assistant_message", "plan"):
            return [Draft(EventKind.MESSAGE, {"message": str(item.get("text", "")), "role": "assistant"})]
        if kind == "file_change":
            return self._file_change(item)
        if kind == "web_search":
            drafts = [] if item_id in self._open_tools else [
                self.tool_use("web_search", {"query": item.get("query")}, item_id)]
            return [*drafts, self.tool_result(item_id, str(item.get("query", "")), True)]
        if kind == "error":
            return [log(str(item.get("message", "codex error")), "error")]
        return [log(f"codex item {kind!r}", "debug")]

    def _command(self, phase: str, item_id: str, item: dict[str, Any]) -> list[Draft]:
        args = {"command": item.get("command")}
        if phase == "started":
            return [self.tool_use("shell", args, item_id)]
        if phase != "completed":
            return []
        drafts = [] if item_id in self._open_tools else [self.tool_use("shell", args, item_id)]
        status, exit_code = item.get("status"), item.get("exit_code")
        ok = status not in ("failed", "declined") and exit_code in (0, None)
        output = str(item.get("aggregated_output") or ("command declined" if status == "declined" else ""))
        drafts.append(self.tool_result(item_id, output, ok, exit_code=exit_code))
        return drafts

    def _mcp_call(self, phase: str, item_id: str, item: dict[str, Any]) -> list[Draft]:
        name = f"{item.get('server', 'mcp')}.{item.get('tool', 'tool')}"
        if phase == "started":
            return [self.tool_use(name, item.get("arguments") or {}, item_id)]
        if phase != "completed":
            return []
        args = item.get("arguments") or {}
        drafts = [] if item_id in self._open_tools else [self.tool_use(name, args, item_id)]
        result, error = item.get("result"), item.get("error")
        if isinstance(error, dict):
            output = str(error.get("message", ""))
        elif isinstance(result, dict):
            output = "\n".join(str(c.get("text", c)) if isinstance(c, dict) else str(c)
                               for c in result.get("content") or ())
        else:
            output = ""
        drafts.append(self.tool_result(item_id, output, item.get("status") != "failed" and error is None))
        return drafts

    def _plan(self, item_id: str, item: dict[str, Any]) -> list[Draft]:
        lines = [f"[{'x' if t.get('completed') else ' '}] {t.get('text', '')}"
                 for t in item.get("items") or () if isinstance(t, dict)]
        text = "Plan:\n" + "\n".join(lines)
        if self._plans.get(item_id) == text:
            return []
        self._plans[item_id] = text
        return [log(text)]

    def _file_change(self, item: dict[str, Any]) -> list[Draft]:
        changes = [c for c in item.get("changes") or () if isinstance(c, dict)]
        if item.get("status") == "failed":
            paths = ", ".join(self.relative(str(c.get("path", "?"))) for c in changes)
            return [log(f"codex could not apply a patch to {paths}", "error")]
        # This format reports no line counts; the daemon's diff of the workspace has them.
        return [self.file_edit(self.relative(str(c.get("path", "?"))), 0, 0,
                               f"{c.get('kind', 'update')} (codex patch)") for c in changes]

    # -- legacy format ---------------------------------------------------------------------------

    def _preamble(self, event: dict[str, Any]) -> list[Draft]:
        if set(event) == {"prompt"}:
            return []
        self.add_root(event.get("workdir"))
        summary = ", ".join(f"{k}: {v}" for k, v in event.items() if isinstance(v, (str, int, float, bool)))
        return [log(f"codex configuration: {summary}", "debug")]

    def _legacy_text(self, msg: dict[str, Any]) -> list[Draft]:
        if msg["type"] == "agent_reasoning":
            text = str(msg.get("text", ""))
            return [Draft(EventKind.THOUGHT, {"thought": text})] if text.strip() else []
        return [Draft(EventKind.MESSAGE, {"message": str(msg.get("message", "")), "role": "assistant"})]

    def _exec_begin(self, msg: dict[str, Any]) -> list[Draft]:
        command = msg.get("command")
        if isinstance(command, list):
            command = shlex.join(str(c) for c in command)
        call_id = str(msg.get("call_id", ""))
        return [self.tool_use("shell", {"command": command, "cwd": msg.get("cwd")}, call_id)]

    def _exec_end(self, msg: dict[str, Any]) -> list[Draft]:
        output = msg.get("aggregated_output")
        if not isinstance(output, str) or not output:
            output = "".join(s for s in (msg.get("stdout"), msg.get("stderr")) if isinstance(s, str))
        exit_code = msg.get("exit_code")
        return [self.tool_result(str(msg.get("call_id", "")), output, exit_code == 0, exit_code=exit_code)]

    def _patch_begin(self, msg: dict[str, Any]) -> list[Draft]:
        call_id = str(msg.get("call_id", ""))
        raw = msg.get("changes")
        changes: dict[str, Any] = raw if isinstance(raw, dict) else {}
        self._patches[call_id] = changes
        files = [self.relative(str(p)) for p in changes]
        return [self.tool_use("apply_patch", {"files": files}, call_id)]

    def _patch_end(self, msg: dict[str, Any]) -> list[Draft]:
        call_id = str(msg.get("call_id", ""))
        ok = bool(msg.get("success"))
        output = "".join(s for s in (msg.get("stdout"), msg.get("stderr")) if isinstance(s, str))
        drafts = [self.tool_result(call_id, output, ok)]
        changes = self._patches.pop(call_id, {})
        if ok:
            for raw_path, change in changes.items():
                drafts.extend(self._legacy_change(self.relative(str(raw_path)), change))
        return drafts

    def _legacy_change(self, path: str, change: Any) -> list[Draft]:
        if not isinstance(change, dict):
            return [self.file_edit(path, 0, 0, "update (codex patch)")]
        kind = change.get("type") or next(iter(change), "update")
        inner = change.get(kind)
        body: dict[str, Any] = inner if isinstance(inner, dict) else change
        if kind == "add":
            content = str(body.get("content", ""))
            return [self.file_edit(path, len(content.splitlines()), 0, "add (codex patch)"),
                    *make_diff_drafts(path, "", content, self.diff_url(path))]
        if kind == "delete":
            deleted = body.get("content")
            removed = len(deleted.splitlines()) if isinstance(deleted, str) else 0
            return [self.file_edit(path, 0, removed, "delete (codex patch)")]
        added, removed = _diff_counts(str(body.get("unified_diff", "")))
        moved = body.get("move_path")
        desc = "update (codex patch)" + (f", moved to {self.relative(str(moved))}" if moved else "")
        return [self.file_edit(path, added, removed, desc)]

    def _legacy_log(self, msg: dict[str, Any]) -> list[Draft]:
        kind = msg["type"]
        if kind in ("error", "stream_error"):
            return [log(str(msg.get("message", "codex error")), "error")]
        if kind == "token_count":
            usage = msg.get("info", msg)
            usage = usage.get("total_token_usage", usage) if isinstance(usage, dict) else usage
            return [log(f"codex token usage: {_usage_text(usage)}", "debug")]
        if kind == "session_configured":
            sid, model = msg.get("session_id", "?"), msg.get("model", "?")
            return [log(f"codex session {sid} configured: model {model}", "debug")]
        if kind == "task_complete":
            return [log("codex task complete", "debug")]
        return [log(str(msg.get("message", kind)), "debug")]

    _EVENTS: dict[str, Handler] = {
        "thread.started": _thread_started,
        "session.created": _thread_started,
        "turn.started": _ignore,
        "turn.completed": _turn_completed,
        "turn.failed": _turn_failed,
        "error": _error,
        "item.started": _item,
        "item.updated": _item,
        "item.completed": _item,
        "item.plan.delta": _ignore,
        "request_user_input": _user_input,
    }

    _LEGACY: dict[str, Handler] = {
        "agent_reasoning": _legacy_text,
        "agent_message": _legacy_text,
        "exec_command_begin": _exec_begin,
        "exec_command_end": _exec_end,
        "patch_apply_begin": _patch_begin,
        "patch_apply_end": _patch_end,
        "error": _legacy_log,
        "stream_error": _legacy_log,
        "token_count": _legacy_log,
        "session_configured": _legacy_log,
        "task_complete": _legacy_log,
        "background_event": _legacy_log,
        **dict.fromkeys(("task_started", "agent_reasoning_delta", "agent_message_delta",
                         "agent_reasoning_raw_content", "agent_reasoning_raw_content_delta",
                         "agent_reasoning_section_break", "exec_command_output_delta", "turn_diff",
                         "user_message"), _ignore),
    }
