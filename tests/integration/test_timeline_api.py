"""Timeline, snapshots, seek and session-branch over a real daemon (and the snapshot service's bounds
with real sessions in-process)."""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path

import pytest
import trio

from actors.events import EventKind
from harbor.api.schemas import CreateTaskRequest
from harbor.config import Settings
from harbor.core import Harbor
from harbor.store import models as m
from harbor.store.database import migrate, open_database
from tests.harness import DaemonProcess, command_task, scenario_task
from tests.integration.workspace_helpers import (
    Feed,
    create,
    follow,
    git,
    is_terminal,
    log_says,
    make_repo,
    tree_of,
    workspace_of,
)


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_scenario_edits_become_events_snapshots_timeline_and_changes(daemon: DaemonProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    scenario = {"name": "edits", "timeline": [
        {"writeFile": {"path": "app.py", "content": "def main():\n    return 1\n"}},
        {"editFile": {"path": "app.py", "old_string": "return 1", "new_string": "return 2"}},
        {"agentEdits": {"path": "NOTES.md", "linesAdded": 3, "linesRemoved": 0, "description": "notes"}},
        # Hold the agent until the test has seen a tool-boundary snapshot (bounded: 30 s).
        {"agentToolUse": {"toolName": "run_cmd", "args": {
            "cmd": f"i=0; while [ ! -e {gate} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo gate"}}},
        {"complete": True}]}
    with daemon.client() as c, Feed(c) as feed:
        sid = create(c, scenario_task(scenario, speed=50))
        seen = follow(c, sid, lambda e: e["type"] == "snapshot")
        gate.write_text("go")
        seen += follow(c, sid, is_terminal, after=seen[-1]["seq"])
        changes = feed.wait("changes", sid)["changes"]
        timeline = c.get(f"/api/v1/sessions/{sid}/timeline").json()
        session = c.get(f"/api/v1/sessions/{sid}").json()
        files = c.get(f"/api/v1/sessions/{sid}/files").json()
        history = c.get(f"/api/v1/sessions/{sid}/files/app.py").json()["history"]
    assert session["status"] == "completed"
    edits = [e for e in seen if e["type"] == "file_edit"]
    assert [e["file_path"] for e in edits] == ["app.py", "app.py", "NOTES.md"]
    assert edits[2]["lines_added"] == 3
    snapshot_events = [e for e in seen if e["type"] == "snapshot"]
    assert snapshot_events
    assert all(e["trigger"] == "tool-boundary" and e["provider"] for e in snapshot_events)
    snap_ids = [s["id"] for s in timeline["fsSnapshots"]]
    assert {e["snapshotId"] for e in snapshot_events} <= set(snap_ids)
    assert timeline["fsSnapshots"][-1]["trigger"] == "final"
    assert timeline["sessionId"] == sid
    assert timeline["durationSec"] > 0
    assert timeline["currentTime"] == timeline["durationSec"]
    kinds = [mo["kind"] for mo in timeline["moments"]]
    assert kinds.count("file_edit") == 3
    assert "tool" in kinds
    assert "status" in kinds
    offsets = [mo["offsetSec"] for mo in timeline["moments"]]
    assert offsets == sorted(offsets)
    assert offsets[0] >= 0
    assert changes == session["changes"] == {"files_changed": 2, "lines_added": 5, "lines_removed": 0}
    assert {i["path"]: i["status"] for i in files["items"]} == {"app.py": "added", "NOTES.md": "added"}
    assert [h["lines_added"] for h in history] == [2, 1]


# The command agent's script: two states with a pause (a prompt) between them; a branch prompted
# "inspect" only reports what its workspace holds.
STEPS = r"""
if [ "$AH_PROMPT" = inspect ]; then echo "branch sees: $(cat a.txt) $(ls | tr '\n' ' ')"; exit 0; fi
echo v1 > a.txt; mkdir d; echo keep > d/k.txt; echo step1; read x
echo v2 > a.txt; echo later > b.txt; rm d/k.txt; echo step2; read x; echo end
"""


@pytest.fixture(scope="module")
def two_snapshots(daemon: DaemonProcess) -> dict[str, object]:
    """A finished session with manual snapshots ``one`` (a.txt=v1, d/k.txt) and ``two`` (a.txt=v2, b.txt)."""
    with daemon.client() as c, Feed(c) as feed:
        sid = create(c, command_task(["sh", "-c", STEPS]))
        follow(c, sid, log_says("step1"))
        first = c.post(f"/api/v1/sessions/{sid}/fs-snapshots", json={"label": "one", "description": "v1 state"})
        moment = c.post(f"/api/v1/sessions/{sid}/moments", json={"label": "looked at v1", "type": "note"})
        assert c.post(f"/api/v1/sessions/{sid}/prompt", json={"message": "next"}).status_code == 202
        follow(c, sid, log_says("step2"))
        second = c.post(f"/api/v1/sessions/{sid}/fs-snapshots", json={"label": "two"})
        assert c.post(f"/api/v1/sessions/{sid}/prompt", json={"message": "next"}).status_code == 202
        feed.wait("changes", sid)  # after the final snapshot
        ws = workspace_of(c, sid)
    assert first.status_code == second.status_code == moment.status_code == 201
    return {"sid": sid, "one": first.json(), "two": second.json(), "moment": moment.json(), "ws": ws}


def test_manual_snapshots_and_moments(daemon: DaemonProcess, two_snapshots: dict) -> None:
    sid, one, two = two_snapshots["sid"], two_snapshots["one"], two_snapshots["two"]
    for snap, label in ((one, "one"), (two, "two")):
        assert snap["label"] == label
        assert snap["provider"]
        assert snap["snapshot"]["id"] == snap["id"]
        assert snap["snapshot"]["size_bytes"] > 0
        assert "mount" in snap["snapshot"]
        assert snap["ts"].endswith("Z")
    assert one["description"] == "v1 state"
    moment = two_snapshots["moment"]
    assert moment["kind"] == "manual"
    assert moment["label"] == "looked at v1"
    assert moment["type"] == "note"
    with daemon.client() as c:
        listed = c.get(f"/api/v1/sessions/{sid}/fs-snapshots").json()["items"]
        timeline = c.get(f"/api/v1/sessions/{sid}/timeline").json()
        no_label = c.post(f"/api/v1/sessions/{sid}/moments", json={})
        unknown = c.post("/api/v1/sessions/01JUNKNOWN00000000000000000/fs-snapshots", json={})
    ids = [s["id"] for s in listed]
    assert ids.index(one["id"]) < ids.index(two["id"])
    assert listed[-1]["trigger"] == "final"
    assert [s["id"] for s in timeline["fsSnapshots"]] == ids
    manual = [mo for mo in timeline["moments"] if mo["kind"] == "manual"]
    assert [(mo["id"], mo["type"], mo["label"]) for mo in manual] == [(moment["id"], "note", "looked at v1")]
    assert no_label.status_code == 400
    assert "label" in no_label.json()["errors"]
    assert unknown.status_code == 404


def _modes_without_write(root: Path) -> bool:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, "."]:
            if stat.S_IMODE(os.lstat(os.path.join(dirpath, name)).st_mode) & 0o222:
                return False
    return True


