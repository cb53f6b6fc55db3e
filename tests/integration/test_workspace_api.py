"""Workspace views over a real daemon and real git repositories: the changed-file list and diffs agree
with ``git diff``, file content/preview/tree/search/info answer, snapshots leave the user's git state
alone, and a finished session carries its ``changes``."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.harness import DaemonProcess, command_task
from tests.integration.workspace_helpers import (
    Feed,
    create,
    follow,
    git,
    is_terminal,
    log_says,
    make_repo,
    workspace_of,
)

OLD_TXT = "".join(f"line {i}\n" for i in range(1, 21))

# Added, modified, deleted, renamed (with an edit), binary added and binary modified; then staged,
# as an agent about to commit would.
EDIT_SCRIPT = r"""
printf 'one\nTWO\nthree\nfour\n' > a.txt
rm gone.txt
git mv old.txt new.txt
sed -i 's/^line 20$/line twenty/' new.txt
mkdir -p src && printf 'print(1)\nprint(2)\n' > src/added.py
printf '\000\001\002\377' > bin.dat
printf '\000\003' >> logo.bin
git add -A
echo edits-done
"""


@pytest.fixture(scope="module")
def edited(daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A session on a local repository whose agent made every kind of change, finished."""
    repo = tmp_path_factory.mktemp("edited") / "repo"
    base = make_repo(repo, {"a.txt": "one\ntwo\nthree\n", "gone.txt": "bye\n", "old.txt": OLD_TXT,
                            "logo.bin": b"\x89PNG\x00\x01\x02", "keep.md": "# unchanged\n"})
    with daemon.client() as c, Feed(c) as feed:
        sid = create(c, command_task(["sh", "-c", EDIT_SCRIPT], repo={"mode": "git", "url": str(repo)}))
        changes = feed.wait("changes", sid)
        session = c.get(f"/api/v1/sessions/{sid}").json()
    assert session["status"] == "completed", session
    return {"sid": sid, "base": base, "ws": Path(session["workspace"]["path"]), "changes": changes["changes"],
            "session": session, "repo": repo}


def _git_numstat(ws: Path, base: str) -> dict[str, tuple[str, str]]:
    out = git(ws, "diff", "--no-color", "--find-renames", "--numstat", "-z", base, raw=True).decode()
    fields = out.split("\x00")
    result, i = {}, 0
    while i < len(fields) - 1:
        added, removed, path = fields[i].split("\t", 2)
        if not path:  # rename: old and new paths follow
            path, i = fields[i + 2], i + 3
        else:
            i += 1
        result[path] = (added, removed)
    return result


def _git_status(ws: Path, base: str) -> dict[str, str]:
    names = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed"}
    fields = git(ws, "diff", "--no-color", "--find-renames", "--name-status", "-z", base).split("\x00")
    result, i = {}, 0
    while i < len(fields) - 1:
        code = fields[i]
        if code.startswith("R"):
            result[fields[i + 2]] = "renamed"
            i += 3
        else:
            result[fields[i + 1]] = names[code[0]]
            i += 2
    return result


