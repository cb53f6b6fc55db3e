"""How sessions and events look in a terminal: status colours, one line per event, tables, sizes, ages.

Everything here is pure (data in, Rich renderables out), so it is tested by rendering to a recorded
console.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

#: Rich style of each session status.
STATUS_STYLE: dict[str, str] = {
    "queued": "dim",
    "provisioning": "cyan",
    "running": "bold green",
    "pausing": "yellow",
    "paused": "bold yellow",
    "resuming": "cyan",
    "stopping": "magenta",
    "stopped": "magenta",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "magenta",
}

#: The order statuses are listed in (headers, counts).
STATUS_ORDER = ("running", "provisioning", "queued", "pausing", "paused", "resuming", "stopping",
                "completed", "failed", "stopped", "cancelled")

#: ``ah session follow`` exit code per final status.
OUTCOME_EXIT = {"completed": 0, "failed": 1, "stopped": 2, "cancelled": 2}

_LEVEL_STYLE = {"debug": "dim", "info": "", "warn": "yellow", "warning": "yellow", "error": "bold red"}


def status_text(status: str | None) -> Text:
    """The status word in its colour."""
    status = status or "?"
    return Text(status, style=STATUS_STYLE.get(status, ""))


def outcome_exit_code(status: str | None) -> int:
    """0 completed, 1 failed, 2 stopped or cancelled (1 for anything unexpected)."""
    return OUTCOME_EXIT.get(status or "", 1)


def parse_ts(value: str | None) -> float | None:
    """Unix seconds from the contract's ISO-8601 UTC strings; ``None`` for ``None`` or garbage."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def human_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h14m``, ``3d04h``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def human_bytes(n: int | float | None) -> str:
    """``512 B``, ``12.3 MiB``; ``—`` when unknown."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # unreachable; keeps type checkers content


def short(text: str | None, width: int) -> str:
    """One line of at most ``width`` characters (an ellipsis marks a cut)."""
    line = " ".join((text or "").split())
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def repo_label(repo: dict[str, Any] | None) -> str:
    """The repository a session works on, briefly (``—`` for an empty workspace)."""
    if not repo or not repo.get("url"):
        return "—"
    url = str(repo["url"]).rstrip("/").removesuffix(".git")
    name = url.rsplit("/", 1)[-1].rsplit(":", 1)[-1] or url
    return f"{name}@{repo['branch']}" if repo.get("branch") else name


def _args_summary(args: Any) -> str:
    if isinstance(args, dict):
        for key in ("cmd", "command", "path", "file_path", "pattern", "query"):
            if isinstance(args.get(key), str):
                return args[key]
    return json.dumps(args, separators=(",", ":"), ensure_ascii=False) if args else ""


def event_summary(event: dict[str, Any]) -> Text | None:
    """One line saying what an event is about (no time, no session); ``None`` for nothing to show."""
    kind = event.get("type")
    if kind == "status":
        text = Text("● ") + status_text(event.get("status"))
        if event.get("reason"):
            text.append(f" ({event['reason']})", style="dim")
        return text
    if kind == "thought":
        return Text(f"… {short(event.get('thought'), 400)}", style="italic dim")
    if kind == "tool_use":
        return Text.assemble(("▶ ", "cyan"), (str(event.get("tool_name", "tool")), "bold cyan"),
                             f" {short(_args_summary(event.get('tool_args')), 300)}".rstrip())
    if kind == "tool_result":
        ok = event.get("tool_status", "success") == "success" and event.get("status") != "failed"
        text = Text.assemble(("✔ " if ok else "✘ ", "green" if ok else "red"), str(event.get("tool_name", "tool")))
        if event.get("exit_code") is not None:
            text.append(f" (exit {event['exit_code']})", style="dim" if ok else "red")
        return text
    if kind == "file_edit":
        text = Text.assemble(("✎ ", "blue"), (str(event.get("file_path", "?")), "bold"),
                             (f" +{event.get('lines_added', 0)}", "green"),
                             (f" -{event.get('lines_removed', 0)}", "red"))
        if event.get("description"):
            text.append(f"  {short(event['description'], 120)}", style="dim")
        return text
    if kind == "message":
        return Text.assemble(("» ", "bold"), short(event.get("message"), 2000))
    if kind == "log":
        return _log_line(event)
    if kind == "progress":
        return Text(f"◔ {event.get('progress', '?')}% {event.get('stage') or ''}".rstrip(), style="blue")
    if kind == "snapshot":
        label = event.get("label") or event.get("snapshotId") or ""
        return Text(f"⎘ snapshot {label} ({event.get('provider', '?')}, {event.get('trigger', '?')})", style="blue")
    if kind == "diff":
        return Text(f"± diff {event.get('path', '')}", style="blue")
    return Text(short(json.dumps(event, ensure_ascii=False), 200), style="dim") if kind else None


def _log_line(event: dict[str, Any]) -> Text:
    message = str(event.get("message", ""))
    if "last_line" in event:  # tool progress
        return Text(f"  │ {short(event['last_line'], 300)}", style="dim")
    role = event.get("role")
    if role == "assistant":
        return Text.assemble(("» ", "bold"), short(message, 2000))
    if role == "user":
        return Text.assemble(("you» ", "bold magenta"), short(message, 2000))
    level = str(event.get("level", "info"))
    style = _LEVEL_STYLE.get(level, "")
    prefix = f"{level}: " if level in ("warn", "warning", "error") else ""
    return Text(f"{prefix}{short(message, 2000)}", style=style)


def event_line(event: dict[str, Any], *, prefix: str = "") -> Text | None:
    """An event as ``HH:MM:SS <summary>``, optionally after a session prefix."""
    summary = event_summary(event)
    if summary is None:
        return None
    ts = parse_ts(event.get("ts"))
    clock = datetime.fromtimestamp(ts).strftime("%H:%M:%S") if ts is not None else "--:--:--"
    head = Text(f"{clock} ", style="dim")
    if prefix:
        head.append(f"{prefix} ", style="bold blue")
    return head + summary


def sessions_table(items: list[dict[str, Any]], *, now: float) -> Table:
    """``ah session list``: one row per session."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("ID", "STATUS", "AGENT", "REPO", "AGE", "CHANGES", "PROMPT"):
        table.add_column(name, no_wrap=name != "PROMPT", overflow="ellipsis")
    for s in items:
        created = parse_ts(s.get("createdAt"))
        changes = s.get("changes") or {}
        table.add_row(s["id"], status_text(s.get("status")), (s.get("agent") or {}).get("type", "?"),
                      repo_label(s.get("repo")), human_duration(now - created if created else None),
                      Text.assemble((f"+{changes.get('lines_added', 0)}", "green"), " ",
                                    (f"-{changes.get('lines_removed', 0)}", "red")),
                      short(s.get("prompt"), 60))
    return table