def test_seek_materialises_snapshot_n_read_only(daemon: DaemonProcess, two_snapshots: dict) -> None:
    sid, one, two = two_snapshots["sid"], two_snapshots["one"], two_snapshots["two"]
    with daemon.client() as c:
        first = c.post(f"/api/v1/sessions/{sid}/seek", json={"fsSnapshotId": one["id"], "mountReadonly": True})
        again = c.post(f"/api/v1/sessions/{sid}/seek", json={"fsSnapshotId": one["id"]})
        between = c.post(f"/api/v1/sessions/{sid}/seek", json={"ts": two["ts"]})
        just_before = c.post(f"/api/v1/sessions/{sid}/seek", json={"ts": _ts(two["ts"]) - 0.001})
        too_early = c.post(f"/api/v1/sessions/{sid}/seek", json={"ts": "2001-01-01T00:00:00Z"})
        bad_ts = c.post(f"/api/v1/sessions/{sid}/seek", json={"ts": "yesterday"})
        unknown = c.post(f"/api/v1/sessions/{sid}/seek", json={"fsSnapshotId": "01JNOSUCHSNAPSHOT000000000"})
        listed = c.get(f"/api/v1/sessions/{sid}/fs-snapshots").json()["items"]
    assert first.status_code == 200, first.text
    doc = first.json()
    assert doc["fsSnapshotId"] == one["id"]
    assert doc["workspaceView"] == "readonly"
    assert doc["seekTime"] == one["ts"]
    mount = Path(doc["mountPath"])
    assert mount == daemon.data_dir / "mounts" / one["id"]
    assert tree_of(mount) == {"a.txt": b"v1\n", "d/k.txt": b"keep\n"}
    assert _modes_without_write(mount)
    assert again.json()["mountPath"] == doc["mountPath"]
    assert between.json()["fsSnapshotId"] == two["id"]
    assert tree_of(Path(between.json()["mountPath"])) == {"a.txt": b"v2\n", "b.txt": b"later\n"}
    assert just_before.json()["fsSnapshotId"] == one["id"]
    assert too_early.status_code == 404
    assert "ts" in too_early.json()["errors"]
    assert bad_ts.status_code == 400
    assert "ts" in bad_ts.json()["errors"]
    assert unknown.status_code == 404
    assert next(s for s in listed if s["id"] == one["id"])["snapshot"]["mount"] == str(mount)


