"""``ah status``: a live view of every session on a daemon, fed by its dashboard event feed.

The view is a pure function of a :class:`StatusState` (:func:`render`); what changes the state is
apart: :func:`collect` fills it once (``ah status --once``), :func:`watch` keeps it current:

- the dashboard feed (``GET /api/v1/events``) announces creations and status changes; the session
  list is read right after the feed is subscribed, so nothing falls between the two;
- the CPU, memory and event-count columns come from ``GET /api/v1/sessions/{id}``, asked only for
  sessions with live processes and at most every ``interval`` seconds (the daemon samples every
  2 s: asking more often would show the same numbers);
- the screen is redrawn when something changed, and once a second for the ages.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from harbor.client import ACTIVE, HarborClient, HarborError
from harbor.terminal import (
    STATUS_ORDER,
    event_summary,
    human_bytes,
    human_duration,
    parse_ts,
    repo_label,
    short,
    status_text,
)

#: Sessions whose processes exist, so CPU and memory mean something.
LIVE = frozenset({"running", "pausing", "paused", "resuming", "stopping"})

#: Sessions read at once when refreshing stats: a bound on the daemon's extra load.
FETCH_CONCURRENCY = 8

#: The list read at start and after every reconnection (the API's largest page).
LIST_SIZE = 200


@dataclass
class StatusState:
    """What the view shows; plain data, changed only by the functions of this module.

    Attributes:
        url: the daemon's URL.
        sessions: session objects by id (feed-created ones are partial until fetched).
        version: the daemon's version, once known.
        uptime: the daemon's uptime in seconds, as of ``uptime_at`` (a ``time.time()``).
        connected: the feed is open.
        error: why the view is not current (shown in the header).
        now: the wall-clock time the view is drawn for (ages are relative to it).
    """

    url: str
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: str | None = None
    uptime: float | None = None
    uptime_at: float = 0.0
    connected: bool = False
    error: str | None = None
    now: float = field(default_factory=time.time)

    def replace_sessions(self, items: list[dict[str, Any]]) -> None:
        self.sessions = {s["id"]: s for s in items}

    def needs_fetch(self) -> list[str]:
        """Sessions to read again: those with live processes, and those known only from the feed."""
        return [i for i, s in self.sessions.items() if s.get("status") in LIVE or s.get("_partial")]


def apply_feed(state: StatusState, item: dict[str, Any]) -> bool:
    """Apply one dashboard feed item; whether the view changed."""
    session_id = item.get("sessionId")
    if not isinstance(session_id, str):
        return False
    doc = state.sessions.get(session_id)
    if doc is None:
        doc = state.sessions[session_id] = {"id": session_id, "_partial": True,
                                            "createdAt": item.get("ts"), "agent": {}, "repo": {}}
    if item.get("agent"):
        doc["agent"] = {**(doc.get("agent") or {}), "type": item["agent"]}
    if item.get("status"):
        doc["status"] = item["status"]
    if item.get("ts"):
        doc["updatedAt"] = item["ts"]
    if item.get("error"):
        doc["error"] = item["error"]
    if doc.get("status") not in ACTIVE:
        doc.pop("stats", None)  # its processes are gone
    return True


def _sort_key(s: dict[str, Any]) -> tuple[int, float]:
    active = 0 if s.get("status") in ACTIVE else 1
    return active, -(parse_ts(s.get("createdAt")) or 0)


def _last_activity(s: dict[str, Any], now: float) -> Text:
    recent = s.get("recent_events") or []
    if recent and s.get("status") in ACTIVE:
        summary = event_summary(recent[-1])
        if summary is not None:
            summary.truncate(60, overflow="ellipsis")
            return summary
    updated = parse_ts(s.get("updatedAt"))
    if s.get("error") and s.get("status") == "failed":
        return Text(short(s["error"], 60), style="red")
    return Text(f"{human_duration(now - updated)} ago" if updated else "—", style="dim")


def header(state: StatusState) -> Text:
    """``Agent Harbor <url> · v0.1.0 · up 3m05s`` and the count of sessions per status."""
    text = Text.assemble(("Agent Harbor ", "bold"), (state.url, "cyan"))
    if state.version:
        text.append(f" · v{state.version}")
    if state.uptime is not None:
        text.append(f" · up {human_duration(state.uptime + max(0.0, state.now - state.uptime_at))}")
    if state.error:
        text.append(f" · {state.error}", style="bold red")
    elif not state.connected:
        text.append(" · connecting…", style="dim")
    counts = Counter(str(s.get("status")) for s in state.sessions.values())
    text.append("\n")
    parts = [(status, counts[status]) for status in STATUS_ORDER if counts.get(status)]
    parts += [(status, n) for status, n in counts.items() if status not in STATUS_ORDER]
    if not parts:
        text.append("no sessions", style="dim")
    for i, (status, n) in enumerate(parts):
        if i:
            text.append(" · ", style="dim")
        text.append(f"{n} ")
        text.append_text(status_text(status))
    text.append(f"   ({len(state.sessions)} sessions)", style="dim")
    return text


def render(state: StatusState) -> RenderableType:
    """The whole view: the header, then one row per session (active ones first, newest first)."""
    table = Table(box=None, header_style="bold", pad_edge=False, expand=False)
    table.add_column("ID", no_wrap=True, min_width=26)
    table.add_column("STATUS", no_wrap=True, min_width=12)
    table.add_column("AGENT", no_wrap=True, min_width=8)
    table.add_column("REPOSITORY", no_wrap=True, max_width=28, overflow="ellipsis")
    table.add_column("AGE", justify="right", no_wrap=True, min_width=6)
    table.add_column("CPU %", justify="right", no_wrap=True, min_width=5)
    table.add_column("RSS", justify="right", no_wrap=True, min_width=10)
    table.add_column("EVENTS", justify="right", no_wrap=True, min_width=6)
    table.add_column("LAST ACTIVITY", no_wrap=True, overflow="ellipsis")
    for s in sorted(state.sessions.values(), key=_sort_key):
        created = parse_ts(s.get("createdAt"))
        stats = s.get("stats") if s.get("status") in LIVE else None
        events = s.get("eventCount")
        table.add_row(
            s["id"], status_text(s.get("status")), (s.get("agent") or {}).get("type") or "?",
            repo_label(s.get("repo")), human_duration(state.now - created if created else None),
            f"{stats['cpuPercent']:.1f}" if stats and stats.get("cpuPercent") is not None else "—",
            human_bytes(stats.get("rssBytes")) if stats else "—",
            str(events) if events is not None and s.get("status") in ACTIVE else "—",
            _last_activity(s, state.now))
    return Group(header(state), Text(""), table)


# -- filling the state ----------------------------------------------------------------------------

async def _fetch(client: HarborClient, state: StatusState, session_ids: list[str]) -> None:
    """Read these sessions again (at most :data:`FETCH_CONCURRENCY` at once); forget deleted ones."""
    limiter = trio.CapacityLimiter(FETCH_CONCURRENCY)

    async def one(session_id: str) -> None:
        async with limiter:
            try:
                doc = await client.get_session(session_id)
            except HarborError as exc:
                if exc.status == 404:
                    state.sessions.pop(session_id, None)
                return
        current = state.sessions.get(session_id) or {}
        # The feed may have announced a newer status while the read was in flight: keep the newer one.
        if (parse_ts(current.get("updatedAt")) or 0) > (parse_ts(doc.get("updatedAt")) or 0):
            doc["status"] = current.get("status", doc.get("status"))
        state.sessions[session_id] = doc

    async with trio.open_nursery() as nursery:
        for session_id in session_ids:
            nursery.start_soon(one, session_id)


async def _daemon_facts(client: HarborClient, state: StatusState) -> None:
    health = await client.health()
    state.uptime, state.uptime_at = float(health.get("uptimeSeconds", 0.0)), time.time()
    if state.version is None:
        state.version = (await client.version()).get("version")


async def collect(client: HarborClient) -> StatusState:
    """One complete state: the sessions, stats of the live ones, the daemon's version and uptime.

    Raises:
        HarborError / DaemonUnreachable: the daemon did not answer.
    """
    state = StatusState(url=client.base_url)
    await _daemon_facts(client, state)
    state.replace_sessions((await client.list_sessions(per_page=LIST_SIZE))["items"])
    await _fetch(client, state, state.needs_fetch())
    state.connected, state.now = True, time.time()
    return state


async def watch(client: HarborClient, console: Console, *, interval: float = 2.0,
                on_frame: Callable[[StatusState], None] | None = None) -> None:
    """Draw the live view on ``console`` until cancelled (Ctrl-C); reconnects when the daemon goes away.

    Args:
        client: the daemon's client.
        console: where to draw.
        interval: seconds between two refreshes of the live sessions' CPU, memory and event count.
        on_frame: called with the state after each frame is drawn (for tests and embedding).
    """
    state = StatusState(url=client.base_url)
    changed = trio.Event()

    def touch() -> None:
        nonlocal changed
        changed.set()
        changed = trio.Event()

    async def follow_feed() -> None:
        delay = 0.5
        while True:
            try:
                async with client.open_feed() as items:
                    # Subscribed: whatever happens from here on arrives on the feed.
                    await _daemon_facts(client, state)
                    state.replace_sessions((await client.list_sessions(per_page=LIST_SIZE))["items"])
                    state.connected, state.error, delay = True, None, 0.5
                    touch()
                    async for item in items:
                        if apply_feed(state, item):
                            touch()
                state.error = "the daemon closed the feed; reconnecting"
            except HarborError as exc:
                state.error = f"{exc}; retrying"
            state.connected = False
            touch()
            await trio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def refresh_stats() -> None:
        while True:
            await trio.sleep(interval)
            if not state.connected:
                continue
            try:
                await _daemon_facts(client, state)
                await _fetch(client, state, state.needs_fetch())
            except HarborError:
                continue  # the feed task reports the outage
            touch()

    with Live(console=console, auto_refresh=False, vertical_overflow="ellipsis") as live:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow_feed)
            nursery.start_soon(refresh_stats)
            while True:
                state.now = time.time()
                live.update(render(state), refresh=True)
                if on_frame is not None:
                    on_frame(state)
                with trio.move_on_after(1.0):  # ages tick even when nothing happens
                    await changed.wait()
