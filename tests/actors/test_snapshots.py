"""Snapshot providers on real directories and repositories: what a snapshot holds, what it leaves
alone, and that seek/branch give back exactly snapshot N."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import trio

from actors.paths import PathOutsideWorkspace
from actors.snapshots import (
    CopyProvider,
    GitSnapshotProvider,
    SnapshotProvider,
    choose_provider,
    detect_capabilities,
    discard,
    provider_named,
)
from actors.workspace import RepoCache, RepoRequest, provision, remove

ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e"}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


async def agit(*args: str, cwd: Path) -> str:
    proc = await trio.run_process(["git", *args], cwd=cwd, env=ENV, capture_stdout=True, capture_stderr=True)
    return proc.stdout.decode().strip()


def snapshot_view(root: Path) -> dict[str, object]:
    """What a snapshot must reproduce: file bytes, symlink targets, the executable bit."""
    view: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if ".git" in p.relative_to(root).parts:
            continue
        if p.is_symlink():
            view[rel] = ("link", os.readlink(p))
        elif p.is_file():
            view[rel] = (p.read_bytes(), bool(p.stat().st_mode & stat.S_IXUSR))
    return view


def assert_no_write_bits(root: Path) -> None:
    # The tests run as root, which ignores permissions: check the mode bits themselves.
    for p in [root, *root.rglob("*")]:
        st = os.lstat(p)
        if not stat.S_ISLNK(st.st_mode):
            assert st.st_mode & 0o222 == 0, p


@pytest.fixture
def plain_ws(tmp_path: Path) -> Path:
    """A workspace that is not a repository (repo.mode none), with nested dirs, a symlink, a script."""
    ws = tmp_path / "plain"
    (ws / "src" / "pkg").mkdir(parents=True)
    (ws / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (ws / "README.md").write_text("hello\n")
    (ws / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (ws / "run.sh").chmod(0o755)
    (ws / "link").symlink_to("src/pkg/mod.py")
    (ws / "data.bin").write_bytes(bytes(range(256)) * 4)
    return ws


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    """A user's repository with history, an ignore file, a staged change, a stash and branches."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / ".gitignore").write_text("*.log\nbuild/\n")
    (repo / "app.py").write_text("print('v1')\n")
    (repo / "lib.py").write_text("def f():\n    return 1\n")
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    git("branch", "topic", cwd=repo)
    (repo / "lib.py").write_text("def f():\n    return 2\n")
    git("stash", "-q", cwd=repo)
    (repo / "app.py").write_text("print('v2')\n")
    git("add", "app.py", cwd=repo)  # staged, so the user's index differs from HEAD
    (repo / "app.py").write_text("print('v3, unstaged')\n")
    (repo / "notes.txt").write_text("untracked\n")
    (repo / "debug.log").write_text("ignored\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.o").write_bytes(b"\x7fELF")
    return repo


PROVIDERS = ["git", "copy"]


@pytest.mark.parametrize("name", PROVIDERS)
async def test_seek_returns_snapshot_n_not_later_edits(name: str, plain_ws: Path, tmp_path: Path) -> None:
    provider = provider_named(name, tmp_path / "store")
    first = snapshot_view(plain_ws)
    s1 = await provider.snapshot(plain_ws, "S1", parent=None)
    (plain_ws / "README.md").write_text("changed\n")
    (plain_ws / "src" / "pkg" / "mod.py").unlink()
    (plain_ws / "src" / "new.py").write_text("new\n")
    second = snapshot_view(plain_ws)
    s2 = await provider.snapshot(plain_ws, "S2", parent=s1)
    (plain_ws / "README.md").write_text("edited after both snapshots\n")

    view1 = await provider.materialize_readonly(s1, tmp_path / "seek1")
    assert snapshot_view(view1) == first
    assert_no_write_bits(view1)
    view2 = await provider.materialize_readonly(s2, tmp_path / "seek2")
    assert snapshot_view(view2) == second
    assert s1.parent is None
    assert s2.parent == "S1"
    assert s1.provider == name
    # Logical size: file bytes, and a symlink's target text (what git stores and lstat reports).
    def size(view: dict[str, object]) -> int:
        return sum(len(v[0]) if isinstance(v[0], bytes) else len(str(v[1])) for v in view.values())  # type: ignore[index]

    assert s1.size_bytes == size(first)
    assert s2.size_bytes == size(second)  # git sizes only what changed since the parent
    await discard(view1)
    assert not view1.exists()