def test_session_branch_starts_from_exactly_snapshot_n(daemon: DaemonProcess, two_snapshots: dict) -> None:
    sid, one, two = two_snapshots["sid"], two_snapshots["one"], two_snapshots["two"]
    with daemon.client() as c:
        r = c.post(f"/api/v1/sessions/{sid}/session-branch",
                   json={"fsSnapshotId": one["id"], "name": "retry", "injectedMessage": "inspect"})
        assert r.status_code == 201, r.text
        created = r.json()
        child = created["id"]
        seen = follow(c, child, is_terminal)
        view = c.get(f"/api/v1/sessions/{child}").json()
        files = c.get(f"/api/v1/sessions/{child}/files").json()
        by_time = c.post(f"/api/v1/sessions/{sid}/session-branch",
                         json={"fromTs": _ts(two["ts"]) - 0.001, "injectedMessage": "inspect"})
        by_time_child = by_time.json()["id"]
        follow(c, by_time_child, is_terminal)
        by_time_ws = workspace_of(c, by_time_child)
        branches = c.get(f"/api/v1/sessions/{sid}/branches").json()
        parent = c.get(f"/api/v1/sessions/{sid}").json()
    assert created["parentSessionId"] == sid
    assert created["fromSnapshotId"] == one["id"]
    assert child != sid
    assert created["links"]["self"] == f"/api/v1/sessions/{child}"
    assert view["status"] == "completed"
    assert view["prompt"] == "inspect"
    assert view["parentSessionId"] == sid
    assert view["fromSnapshotId"] == one["id"]
    assert view["agent"] == parent["agent"]
    # The branch's workspace holds snapshot one's files, not the later edits (b.txt, a.txt=v2).
    ws = Path(view["workspace"]["path"])
    assert ws != two_snapshots["ws"]
    assert tree_of(ws) == {"a.txt": b"v1\n", "d/k.txt": b"keep\n"}
    assert any(e["type"] == "log" and e["message"].startswith("branch sees: v1 a.txt d") for e in seen)
    assert files["items"] == []  # diffs of a branch are relative to the snapshot it started from
    assert [b["id"] for b in branches["items"]] == [child, by_time_child]
    assert branches["items"][0]["name"] == "retry"
    assert branches["items"][0]["fromSnapshotId"] == one["id"]
    assert by_time.status_code == 201
    assert by_time.json()["fromSnapshotId"] == one["id"]
    assert tree_of(by_time_ws) == {"a.txt": b"v1\n", "d/k.txt": b"keep\n"}
    # The parent's workspace went on to its own later state, untouched by the branches.
    assert tree_of(two_snapshots["ws"]) == {"a.txt": b"v2\n", "b.txt": b"later\n"}


