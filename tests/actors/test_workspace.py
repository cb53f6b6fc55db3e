"""Provisioning against real repositories: local paths, file:// URLs, branches, commits, failures."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import trio

from actors.workspace import ProvisionError, RepoCache, RepoRequest, Workspace, provision, remove, worktree_at

ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e"}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


async def agit(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(["git", *args], cwd=cwd, env=ENV, capture_stdout=True,
                                  capture_stderr=True, check=check)


def commit_file(repo: Path, name: str, text: str, msg: str) -> str:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)
    git("add", name, cwd=repo)
    git("commit", "-q", "-m", msg, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A repository with main (two commits), a ``feature`` branch and a tag."""
    repo = tmp_path / "origin"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    commit_file(repo, "README.md", "v1\n", "first")
    git("tag", "v1", cwd=repo)
    git("checkout", "-q", "-b", "feature", cwd=repo)
    commit_file(repo, "feature.txt", "feature\n", "feature work")
    git("checkout", "-q", "main", cwd=repo)
    commit_file(repo, "src/app.py", "print(1)\n", "second")
    return repo


@pytest.fixture
def cache(tmp_path: Path) -> RepoCache:
    return RepoCache(tmp_path / "cache")


def tree_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".git" not in p.parts}


async def test_local_path_gets_a_worktree_at_the_default_branch(origin: Path, cache: RepoCache,
                                                                  tmp_path: Path) -> None:
    dest = tmp_path / "ws" / "S1"
    ws = await provision(RepoRequest("git", url=str(origin)), dest, cache)
    assert ws.kind == "worktree"
    assert ws.path == dest
    assert ws.base_commit == git("rev-parse", "main", cwd=origin)
    assert ws.branch == "ah/S1"
    assert tree_files(dest) == {"README.md", "src/app.py"}
    head = await agit("rev-parse", "HEAD", cwd=dest)
    assert head.stdout.decode().strip() == ws.base_commit
    branch = await agit("symbolic-ref", "--short", "HEAD", cwd=dest)
    assert branch.stdout.decode().strip() == "ah/S1"
    status = await agit("status", "--porcelain", cwd=dest)
    assert status.stdout == b""
    # The user's repository is only read: no new branches or refs there.
    assert git("for-each-ref", "--format=%(refname)", cwd=origin).split() == [
        "refs/heads/feature", "refs/heads/main", "refs/tags/v1"]


async def test_file_url_and_branch(origin: Path, cache: RepoCache, tmp_path: Path) -> None:
    ws = await provision(RepoRequest("git", url=origin.as_uri(), branch="feature"), tmp_path / "S2", cache)
    assert ws.base_commit == git("rev-parse", "feature", cwd=origin)
    assert tree_files(ws.path) == {"README.md", "feature.txt"}


async def test_commit_and_tag(origin: Path, cache: RepoCache, tmp_path: Path) -> None:
    first = git("rev-parse", "v1", cwd=origin)
    ws = await provision(RepoRequest("git", url=str(origin), commit=first[:10]), tmp_path / "S3", cache)
    assert ws.base_commit == first
    assert tree_files(ws.path) == {"README.md"}
    tagged = await provision(RepoRequest("git", url=str(origin), commit="v1"), tmp_path / "S4", cache)
    assert tagged.base_commit == first


async def test_missing_branch_or_commit_is_fetched(origin: Path, cache: RepoCache, tmp_path: Path) -> None:
    await cache.ensure(str(origin), branch=None, commit=None)
    git("checkout", "-q", "-b", "later", cwd=origin)
    later = commit_file(origin, "later.txt", "x\n", "later")
    fetches = cache.fetch_count
    ws = await provision(RepoRequest("git", url=str(origin), branch="later"), tmp_path / "S5", cache)
    assert ws.base_commit == later
    assert cache.fetch_count == fetches + 1
    newer = commit_file(origin, "newer.txt", "y\n", "newer")
    ws2 = await provision(RepoRequest("git", url=str(origin), commit=newer), tmp_path / "S6", cache)
    assert ws2.base_commit == newer
    assert cache.clone_count == 1


async def test_bad_url_raises_with_gits_message(cache: RepoCache, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-repo"
    expected = (await agit("ls-remote", str(missing), cwd=tmp_path, check=False)).stderr.decode()
    dest = tmp_path / "S7"
    with pytest.raises(ProvisionError) as info:
        await provision(RepoRequest("git", url=str(missing)), dest, cache)
    assert expected.splitlines()[0] in str(info.value)
    assert "does not appear to be a git repository" in str(info.value)
    assert not dest.exists()
    assert not any(cache.root.iterdir())  # no half-made clone left behind


async def test_unknown_branch_and_commit_are_clear_errors(origin: Path, cache: RepoCache,
                                                          tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="branch 'nope' not found"):
        await provision(RepoRequest("git", url=str(origin), branch="nope"), tmp_path / "S8", cache)
    with pytest.raises(ProvisionError, match="not found"):
        await provision(RepoRequest("git", url=str(origin), commit="0" * 40), tmp_path / "S9", cache)
    with pytest.raises(ProvisionError, match="required"):
        await provision(RepoRequest("git"), tmp_path / "S10", cache)
    with pytest.raises(ProvisionError, match="must not start"):
        await provision(RepoRequest("git", url="--upload-pack=touch /tmp/x"), tmp_path / "S11", cache)


async def test_authentication_request_fails_instead_of_prompting(cache: RepoCache, tmp_path: Path) -> None:
    """A server asking for credentials must fail the clone at once, never wait on a prompt."""
    reply = (b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\n"
             b"Content-Length: 0\r\nConnection: close\r\n\r\n")

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)
            await stream.send_all(reply)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, handler, 0)
        port = listeners[0].socket.getsockname()[1]
        with trio.fail_after(30), pytest.raises(ProvisionError) as info:
            await provision(RepoRequest("git", url=f"http://127.0.0.1:{port}/private.git"),
                            tmp_path / "S12", cache)
        nursery.cancel_scope.cancel()
    assert "127.0.0.1" in str(info.value)


