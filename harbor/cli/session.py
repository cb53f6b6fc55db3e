"""``ah session ...``: list, inspect, control, follow and branch the daemon's sessions."""

from __future__ import annotations

from typing import Any

import asyncclick as click
from rich.table import Table
from rich.text import Text

from harbor.cli.remote import Remote, follow_sessions, now, remote_command
from harbor.client import TERMINAL
from harbor.terminal import (
    diff_text,
    human_bytes,
    parse_ts,
    session_detail,
    sessions_table,
    status_text,
)

SESSION_ID = click.argument("session_id", metavar="SESSION_ID")


@click.group()
def session() -> None:
    """List, inspect and control sessions."""


@session.command("list")
@click.option("--status", help="Only these statuses (comma-separated: running,paused).")
@click.option("--agent", help="Only this agent type.")
@click.option("--limit", "per_page", type=click.IntRange(1, 200), default=20, show_default=True,
              help="Sessions per page.")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@remote_command
async def list_(remote: Remote, status: str | None, agent: str | None, per_page: int, page: int) -> None:
    """List sessions, newest first.

    \b
    Examples:
      ah session list
      ah session list --status running,paused --json
    """
    async with remote.client() as client:
        doc = await client.list_sessions(status=status, agent=agent, page=page, per_page=per_page)
    if remote.as_json:
        remote.print_json(doc)
        return
    if not doc["items"]:
        remote.note("no sessions")
        return
    remote.out.print(sessions_table(doc["items"], now=now()))
    total, shown = doc.get("total", len(doc["items"])), len(doc["items"])
    if total > shown:
        remote.note(f"{shown} of {total} sessions (page {page}; --page {page + 1} for more)")


@session.command("show")
@SESSION_ID
@remote_command
async def show(remote: Remote, session_id: str) -> None:
    """Show one session: status, agent, repository, changes, resources, latest events.

    Example: ah session show 01J8Z...
    """
    async with remote.client() as client:
        doc = await client.get_session(session_id)
    if remote.as_json:
        remote.print_json(doc)
    else:
        remote.out.print(session_detail(doc, now=now()))


def _said(remote: Remote, doc: dict[str, Any], what: str, session_id: str) -> None:
    if remote.as_json:
        remote.print_json(doc)
    else:
        status = doc.get("status") if what != "stop" else doc.get("sessionStatus")
        remote.out.print(Text.assemble(f"session {session_id}: ", status_text(status)))


@session.command("pause")
@SESSION_ID
@remote_command
async def pause(remote: Remote, session_id: str) -> None:
    """Pause a running session (SIGSTOP to the agent's process group).

    Example: ah session pause 01J8Z...
    """
    async with remote.client() as client:
        _said(remote, await client.pause(session_id), "pause", session_id)


@session.command("resume")
@SESSION_ID
@remote_command
async def resume(remote: Remote, session_id: str) -> None:
    """Resume a paused session (SIGCONT).

    Example: ah session resume 01J8Z...
    """
    async with remote.client() as client:
        _said(remote, await client.resume(session_id), "resume", session_id)


@session.command("stop")
@SESSION_ID
@click.option("--reason", help="Recorded with the stop.")
@click.option("--wait", "wait", is_flag=True, help="Wait until the session has ended.")
@remote_command
async def stop(remote: Remote, session_id: str, reason: str | None, wait: bool) -> None:
    """Stop a session gracefully (SIGTERM, SIGKILL after the grace period).

    Example: ah session stop 01J8Z... --reason "wrong prompt" --wait
    """
    async with remote.client() as client:
        seen = (await client.get_session(session_id)).get("eventCount", 0) if wait else 0
        answer = await client.stop(session_id, reason)
        if not wait:
            _said(remote, answer, "stop", session_id)
            return
        final = answer.get("sessionStatus")
        async for event in client.follow(session_id, after=seen):
            if event.get("type") == "status":
                final = event.get("status")
        if final not in TERMINAL:
            final = (await client.get_session(session_id)).get("status")
        _said(remote, {**answer, "sessionStatus": final}, "stop", session_id)


@session.command("kill")
@SESSION_ID
@remote_command
async def kill(remote: Remote, session_id: str) -> None:
    """Kill a session at once and delete it with its workspace (DELETE; it cannot be undone).

    Example: ah session kill 01J8Z...
    """
    async with remote.client() as client:
        await client.delete(session_id)
    if remote.as_json:
        remote.print_json({"id": session_id, "deleted": True})
    else:
        remote.out.print(f"session {session_id}: killed and deleted")


@session.command("prompt")
@SESSION_ID
@click.argument("text")
@remote_command
async def prompt(remote: Remote, session_id: str, text: str) -> None:
    """Send TEXT to the running agent, as if typed.

    Example: ah session prompt 01J8Z... "also update the README"
    """
    async with remote.client() as client:
        answer = await client.prompt(session_id, text)
    if remote.as_json:
        remote.print_json(answer)
    else:
        remote.out.print(f"session {session_id}: prompt delivered")


@session.command("logs")
@SESSION_ID
@click.option("--tail", "-n", type=click.IntRange(1, 200), default=100, show_default=True)
@remote_command
async def logs(remote: Remote, session_id: str, tail: int) -> None:
    """Print the session's last log lines (agent output and messages).

    Example: ah session logs 01J8Z... --tail 20
    """
    async with remote.client() as client:
        lines = await client.logs(session_id, tail)
    if remote.as_json:
        remote.print_json(lines)
        return
    styles = {"error": "red", "warn": "yellow", "debug": "dim"}
    for line in lines:
        ts = line.get("ts", "")
        remote.out.print(Text.assemble((f"{ts} ", "dim"), (f"{line.get('level', 'info'):5} ", "bold"),
                                       (str(line.get("message", "")), styles.get(line.get("level", ""), ""))),
                         soft_wrap=True)


