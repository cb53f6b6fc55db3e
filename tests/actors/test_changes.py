"""Changed files and diffs agree with ``git diff`` itself, on every kind of change."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from actors.changes import FileDiff, Hunk, changed_files, file_diff, render_html, render_split
from actors.paths import PathOutsideWorkspace
from actors.snapshots import GitSnapshotProvider
from actors.workspace import RepoCache, RepoRequest, provision

ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e"}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True).stdout.decode()


def lines(n: int, prefix: str) -> str:
    return "".join(f"{prefix} line {i}\n" for i in range(1, n + 1))


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository at its base commit, then every kind of change in the working tree."""
    ws = tmp_path / "ws"
    ws.mkdir()
    git("init", "-q", "-b", "main", cwd=ws)
    (ws / ".gitignore").write_text("*.log\n")
    (ws / "keep.txt").write_text("same\n")
    (ws / "mod.txt").write_text(lines(30, "mod").replace("mod line 5\n", "mod line 5 crlf\r\n"))
    (ws / "del.txt").write_text("to delete\n")
    (ws / "old_name.py").write_text(lines(40, "code"))
    (ws / "image.bin").write_bytes(b"\x89PNG\x00\x01" * 100)
    (ws / "sp ace.txt").write_text("a\n")
    git("add", ".", cwd=ws)
    git("commit", "-q", "-m", "base", cwd=ws)
    base = git("rev-parse", "HEAD", cwd=ws).strip()

    text = (ws / "mod.txt").read_bytes().replace(b"mod line 3\n", b"mod line 3 changed\n")
    (ws / "mod.txt").write_bytes(text.replace(b"mod line 20\n", b"") + b"appended <script>\n")
    (ws / "del.txt").unlink()
    (ws / "old_name.py").rename(ws / "new_name.py")
    renamed = (ws / "new_name.py").read_text().replace("code line 7\n", "code line 7!\n")
    (ws / "new_name.py").write_text(renamed)
    (ws / "image.bin").write_bytes(b"\x89PNG\x00\x02" * 100)
    (ws / "new.txt").write_text("brand\nnew\n")
    (ws / "new.bin").write_bytes(b"\x00\xff" * 10)
    (ws / "sp ace.txt").write_text("a\nb\n")
    (ws / "noise.log").write_text("ignored\n")
    return ws, base


async def test_changed_files_agree_with_git_numstat(repo: tuple[Path, str], tmp_path: Path) -> None:
    ws, base = repo
    ours = await changed_files(ws, base, store_root=tmp_path / "store")
    by_path = {c.path: c for c in ours}
    assert {p: c.status for p, c in by_path.items()} == {
        "mod.txt": "modified", "del.txt": "deleted", "new_name.py": "renamed", "image.bin": "modified",
        "new.txt": "added", "new.bin": "added", "sp ace.txt": "modified"}
    assert by_path["new_name.py"].old_path == "old_name.py"
    assert by_path["image.bin"].binary
    assert by_path["new.bin"].binary

    # The user's own view: stage everything (our run never touched the index) and ask git.
    assert git("diff", "--cached", "--name-only", cwd=ws) == ""
    git("add", "-A", cwd=ws)
    expected = set(git("-c", "core.quotepath=false", "diff", "--cached", "-M", "--numstat", base,
                       cwd=ws).splitlines())
    rendered = set()
    for c in ours:
        counts = "-\t-" if c.binary else f"{c.lines_added}\t{c.lines_removed}"
        rendered.add(f"{counts}\t{c.old_path} => {c.path}" if c.old_path else f"{counts}\t{c.path}")
    assert rendered == expected


async def test_file_diffs_agree_with_git_patch(repo: tuple[Path, str], tmp_path: Path) -> None:
    ws, base = repo
    store = tmp_path / "store"
    changes = await changed_files(ws, base, store_root=store)
    diffs = {c.path: await file_diff(ws, base, c.path, store_root=store) for c in changes}
    by_context = {n: await file_diff(ws, base, "mod.txt", store_root=store, context=n) for n in (0, 10)}
    git("add", "-A", cwd=ws)
    for c in changes:
        d = diffs[c.path]
        paths = [c.old_path, c.path] if c.old_path else [c.path]
        if c.binary:
            assert d.binary
            assert d.diff == ""
            assert d.hunks == []
            continue
        assert d.diff == git("diff", "--cached", "-M", base, "--", *paths, cwd=ws), c.path
        assert (d.lines_added, d.lines_removed) == (c.lines_added, c.lines_removed)
        assert "".join(h.content for h in d.hunks) == d.diff[d.diff.index("@@"):]
    for n, d in by_context.items():
        assert d.diff == git("diff", "--cached", "-M", f"-U{n}", base, "--", "mod.txt", cwd=ws)
    assert [(h.old_start, h.old_lines, h.new_start, h.new_lines) for h in by_context[0].hunks] == [
        (3, 1, 3, 1), (20, 1, 19, 0), (30, 0, 30, 1)]