def test_changed_files_and_diffs_agree_with_git_diff(daemon: DaemonProcess, edited: dict) -> None:
    sid, base, ws = edited["sid"], edited["base"], edited["ws"]
    assert edited["session"]["workspace"]["baseCommit"] == base
    expected_status = _git_status(ws, base)
    expected_lines = _git_numstat(ws, base)
    assert set(expected_status) == {"a.txt", "gone.txt", "new.txt", "src/added.py", "bin.dat", "logo.bin"}
    with daemon.client() as c:
        listing = c.get(f"/api/v1/sessions/{sid}/files").json()
        many = c.get(f"/api/v1/sessions/{sid}/diff").json()
        singles = {p: c.get(f"/api/v1/sessions/{sid}/diff/{p}").json() for p in expected_status}
    items = {i["path"]: i for i in listing["items"]}
    assert listing["total"] == len(items) == len(expected_status)
    for path, status in expected_status.items():
        item = items[path]
        assert item["status"] == item["change_type"] == status
        added, removed = expected_lines[path]
        if added == "-":  # git: binary
            assert item["binary"]
            assert item["lines_added"] == item["lines_removed"] == 0
        else:
            assert (item["lines_added"], item["lines_removed"]) == (int(added), int(removed)), path
    assert items["new.txt"]["old_path"] == "old.txt"
    assert items["gone.txt"]["size_bytes"] is None
    assert items["a.txt"]["size_bytes"] == len("one\nTWO\nthree\nfour\n")
    assert items["a.txt"]["last_modified"]

    by_path = {f["path"]: f for f in many["files"]}
    assert set(by_path) == set(expected_status)
    for path in expected_status:
        paths = ["old.txt", "new.txt"] if path == "new.txt" else [path]
        want = git(ws, "diff", "--no-color", "--find-renames", base, "--", *paths)
        for got in (singles[path], by_path[path]):
            if expected_lines[path][0] == "-":
                assert got["binary"] is True
                assert got["diff"] == ""
                assert got["hunks"] == []
            else:
                assert got["diff"] == want, path
                assert "".join(h["content"] for h in got["hunks"]) in want
    assert many["total_lines_added"] == sum(int(a) for a, _ in expected_lines.values() if a != "-")
    assert many["total_lines_removed"] == sum(int(r) for _, r in expected_lines.values() if r != "-")
    renamed = singles["new.txt"]
    assert renamed["status"] == "renamed"
    assert renamed["old_path"] == "old.txt"
    assert "-line 20\n+line twenty\n" in renamed["diff"]


def test_finished_session_records_its_changes(edited: dict) -> None:
    lines = _git_numstat(edited["ws"], edited["base"])
    want = {"files_changed": len(lines),
            "lines_added": sum(int(a) for a, _ in lines.values() if a != "-"),
            "lines_removed": sum(int(r) for _, r in lines.values() if r != "-")}
    assert edited["changes"] == want
    assert edited["session"]["changes"] == want


def test_diff_formats_context_and_full_file(daemon: DaemonProcess, edited: dict) -> None:
    sid, ws, base = edited["sid"], edited["ws"], edited["base"]
    with daemon.client() as c:
        zero = c.get(f"/api/v1/sessions/{sid}/diff/a.txt?context=0").json()
        full = c.get(f"/api/v1/sessions/{sid}/diff/new.txt?full=true").json()
        split = c.get(f"/api/v1/sessions/{sid}/diff/a.txt?format=split").json()
        html = c.get(f"/api/v1/sessions/{sid}/diff/a.txt?format=html").json()
        unchanged = c.get(f"/api/v1/sessions/{sid}/diff/keep.md")
        bad_format = c.get(f"/api/v1/sessions/{sid}/diff/a.txt?format=pdf")
        bad_context = c.get(f"/api/v1/sessions/{sid}/diff/a.txt?context=-1")
        missing = c.get(f"/api/v1/sessions/{sid}/diff/nope.txt")
    assert zero["diff"] == git(ws, "diff", "--no-color", "-U0", base, "--", "a.txt")
    assert zero["context_lines"] == 0
    assert full["full_file"] is True
    assert full["file_content"] == (ws / "new.txt").read_text()
    assert len(full["hunks"]) == 1
    assert "line 1\n" in full["hunks"][0]["content"]
    assert {"type": "change", "old_line": 2, "old_text": "two", "new_line": 2, "new_text": "TWO",
            "text": None} in split["rows"]
    assert html["html"].startswith("<table")
    assert "TWO" in html["html"]
    assert unchanged.status_code == 200
    assert unchanged.json()["status"] == "unchanged"
    assert unchanged.json()["diff"] == ""
    assert bad_format.status_code == 400
    assert "format" in bad_format.json()["errors"]
    assert bad_context.status_code == 400
    assert "context" in bad_context.json()["errors"]
    assert missing.status_code == 404