def test_deleting_a_session_removes_its_read_only_views(daemon: DaemonProcess) -> None:
    with daemon.client() as c, Feed(c) as feed:
        sid = create(c, command_task(["sh", "-c", "echo gone > f.txt"]))
        feed.wait("changes", sid)  # the final snapshot exists
        mount = Path(c.post(f"/api/v1/sessions/{sid}/seek", json={}).json()["mountPath"])
        assert tree_of(mount) == {"f.txt": b"gone\n"}
        store = daemon.data_dir / "snapshots" / sid
        assert store.is_dir()
        assert c.delete(f"/api/v1/sessions/{sid}").status_code == 204
        assert c.get(f"/api/v1/sessions/{sid}/timeline").status_code == 404
    assert not mount.exists()
    assert not store.exists()  # the snapshot store goes with the session


#: A session on a git repository: commits once, leaves work uncommitted, waits; its branch reports
#: what git shows it and makes an edit of its own.
GIT_STEPS = r"""
if [ "$AH_PROMPT" = inspect ]; then
  echo "branch log: $(git log --format=%s | tr '\n' '|')"
  echo "branch status: [$(git status --porcelain | tr '\n' '|')]"
  echo mine > c.txt; exit 0
fi
echo v1 > a.txt; git -c user.name=a -c user.email=a@b commit -qam "agent commit"
echo draft > b.txt; echo v2 > a.txt; echo step1; read x; echo v3 > a.txt; echo end
"""


def test_a_branch_of_a_git_session_is_a_worktree_carrying_the_projects_history(daemon: DaemonProcess,
                                                                                tmp_path: Path) -> None:
    repo = tmp_path / "project"
    make_repo(repo, {"a.txt": "v0\n", "keep.md": "k\n"})
    with daemon.client() as c:
        sid = create(c, command_task(["sh", "-c", GIT_STEPS], repo={"mode": "git", "url": str(repo)}))
        follow(c, sid, log_says("step1"))
        snap = c.post(f"/api/v1/sessions/{sid}/fs-snapshots", json={"label": "mid"}).json()
        assert c.post(f"/api/v1/sessions/{sid}/prompt", json={"message": "next"}).status_code == 202
        follow(c, sid, is_terminal)
        parent_ws = workspace_of(c, sid)
        r = c.post(f"/api/v1/sessions/{sid}/session-branch",
                   json={"fsSnapshotId": snap["id"], "injectedMessage": "inspect"})
        assert r.status_code == 201, r.text
        child = r.json()["id"]
        seen = [e.get("message", "") for e in follow(c, child, is_terminal)]
        ws = workspace_of(c, child)
        view = c.get(f"/api/v1/sessions/{child}").json()
        files = c.get(f"/api/v1/sessions/{child}/files").json()["items"]
        branch = git(ws, "symbolic-ref", "--short", "HEAD").strip()
        cache = Path(git(ws, "rev-parse", "--path-format=absolute", "--git-common-dir").strip())
        toplevel = git(ws, "rev-parse", "--show-toplevel").strip()
        files_there = tree_of(ws)
        assert c.delete(f"/api/v1/sessions/{child}").status_code == 204
    assert view["status"] == "completed"
    # Exactly the snapshot's files (the agent's commit, then its uncommitted work), in a worktree of
    # the same cached clone on the session's own branch, with the project's history underneath.
    assert branch == f"ah/{child}"
    assert toplevel == str(ws)
    assert f"branch log: Agent Harbor snapshot {snap['id']}|agent commit|base|" in seen, seen
    assert "branch status: []" in seen  # clean: the branch starts at the snapshot
    assert files_there == {"a.txt": b"v2\n", "b.txt": b"draft\n", "keep.md": b"k\n", "c.txt": b"mine\n"}
    # Its changes are its own, relative to the snapshot it started from.
    assert [(f["path"], f["status"]) for f in files] == [("c.txt", "added")]
    assert tree_of(parent_ws)["a.txt"] == b"v3\n"  # the parent went on, untouched
    # Deleted: the worktree is unregistered and its branch, which the agent never committed to, dropped.
    assert str(ws) not in git(cache, "worktree", "list", "--porcelain")
    assert git(cache, "branch", "--list", branch) == ""