async def test_rename_by_either_path_unchanged_and_missing(repo: tuple[Path, str], tmp_path: Path) -> None:
    ws, base = repo
    store = tmp_path / "store"
    by_new = await file_diff(ws, base, "new_name.py", store_root=store)
    by_old = await file_diff(ws, base, "old_name.py", store_root=store)
    assert by_new == by_old
    assert by_new.status == "renamed"
    assert by_new.old_path == "old_name.py"
    assert "rename from old_name.py" in by_new.diff
    assert (await file_diff(ws, base, "keep.txt", store_root=store)).status == "unchanged"
    with pytest.raises(FileNotFoundError):
        await file_diff(ws, base, "never.txt", store_root=store)
    with pytest.raises(FileNotFoundError):  # ignored files are not part of the workspace's changes
        await file_diff(ws, base, "noise.log", store_root=store)
    with pytest.raises(PathOutsideWorkspace):
        await file_diff(ws, base, "../ws/keep.txt", store_root=store)


async def test_provisioned_worktree_against_its_base_commit(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    git("init", "-q", "-b", "main", cwd=origin)
    (origin / "a.py").write_text("a = 1\n")
    git("add", ".", cwd=origin)
    git("commit", "-q", "-m", "a", cwd=origin)
    ws = await provision(RepoRequest("git", url=str(origin)), tmp_path / "W", RepoCache(tmp_path / "cache"))
    store = tmp_path / "store"
    assert await changed_files(ws.path, ws.base_commit, store_root=store) == []
    (ws.path / "a.py").write_text("a = 2\n")
    (ws.path / "b.py").write_text("b = 1\n")
    changes = await changed_files(ws.path, ws.base_commit, store_root=store)
    assert [(c.path, c.status, c.lines_added, c.lines_removed) for c in changes] == [
        ("a.py", "modified", 1, 1), ("b.py", "added", 1, 0)]
    assert git("status", "--porcelain", cwd=ws.path) == " M a.py\n?? b.py\n"


async def test_mode_none_against_empty_tree_and_a_snapshot(tmp_path: Path) -> None:
    ws = tmp_path / "plain"
    ws.mkdir()
    (ws / "a.txt").write_text("1\n2\n")
    store = tmp_path / "store"
    first = await changed_files(ws, None, store_root=store)
    assert [(c.path, c.status, c.lines_added) for c in first] == [("a.txt", "added", 2)]
    rec = await GitSnapshotProvider(store).snapshot(ws, "S1", parent=None)
    (ws / "a.txt").write_text("1\n2\n3\n")
    since = await changed_files(ws, rec.ref, store_root=store)
    assert [(c.path, c.status, c.lines_added, c.lines_removed) for c in since] == [
        ("a.txt", "modified", 1, 0)]
    d = await file_diff(ws, rec.ref, "a.txt", store_root=store)
    assert d.diff.endswith("@@ -1,2 +1,3 @@\n 1\n 2\n+3\n")


def test_render_split_pairs_changes_side_by_side() -> None:
    hunk = "@@ -1,3 +1,4 @@\n a\n-b\n+B\n c\n+d\n\\ No newline at end of file\n"
    d = FileDiff(path="f.txt", status="modified", diff="diff --git ...\n" + hunk,
                 hunks=[Hunk(1, 3, 1, 4, hunk)])
    rows = [(r["type"], r["old_line"], r["old_text"], r["new_line"], r["new_text"]) for r in render_split(d)]
    assert rows == [
        ("hunk", None, None, None, None),
        ("context", 1, "a", 1, "a"),
        ("change", 2, "b", 2, "B"),
        ("context", 3, "c", 3, "c"),
        ("add", None, None, 4, "d"),
        ("note", None, None, None, None),
    ]


async def test_render_html_escapes_content(repo: tuple[Path, str], tmp_path: Path) -> None:
    ws, base = repo
    d = await file_diff(ws, base, "mod.txt", store_root=tmp_path / "store")
    page = render_html(d)
    assert page.startswith('<table class="diff diff-split" data-path="mod.txt"')
    assert "&lt;script&gt;" in page
    assert "<script>" not in page
    assert '<tr class="diff-change">' in page
    assert 'class="diff-new diff-added"' in page
    binary = render_html(await file_diff(ws, base, "image.bin", store_root=tmp_path / "store"))
    assert "Binary file not shown" in binary