async def test_remove_is_idempotent_and_keeps_committed_work(origin: Path, cache: RepoCache,
                                                             tmp_path: Path) -> None:
    ws = await provision(RepoRequest("git", url=str(origin)), tmp_path / "S13", cache)
    (ws.path / "scratch.txt").write_text("uncommitted\n")
    await remove(ws)
    await remove(ws)
    assert not ws.path.exists()
    assert git("--git-dir", str(ws.repo_cache), "worktree", "list", cwd=tmp_path).count("\n") == 0
    assert git("--git-dir", str(ws.repo_cache), "branch", "--list", "ah/*", cwd=tmp_path) == ""

    kept = await provision(RepoRequest("git", url=str(origin)), tmp_path / "S14", cache)
    await agit("-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "--allow-empty", "-m", "agent",
               cwd=kept.path)
    await remove(kept)
    assert "ah/S14" in git("--git-dir", str(kept.repo_cache), "branch", "--list", "ah/*", cwd=tmp_path)
    await remove(Workspace(path=tmp_path / "never-existed", kind="empty"))


async def test_a_worktree_read_back_from_git_is_removed_as_provisioned(origin: Path, cache: RepoCache,
                                                                        tmp_path: Path) -> None:
    ws = await provision(RepoRequest("git", url=str(origin)), tmp_path / "S15", cache)
    found = await worktree_at(ws.path, ws.base_commit, cache)
    assert found.repo_cache is not None
    assert ws.repo_cache is not None
    assert (found.repo_cache.resolve(), found.branch) == (ws.repo_cache.resolve(), "ah/S15")
    await remove(found)
    assert str(ws.path) not in git("--git-dir", str(ws.repo_cache), "worktree", "list", "--porcelain", cwd=tmp_path)
    assert git("--git-dir", str(ws.repo_cache), "branch", "--list", "ah/*", cwd=tmp_path) == ""


async def test_what_is_not_a_session_worktree_is_never_taken_for_one(origin: Path, cache: RepoCache,
                                                                     tmp_path: Path) -> None:
    # A directory inside someone's repository, on their branch: removing it must not touch the
    # repository (nor delete their branch, which sits at the same commit as a base could).
    inside = origin / "workspaces" / "S16"
    inside.mkdir(parents=True)
    head = git("rev-parse", "HEAD", cwd=origin)
    found = await worktree_at(inside, head, cache)
    assert (found.repo_cache, found.branch) == (None, None)
    await remove(found)
    assert not inside.exists()
    assert git("rev-parse", "main", cwd=origin) == head
    # A worktree named like a session's, but of a repository that is not one of the cache's clones.
    foreign = tmp_path / "S17"
    git("worktree", "add", "-q", "-b", "ah/S17", str(foreign), head, cwd=origin)
    found = await worktree_at(foreign, head, cache)
    assert (found.repo_cache, found.branch) == (None, None)
    gone = await worktree_at(tmp_path / "never-existed", None, cache)
    assert (gone.repo_cache, gone.branch) == (None, None)


async def test_concurrent_ensure_clones_once(origin: Path, cache: RepoCache) -> None:
    paths: list[Path] = []

    async def ensure() -> None:
        paths.append(await cache.ensure(str(origin), branch="main", commit=None))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(ensure)
    assert cache.clone_count == 1
    assert cache.fetch_count == 0
    assert len(set(paths)) == 1
    assert [p.name for p in cache.root.iterdir()] == [paths[0].name]


async def test_mode_none_and_upload_template(cache: RepoCache, tmp_path: Path) -> None:
    empty = await provision(RepoRequest("none"), tmp_path / "E1", cache)
    assert empty.kind == "empty"
    assert list(empty.path.iterdir()) == []
    template = tmp_path / "upload"
    (template / "pkg").mkdir(parents=True)
    (template / "pkg" / "x.py").write_text("x = 1\n")
    copied = await provision(RepoRequest("upload"), tmp_path / "E2", cache, template=template)
    assert (copied.path / "pkg" / "x.py").read_text() == "x = 1\n"
    with pytest.raises(ProvisionError, match="not empty"):
        await provision(RepoRequest("none"), tmp_path / "E2", cache)
    with pytest.raises(ProvisionError, match=r"unknown repo\.mode"):
        await provision(RepoRequest("svn"), tmp_path / "E3", cache)
    await remove(copied)
    assert not copied.path.exists()


async def test_branches_and_files(origin: Path, cache: RepoCache) -> None:
    branches = await cache.branches(str(origin))
    assert branches == [
        ("feature", git("rev-parse", "feature", cwd=origin), False),
        ("main", git("rev-parse", "main", cwd=origin), True),
    ]
    assert await cache.files(str(origin)) == ["README.md", "src/app.py"]
    assert await cache.files(str(origin), "feature") == ["README.md", "feature.txt"]
    assert await cache.files(str(origin), "v1") == ["README.md"]