@pytest.mark.parametrize("name", PROVIDERS)
async def test_branch_is_a_writable_copy_of_snapshot_n(name: str, plain_ws: Path, tmp_path: Path) -> None:
    provider = provider_named(name, tmp_path / "store")
    expected = snapshot_view(plain_ws)
    s1 = await provider.snapshot(plain_ws, "S1", parent=None)
    (plain_ws / "README.md").write_text("later\n")
    branch = await provider.branch(s1, tmp_path / "branch")
    assert snapshot_view(branch) == expected
    (branch / "README.md").write_text("the branch's own edit\n")
    (branch / "src" / "added.py").write_text("ok\n")
    assert await provider.read_file(s1, "README.md") == b"hello\n"


@pytest.mark.parametrize("name", PROVIDERS)
async def test_read_and_list_files(name: str, plain_ws: Path, tmp_path: Path) -> None:
    provider = provider_named(name, tmp_path / "store")
    rec = await provider.snapshot(plain_ws, "S1", parent=None)
    assert await provider.list_files(rec) == ["README.md", "data.bin", "link", "run.sh", "src/pkg/mod.py"]
    assert await provider.read_file(rec, "src/pkg/mod.py") == b"x = 1\n"
    assert await provider.read_file(rec, "missing.txt") is None
    assert await provider.read_file(rec, "src") is None
    with pytest.raises(PathOutsideWorkspace):
        await provider.read_file(rec, "../../etc/passwd")


async def test_git_snapshot_leaves_the_users_repository_alone(user_repo: Path, tmp_path: Path) -> None:
    def state() -> dict[str, object]:
        return {
            "index": (user_repo / ".git" / "index").read_bytes(),
            "HEAD": (user_repo / ".git" / "HEAD").read_text(),
            "refs": git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags",
                        "refs/stash", cwd=user_repo),
            "stash": git("stash", "list", cwd=user_repo),
            "cached": git("diff", "--cached", cwd=user_repo),
            "status": git("--no-optional-locks", "status", "--porcelain", cwd=user_repo),
            "git_dir": sorted(os.listdir(user_repo / ".git")),
        }

    before = state()
    provider = GitSnapshotProvider(tmp_path / "store")
    s1 = await provider.snapshot(user_repo, "S1", parent=None)
    (user_repo / "notes.txt").write_text("edited\n")
    s2 = await provider.snapshot(user_repo, "S2", parent=s1)
    after = state()
    assert after == before
    # The snapshots live on private refs in the user's object store, each parented on the commit the
    # work tree stood on (as git stash does); the chain of snapshots is in their records.
    refs = await agit("for-each-ref", "--format=%(refname)", "refs/ah/", cwd=user_repo)
    assert refs.split() == ["refs/ah/snapshots/S1", "refs/ah/snapshots/S2"]
    head = await agit("rev-parse", "HEAD", cwd=user_repo)
    for snap in (s1, s2):
        assert await agit("rev-parse", f"{snap.ref}^@", cwd=user_repo) == head
    assert s2.parent == "S1"


async def test_git_snapshot_includes_untracked_and_excludes_ignored(user_repo: Path, tmp_path: Path) -> None:
    provider = GitSnapshotProvider(tmp_path / "store")
    rec = await provider.snapshot(user_repo, "S1", parent=None)
    assert await provider.list_files(rec) == [".gitignore", "app.py", "lib.py", "notes.txt"]
    # The working-tree content, not the staged or committed one.
    assert await provider.read_file(rec, "app.py") == b"print('v3, unstaged')\n"