def test_branch_errors(daemon: DaemonProcess, two_snapshots: dict) -> None:
    sid, one = two_snapshots["sid"], two_snapshots["one"]
    with daemon.client() as c:
        other = create(c, command_task(["true"]))
        follow(c, other, is_terminal)
        foreign = c.post(f"/api/v1/sessions/{other}/session-branch", json={"fsSnapshotId": one["id"]})
        early = c.post(f"/api/v1/sessions/{sid}/session-branch", json={"fromTs": "2001-01-01T00:00:00Z"})
        naive = c.post(f"/api/v1/sessions/{sid}/session-branch", json={"fromTs": "2030-01-01T00:00:00"})
        unknown = c.post("/api/v1/sessions/01JUNKNOWN00000000000000000/session-branch", json={})
        not_json = c.post(f"/api/v1/sessions/{sid}/session-branch", content=b"{nope",
                          headers={"Content-Type": "application/json"})
    assert foreign.status_code == 404
    assert early.status_code == 404
    assert "fromTs" in early.json()["errors"]
    assert naive.status_code == 400
    assert "fromTs" in naive.json()["errors"]
    assert unknown.status_code == 404
    assert not_json.status_code == 400


# -- the snapshot service's bounds, with real sessions ---------------------------------------------


async def test_bursts_coalesce_and_the_global_limit_holds(tmp_path: Path) -> None:
    """100 triggers on one session run at most two snapshots; ten busy sessions never run more than
    ``max_concurrent_snapshots`` snapshot jobs at once."""
    settings = Settings(data_dir=tmp_path / "data", allow_command_agent=True, snapshot_interval_seconds=0,
                        max_concurrent_snapshots=2, max_concurrent_tasks=20, stop_grace_seconds=1)
    settings.data_dir.mkdir(parents=True)
    db = open_database(settings.database_url)
    await trio.to_thread.run_sync(migrate, db)
    harbor = Harbor(settings, db)
    # Enough files that a snapshot takes a while: overlapping jobs would show.
    script = "for i in $(seq 300); do echo $i > f$i.txt; done; echo ready; read x"
    async with trio.open_nursery() as nursery:
        await nursery.start(harbor.run)
        ids = []
        for _ in range(10):
            body = CreateTaskRequest.model_validate(command_task(["sh", "-c", script]))
            ids.append((await harbor.sessions.create_task(body, idempotency_key=None))["id"])
        for sid in ids:
            actor = harbor.sessions.supervisor.find(sid)
            assert actor is not None
            async with actor.buffer.subscribe(0) as sub:
                async for batch in sub:
                    if any(e.kind == EventKind.LOG and e.data.get("message") == "ready" for e in batch):
                        break

        scheduler = harbor.snapshots.scheduler
        peak = 0
        done = trio.Event()

        async def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, scheduler.stats.started - scheduler.stats.finished)
                await trio.lowlevel.checkpoint()

        nursery.start_soon(watch)
        started = scheduler.stats.started
        schedule = harbor.snapshots.schedule_for(ids[0])
        for _ in range(100):
            schedule.trigger("tool-boundary")
        await scheduler.wait_idle(ids[0])
        one_session = scheduler.stats.started - started
        rows = await harbor.journal.read(lambda: m.Snapshot.select().where(m.Snapshot.session_id == ids[0]).count())

        started = scheduler.stats.started
        for _ in range(10):
            for sid in ids:
                harbor.snapshots.schedule_for(sid).trigger("tool-boundary")
        for sid in ids:
            await scheduler.wait_idle(sid)
        ten_sessions = scheduler.stats.started - started
        done.set()

        for sid in ids:
            await harbor.sessions.stop(sid, "test over")
        await harbor.stop_sessions()
        nursery.cancel_scope.cancel()
    assert 1 <= one_session <= 2
    assert rows == one_session
    assert 10 <= ten_sessions <= 20  # each session: one running, at most one more merged behind it
    assert peak == 2  # the limit was reached, and never exceeded
    assert scheduler.stats.failed == 0