def test_file_metadata_content_preview_tree_search_info(daemon: DaemonProcess, edited: dict) -> None:
    sid, ws = edited["sid"], edited["ws"]
    s = f"/api/v1/sessions/{sid}"
    with daemon.client() as c:
        meta = c.get(f"{s}/files/a.txt").json()
        deleted = c.get(f"{s}/files/gone.txt").json()
        text = c.get(f"{s}/files/src/added.py/content").json()
        binary = c.get(f"{s}/files/bin.dat/content").json()
        preview = c.get(f"{s}/files/new.txt/preview?max_lines=3").json()
        top = c.get(f"{s}/workspace/files").json()
        deep = c.get(f"{s}/workspace/files?recursive=true").json()
        modified = c.get(f"{s}/workspace/files?recursive=true&modified_only=true").json()
        sub = c.get(f"{s}/workspace/files?path=src").json()
        found = c.get(f"{s}/workspace/search/files?q=add").json()
        glob = c.get(f"{s}/workspace/search/files?q=*.py&type=file").json()
        info = c.get(f"{s}/workspace/info").json()
        filtered = c.get(f"{s}/files?status=added,renamed").json()
        globbed = c.get(f"{s}/files?path=src/*").json()
        no_file = c.get(f"{s}/files/nope.txt/content")
        a_dir = c.get(f"{s}/files/src/content")
    assert meta["status"] == "modified"
    assert meta["is_modified"]
    assert meta["lines_added"] == 2
    assert meta["size_bytes"] == (ws / "a.txt").stat().st_size
    assert meta["history"] == []
    assert deleted["status"] == "deleted"
    assert deleted["exists"] is False
    assert text == {**text, "path": "src/added.py", "content": "print(1)\nprint(2)\n", "encoding": "utf-8",
                    "is_modified": True, "size_bytes": 18}
    assert binary["encoding"] == "base64"
    assert base64.b64decode(binary["content"]) == b"\x00\x01\x02\xff"
    assert preview["content"] == "line 1\nline 2\nline 3\n"
    assert preview["truncated"] is True
    names = {n["path"]: n for n in top["children"]}
    assert {"a.txt", "new.txt", "src", "keep.md", "bin.dat", "logo.bin"} <= set(names)
    assert ".git" not in names
    assert "gone.txt" not in names
    assert names["src"]["type"] == "directory"
    assert names["src"]["children"] is None
    assert names["keep.md"]["is_modified"] is False
    assert names["a.txt"]["is_modified"] is True
    deep_src = next(n for n in deep["children"] if n["path"] == "src")
    assert [n["path"] for n in deep_src["children"]] == ["src/added.py"]
    flat = [n["path"] for n in modified["children"]]
    assert "keep.md" not in flat
    assert "a.txt" in flat
    assert "src" in flat
    assert sub["path"] == "src"
    assert [n["name"] for n in sub["children"]] == ["added.py"]
    assert {i["path"] for i in found["items"]} == {"src/added.py"}
    assert [i["path"] for i in glob["items"]] == ["src/added.py"]
    assert info["kind"] == "worktree"
    assert info["baseCommit"] == edited["base"]
    assert info["exists"]
    assert info["path"] == str(ws)
    assert info["fileCount"] == 6
    assert info["changes"] == edited["changes"]
    assert {i["status"] for i in filtered["items"]} == {"added", "renamed"}
    assert [i["path"] for i in globbed["items"]] == ["src/added.py"]
    assert no_file.status_code == 404
    assert no_file.headers["content-type"].startswith("application/problem+json")
    assert a_dir.status_code == 400


def test_unknown_session_is_404_on_every_workspace_route(daemon: DaemonProcess) -> None:
    routes = ["files", "files/a.txt", "files/a.txt/content", "files/a.txt/preview", "diff", "diff/a.txt",
              "workspace/files", "workspace/info", "workspace/search/files?q=a"]
    with daemon.client() as c:
        for route in routes:
            r = c.get(f"/api/v1/sessions/01JUNKNOWN00000000000000000/{route}")
            assert r.status_code == 404, route
            assert r.headers["content-type"].startswith("application/problem+json")