async def test_non_git_workspace_inside_another_repository_uses_a_private_repo(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    outer.mkdir()
    git("init", "-q", cwd=outer)
    ws = outer / "data" / "ws"
    ws.mkdir(parents=True)
    (ws / "f.txt").write_text("f\n")
    provider = GitSnapshotProvider(tmp_path / "store")
    rec = await provider.snapshot(ws, "S1", parent=None)
    assert await provider.list_files(rec) == ["f.txt"]
    assert git("for-each-ref", cwd=outer) == ""
    assert not (outer / ".git" / "index").exists()
    assert not (ws / ".git").exists()
    # An agent running ``git init`` later does not move the snapshot chain.
    git("init", "-q", cwd=ws)
    (ws / "g.txt").write_text("g\n")
    rec2 = await provider.snapshot(ws, "S2", parent=rec)
    assert await provider.list_files(rec2) == ["f.txt", "g.txt"]
    assert git("for-each-ref", cwd=ws) == ""
    # In a private repository there is no HEAD to stand on: each snapshot is parented on the last.
    private, _ = await provider.commit_of(rec2)
    assert await agit("--git-dir", str(private), "rev-parse", f"{rec2.ref}^", cwd=tmp_path) == \
        (await provider.commit_of(rec))[1]


async def test_snapshots_of_a_worktree_outlive_it(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    git("init", "-q", "-b", "main", cwd=origin)
    (origin / "a.txt").write_text("a\n")
    git("add", ".", cwd=origin)
    git("commit", "-q", "-m", "a", cwd=origin)
    ws = await provision(RepoRequest("git", url=str(origin)), tmp_path / "W1", RepoCache(tmp_path / "cache"))
    (ws.path / "b.txt").write_text("b\n")
    provider = GitSnapshotProvider(tmp_path / "store")
    rec = await provider.snapshot(ws.path, "S1", parent=None)
    assert await agit("status", "--porcelain", cwd=ws.path) == "?? b.txt"
    assert await agit("rev-parse", f"{rec.ref}^@", cwd=ws.path) == ws.base_commit  # this worktree's HEAD
    await remove(ws)
    view = await provider.materialize_readonly(rec, tmp_path / "seek")
    assert snapshot_view(view) == {"a.txt": (b"a\n", False), "b.txt": (b"b\n", False)}


async def test_ids_are_checked(plain_ws: Path, tmp_path: Path) -> None:
    for provider in (GitSnapshotProvider(tmp_path / "g"), CopyProvider(tmp_path / "c")):
        await provider.snapshot(plain_ws, "S1", parent=None)
        for bad in ("../x", "a/b", "-x", "x.lock", ""):
            with pytest.raises(ValueError, match="invalid snapshot id"):
                await provider.snapshot(plain_ws, bad, parent=None)
        with pytest.raises(Exception, match="exists"):
            await provider.snapshot(plain_ws, "S1", parent=None)


async def test_copy_snapshot_leaves_out_the_git_link(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / ".git").write_text("gitdir: /somewhere/else\n")
    (ws / "x").write_text("x\n")
    provider = CopyProvider(tmp_path / "store")
    rec = await provider.snapshot(ws, "S1", parent=None)
    assert await provider.list_files(rec) == ["x"]


async def test_capabilities_and_choice(plain_ws: Path, tmp_path: Path) -> None:
    caps = await trio.to_thread.run_sync(detect_capabilities, plain_ws)
    assert caps[:2] == ["git", "copy"]
    chosen: SnapshotProvider = await trio.to_thread.run_sync(choose_provider, None, plain_ws, tmp_path)
    assert chosen.name == "git"
    copy = await trio.to_thread.run_sync(choose_provider, "copy", plain_ws, tmp_path)
    assert isinstance(copy, CopyProvider)
    with pytest.raises(ValueError, match="unknown snapshot provider"):
        await trio.to_thread.run_sync(choose_provider, "tape", plain_ws, tmp_path)
    for missing in ("btrfs", "zfs"):
        if missing not in caps:
            with pytest.raises(ValueError, match="not available"):
                await trio.to_thread.run_sync(choose_provider, missing, plain_ws, tmp_path)


def test_probing_a_workspace_writes_nothing_in_it(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f.txt").write_text("f\n")
    os.utime(ws, ns=(1_000_000_000, 1_000_000_000))  # any entry made and removed in ws would move this
    assert "copy" in detect_capabilities(ws)
    assert ws.stat().st_mtime_ns == 1_000_000_000
    assert sorted(p.name for p in ws.iterdir()) == ["f.txt"]


@pytest.fixture(params=["btrfs", "zfs"])
def native_provider(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A native snapshot provider the test's filesystem supports; the test is skipped where it does not
    (skipped here, outside trio, so that the summary keeps the reason)."""
    if request.param not in detect_capabilities(tmp_path):
        pytest.skip(f"the {request.param} snapshot provider is not available on this filesystem")
    return request.param


async def test_native_providers_where_available(native_provider: str, tmp_path: Path) -> None:
    name = native_provider
    ws = tmp_path / "ws"
    make = ["btrfs", "subvolume", "create", str(ws)] if name == "btrfs" else ["mkdir", str(ws)]
    await trio.run_process(make)
    (ws / "a.txt").write_text("a\n")
    provider = provider_named(name, tmp_path / "store")
    rec = await provider.snapshot(ws, "S1", parent=None)
    (ws / "a.txt").write_text("later\n")
    assert await provider.read_file(rec, "a.txt") == b"a\n"