@session.command("follow")
@SESSION_ID
@click.option("--after", type=click.IntRange(min=0), default=0, help="Start after this event seq.")
@remote_command
async def follow(remote: Remote, session_id: str, after: int) -> None:
    """Print the session's events as they happen, until it ends.

    Thoughts, tool calls with their output, file edits and logs, one line each (JSON Lines with
    --json). Survives a daemon restart (it resumes where it was). Exit status: 0 completed,
    1 failed, 2 stopped or cancelled.

    Example: ah session follow 01J8Z...
    """
    async with remote.client() as client:
        code = await follow_sessions(remote, client, [session_id], after=after)
    raise click.exceptions.Exit(code)


@session.command("files")
@SESSION_ID
@remote_command
async def files(remote: Remote, session_id: str) -> None:
    """List the files the session changed.

    Example: ah session files 01J8Z...
    """
    async with remote.client() as client:
        doc = await client.files(session_id)
    if remote.as_json:
        remote.print_json(doc)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("STATUS", "PATH", "+", "-", "SIZE"):
        table.add_column(name)
    for f in doc.get("items", []):
        table.add_row(f.get("status", "?"), f.get("path", "?"), Text(f"+{f.get('lines_added', 0)}", "green"),
                      Text(f"-{f.get('lines_removed', 0)}", "red"), human_bytes(f.get("size_bytes")))
    remote.out.print(table)


@session.command("diff")
@SESSION_ID
@click.argument("path", required=False)
@click.option("--context", "-U", type=click.IntRange(0, 1000), default=3, show_default=True)
@remote_command
async def diff(remote: Remote, session_id: str, path: str | None, context: int) -> None:
    """Show what the session changed: every file, or only PATH (unified diff, coloured).

    \b
    Examples:
      ah session diff 01J8Z...
      ah session diff 01J8Z... src/app.py -U 10
    """
    async with remote.client() as client:
        doc = await client.diff(session_id, path, context=context)
    if remote.as_json:
        remote.print_json(doc)
        return
    entries = doc.get("files", [doc]) if path is None else [doc]
    for entry in entries:
        text = entry.get("diff")
        if text:
            remote.out.print(diff_text(text), end="")
        else:
            remote.out.print(f"{entry.get('path')}: {entry.get('status', 'changed')} (binary or no text diff)",
                             style="dim")
    if path is None:
        remote.note(f"{len(entries)} files, +{doc.get('total_lines_added', 0)} -{doc.get('total_lines_removed', 0)}")


@session.command("snapshot")
@SESSION_ID
@click.option("--label", "-l", help="A name for the snapshot.")
@click.option("--description", "-d", help="Why it was taken.")
@remote_command
async def snapshot(remote: Remote, session_id: str, label: str | None, description: str | None) -> None:
    """Take a snapshot of the session's workspace now (branch from it later).

    Example: ah session snapshot 01J8Z... --label before-refactor
    """
    async with remote.client() as client:
        doc = await client.snapshot(session_id, label, description)
    if remote.as_json:
        remote.print_json(doc)
    else:
        remote.out.print(f"snapshot [bold]{doc.get('id')}[/] of session {session_id} "
                         f"({doc.get('provider', '?')}{', ' + label if label else ''})")


@session.command("snapshots")
@SESSION_ID
@remote_command
async def snapshots(remote: Remote, session_id: str) -> None:
    """List the session's workspace snapshots.

    Example: ah session snapshots 01J8Z...
    """
    async with remote.client() as client:
        items = await client.snapshots(session_id)
    if remote.as_json:
        remote.print_json({"items": items})
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("ID", "TIME", "LABEL", "PROVIDER", "TRIGGER"):
        table.add_column(name)
    for s in items:
        table.add_row(str(s.get("id")), str(s.get("ts") or s.get("createdAt") or ""), str(s.get("label") or ""),
                      str(s.get("provider") or ""), str(s.get("trigger") or ""))
    remote.out.print(table)


@session.command("branch")
@SESSION_ID
@click.option("--snapshot", "snapshot_id", help="Snapshot to start from (default: the latest one).")
@click.option("--at", "from_ts", metavar="TIME", help="Or: the snapshot in force at this ISO-8601 time.")
@click.option("--name", help="A name for the branch.")
@click.option("--message", "-m", help="A prompt injected into the new session.")
@click.option("--follow", "-f", "follow_it", is_flag=True, help="Follow the new session until it ends.")
@remote_command
async def branch(remote: Remote, session_id: str, snapshot_id: str | None, from_ts: str | None,
                 name: str | None, message: str | None, follow_it: bool) -> None:
    """Start a new session whose workspace begins from one of SESSION_ID's snapshots.

    \b
    Examples:
      ah session branch 01J8Z... -m "try a different approach"
      ah session branch 01J8Z... --snapshot 01J90... --follow
    """
    async with remote.client() as client:
        if snapshot_id is None and from_ts is None:
            taken = await client.snapshots(session_id)
            if not taken:
                raise click.ClickException(f"session {session_id} has no snapshots yet: take one with "
                                           f"'ah session snapshot {session_id}'")
            snapshot_id = max(taken, key=lambda s: parse_ts(s.get("ts")) or 0).get("id")
        doc = await client.branch(session_id, snapshot_id=snapshot_id, from_ts=from_ts, name=name,
                                  message=message)
        new_id = doc.get("id") or doc.get("sessionId")
        if remote.as_json:
            remote.print_json(doc)
        else:
            remote.out.print(f"created session [bold]{new_id}[/] from snapshot {snapshot_id or from_ts}")
        if follow_it and new_id:
            raise click.exceptions.Exit(await follow_sessions(remote, client, [new_id]))