def _git_state(ws: Path) -> dict[str, object]:
    """What a user sees of their repository (read without taking git's optional locks)."""
    index = ws / git(ws, "rev-parse", "--git-path", "index").strip()
    return {"head": git(ws, "rev-parse", "HEAD"), "head_ref": git(ws, "symbolic-ref", "HEAD"),
            "index": index.read_bytes(),
            "refs": git(ws, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags"),
            "status": git(ws, "--no-optional-locks", "status", "--porcelain=v1", "-uall"),
            "stash": git(ws, "stash", "list")}


def test_git_snapshots_leave_head_index_and_branches_alone(daemon: DaemonProcess, tmp_path: Path) -> None:
    repo = tmp_path / "user-repo"
    make_repo(repo, {"README.md": "hello\n", "lib.py": "x = 1\n"})
    git(repo, "branch", "feature")
    user_before = (git(repo, "for-each-ref"), git(repo, "rev-parse", "HEAD"), (repo / ".git" / "index").read_bytes())
    script = ("echo 'x = 2' > lib.py && echo staged > staged.txt && git add staged.txt && echo new > untracked.txt"
              " && echo ready && read line && echo bye")
    with daemon.client() as c:
        sid = create(c, command_task(["sh", "-c", script], repo={"mode": "git", "url": str(repo)}))
        follow(c, sid, log_says("ready"))
        ws = workspace_of(c, sid)
        before = _git_state(ws)
        assert "A  staged.txt" in before["status"]
        assert " M lib.py" in before["status"]
        taken = []
        for i in range(3):
            (ws / f"later-{i}.txt").write_text(f"{i}\n")
            before = _git_state(ws)  # the test's own edit is the only change between snapshots
            r = c.post(f"/api/v1/sessions/{sid}/fs-snapshots", json={"label": f"s{i}"})
            assert r.status_code == 201, r.text
            taken.append(r.json())
            assert _git_state(ws) == before
        assert c.post(f"/api/v1/sessions/{sid}/prompt", json={"message": "go"}).status_code == 202
        follow(c, sid, lambda e: e["type"] == "status" and e["status"] == "completed")
        listed = c.get(f"/api/v1/sessions/{sid}/fs-snapshots").json()["items"]
    assert [s["provider"] for s in taken] == ["git"] * 3
    assert {s["id"] for s in taken} <= {s["id"] for s in listed}
    refs = git(ws, "for-each-ref", "--format=%(refname)", "refs/ah/snapshots/").split()
    assert {f"refs/ah/snapshots/{s['id']}" for s in taken} <= set(refs)
    # Each snapshot holds the whole working tree: staged, modified and untracked files alike.
    last = taken[-1]["id"]
    assert git(ws, "show", f"refs/ah/snapshots/{last}:lib.py") == "x = 2\n"
    assert git(ws, "show", f"refs/ah/snapshots/{last}:untracked.txt") == "new\n"
    assert git(ws, "show", f"refs/ah/snapshots/{last}:later-2.txt") == "2\n"
    # The user's own repository was never touched either.
    assert (git(repo, "for-each-ref"), git(repo, "rev-parse", "HEAD"), (repo / ".git" / "index").read_bytes()) \
        == user_before


def test_deleting_a_session_unregisters_its_worktree_and_drops_its_untouched_branch(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    repo = tmp_path / "user-repo"
    make_repo(repo, {"README.md": "hello\n"})
    commit = "git -c user.name=a -c user.email=a@b commit -q --allow-empty -m agent"
    with daemon.client() as c:
        # One agent leaves its session branch where it started, the other commits to it.
        idle = create(c, command_task(["true"], repo={"mode": "git", "url": str(repo)}))
        busy = create(c, command_task(["sh", "-c", commit], repo={"mode": "git", "url": str(repo)}))
        for sid in (idle, busy):
            follow(c, sid, is_terminal)
        spaces = {sid: workspace_of(c, sid) for sid in (idle, busy)}
        # The worktree's .git file names the cached clone it belongs to.
        cache = Path(git(spaces[idle], "rev-parse", "--path-format=absolute", "--git-common-dir").strip())
        branches = {sid: git(spaces[sid], "symbolic-ref", "--short", "HEAD").strip() for sid in (idle, busy)}
        assert all(str(spaces[sid]) in git(cache, "worktree", "list", "--porcelain") for sid in (idle, busy))
        for sid in (idle, busy):
            assert c.delete(f"/api/v1/sessions/{sid}").status_code == 204
    registered = git(cache, "worktree", "list", "--porcelain")
    assert not any(str(path) in registered for path in spaces.values())
    assert not (cache / "worktrees" / spaces[idle].name).exists()
    left = git(cache, "branch", "--list", "ah/*")
    assert branches[idle] not in left
    assert branches[busy] in left  # the agent's commit stays reachable