def session_detail(s: dict[str, Any], *, now: float) -> RenderableType:
    """``ah session show``: the fields a person looks for, then the latest events."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    created, started, ended = (parse_ts(s.get(k)) for k in ("createdAt", "startedAt", "endedAt"))
    agent = s.get("agent") or {}
    changes = s.get("changes") or {}
    rows: list[tuple[str, Any]] = [
        ("id", s["id"]), ("status", status_text(s.get("status"))),
        ("agent", f"{agent.get('type', '?')} {agent.get('version', '')}".strip()),
        ("repository", repo_label(s.get("repo"))),
        ("created", f"{s.get('createdAt')} ({human_duration(now - created if created else None)} ago)"),
        ("ran for", human_duration((ended or now) - started) if started else "—"),
        ("changes", f"{changes.get('files_changed', 0)} files, +{changes.get('lines_added', 0)} "
                    f"-{changes.get('lines_removed', 0)}"),
    ]
    if (s.get("workspace") or {}).get("path"):
        rows.append(("workspace", s["workspace"]["path"]))
    if s.get("exitCode") is not None:
        rows.append(("exit code", str(s["exitCode"])))
    if s.get("error"):
        rows.append(("error", Text(str(s["error"]), style="red")))
    stats = s.get("stats")
    if stats and s.get("status") not in OUTCOME_EXIT:
        rows.append(("resources", f"CPU {stats.get('cpuPercent', 0)}%, RSS {human_bytes(stats.get('rssBytes'))}, "
                                  f"{stats.get('processes', 0)} processes, {s.get('eventCount', 0)} events"))
    rows.append(("prompt", short(s.get("prompt"), 500)))
    for name, value in rows:
        grid.add_row(name, value)
    recent = [line for e in s.get("recent_events") or [] if (line := event_line(e)) is not None]
    if not recent:
        return grid
    return Group(grid, Text("recent events:", style="bold"), *recent)


def diff_text(diff: str) -> Text:
    """A unified diff with added lines green, removed red, hunk headers cyan."""
    out = Text()
    for line in diff.splitlines():
        if line.startswith(("+++", "---", "diff ", "index ")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        else:
            style = ""
        out.append(line + "\n", style=style)
    return out
