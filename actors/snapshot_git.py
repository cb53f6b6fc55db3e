"""The ``git`` snapshot provider: the whole working tree (untracked files too, ignored ones not)
committed to a private ref ``refs/ah/snapshots/<id>``. Trees are written through a private index per
workspace (:class:`SnapshotRepo`), never the user's, so HEAD, the index, branches and the stash stay
exactly as the agent left them. Cheap and deduplicated.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from .paths import normalize_rel
from .snapshot_base import (
    _FAST_OBJECTS,
    _PRIVATE_INDEX_CONFIG,
    SNAPSHOT_REF_PREFIX,
    SnapshotError,
    SnapshotRecord,
    _check_id,
    _key,
    _make_readonly,
    _prepare_empty_dir,
)
from .workspace import GitError, remove_tree, run_git


@dataclass(frozen=True)
class SnapshotRepo:
    """Where a workspace's trees are written: its own repository, or a private one.

    A workspace that is the top of a git repository (a worktree of the repo cache, or a local
    clone) writes objects and snapshot refs into that repository (its common git dir, so they
    outlive the worktree). Any other directory gets a private bare repository under the store,
    used with ``--work-tree``. Either way the index is private: ``state_dir/index`` persists the
    stat information of the last tree written, so the next ``git add -A`` rehashes only what changed.

    Attributes:
        work_tree: the workspace.
        git_dir: the repository objects and refs go to.
        state_dir: this workspace's private state under the store (index, choice of repository).
        user_index: the repository's own index for the workspace, only ever *copied* to seed the
            first private index (it holds stat data for every checked-out file).
    """

    work_tree: Path
    git_dir: Path
    state_dir: Path
    user_index: Path | None

    @classmethod
    async def open(cls, ws: Path, store_root: Path) -> SnapshotRepo:
        """The repository for ``ws``, decided on first use and remembered under ``store_root``
        (so a workspace whose agent later runs ``git init`` keeps its snapshot chain).

        Raises:
            SnapshotError: the workspace does not exist or git failed.
        """
        try:
            ws = await trio.to_thread.run_sync(lambda: ws.resolve(strict=True))
        except OSError as exc:
            raise SnapshotError(f"workspace {ws} is not available: {exc}") from exc
        state = store_root.absolute() / "git" / "workspaces" / _key(ws)
        choice = state / "repo.json"
        try:
            saved = json.loads(await trio.to_thread.run_sync(choice.read_text))
            return cls(ws, Path(saved["git_dir"]), state,
                       Path(saved["user_index"]) if saved["user_index"] else None)
        except FileNotFoundError:
            pass
        await trio.to_thread.run_sync(lambda: state.mkdir(parents=True, exist_ok=True))
        # The ceiling stops discovery at ``ws`` itself: a data dir inside someone's checkout must
        # not make every workspace a subdirectory of that repository.
        probe = await run_git(["rev-parse", "--show-toplevel", "--git-common-dir", "--git-path", "index"],
                              cwd=ws, env={"GIT_CEILING_DIRECTORIES": str(ws.parent)}, check=False)
        lines = probe.stdout.decode().splitlines()
        if probe.returncode == 0 and len(lines) == 3 and Path(lines[0]).resolve() == ws:
            git_dir, user_index = (ws / lines[1]).resolve(), (ws / lines[2]).resolve()
        else:
            git_dir, user_index = state / "repo.git", None
            try:
                await run_git(["init", "--quiet", "--bare", str(git_dir)])
            except GitError as exc:
                raise SnapshotError(f"creating a snapshot repository for {ws} failed: {exc}") from exc
        repo = cls(ws, git_dir, state, user_index)
        text = json.dumps({"git_dir": str(git_dir), "user_index": str(user_index) if user_index else None})
        await trio.to_thread.run_sync(_write_atomic, choice, text)
        return repo

    async def git(self, args: list[str], *, env: dict[str, str] | None = None, stdin: bytes = b"",
                  check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run git on this repository with the workspace as work tree."""
        return await run_git(["--git-dir", str(self.git_dir), "--work-tree", str(self.work_tree), *args],
                             cwd=self.work_tree, env=env, stdin=stdin, check=check)

    async def write_tree(self, *, seed_tree: str | None = None) -> str:
        """Write the tree of the working tree as it is now (untracked files included, ignored ones
        not) and return its id. Only the private index and new objects are written.

        The private index is copied to a temporary file (``copy2`` keeps its mtime, which git's
        racy-entry check relies on), updated with ``git add -A``, and moved back on success, so a
        cancelled or failed run leaves the previous index intact. Without one, the user's index
        (stat data for the checkout), then ``seed_tree``, seed it.

        Raises:
            SnapshotError: git failed (e.g. an unreadable file).
        """
        persistent = self.state_dir / "index"
        temp = self.state_dir / f"index.tmp-{secrets.token_hex(6)}"
        seeded = await trio.to_thread.run_sync(self._seed, persistent, temp)
        env = {"GIT_INDEX_FILE": str(temp)}
        try:
            if not seeded and seed_tree is not None:
                await self.git(["read-tree", seed_tree], env=env)
            await self.git([*_PRIVATE_INDEX_CONFIG, *_FAST_OBJECTS, "add", "--all", "--", "."], env=env)
            tree = (await self.git(["write-tree"], env=env)).stdout.decode().strip()
            await trio.to_thread.run_sync(os.replace, temp, persistent)
            return tree
        except GitError as exc:
            raise SnapshotError(f"writing the tree of {self.work_tree} failed: {exc}") from exc
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_unlink_quietly, temp, Path(f"{temp}.lock"))

    def _seed(self, persistent: Path, temp: Path) -> bool:
        for source in (persistent, self.user_index):
            if source is not None:
                with contextlib.suppress(FileNotFoundError):
                    shutil.copy2(source, temp)
                    return True
        return False

    async def head(self) -> str | None:
        """The commit the work tree's own ``HEAD`` names (per worktree), or ``None`` (unborn, or no
        repository of its own)."""
        proc = await run_git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cwd=self.work_tree,
                             env={"GIT_CEILING_DIRECTORIES": str(self.work_tree.parent)}, check=False)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    async def resolve(self, rev: str) -> str | None:
        """The object id ``rev`` names in this repository, or ``None``."""
        proc = await run_git(["--git-dir", str(self.git_dir), "rev-parse", "--verify", "--quiet",
                              "--end-of-options", rev], check=False)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None


async def _size_change(repo: SnapshotRepo, old_tree: str | None, new_tree: str) -> int:
    """Bytes of blobs in ``new_tree`` minus those in ``old_tree`` (all of ``new_tree`` if ``None``).

    Only the blobs that differ are sized: reading the size of every blob of a 10,000-file tree
    costs more than the rest of an incremental snapshot.
    """
    if old_tree is None:
        listing = await repo.git(["ls-tree", "-r", "-z", new_tree])
        fields = [entry.split(b"\t", 1)[0].split() for entry in listing.stdout.split(b"\x00") if entry]
        wanted = [(f[2], 1) for f in fields if f[1] == b"blob"]
    else:
        raw = (await repo.git(["diff-tree", "-r", "-z", "--no-renames", old_tree, new_tree])).stdout
        wanted = []
        for meta in raw.split(b"\x00")[0::2]:  # ":<old mode> <new mode> <old id> <new id> <status>", path
            parts = meta.lstrip(b":").split()
            if len(parts) == 5:
                sides = ((parts[0], parts[2], -1), (parts[1], parts[3], 1))
                wanted += [(sha, sign) for mode, sha, sign in sides if mode not in (b"000000", b"160000")]
    if not wanted:
        return 0
    sizes = await repo.git(["cat-file", "--batch-check=%(objectsize)"],
                           stdin=b"".join(sha + b"\n" for sha, _ in wanted))
    return sum(int(n) * sign for n, (_, sign) in zip(sizes.stdout.split(), wanted, strict=True))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{secrets.token_hex(4)}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _unlink_quietly(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


class GitSnapshotProvider:
    """Snapshots as commits on private refs (``refs/ah/snapshots/<id>``), parented on the workspace's
    ``HEAD`` in its own repository (on the previous snapshot in a private one). Never touches the
    user's index, HEAD, branches or stash.

    Args:
        store_root: where private indexes, private repositories (for non-git workspaces) and the
            snapshot → repository locators live.
    """

    name = "git"

    def __init__(self, store_root: Path) -> None:
        self.store_root = store_root.absolute()

    def _locator(self, snapshot_id: str) -> Path:
        return self.store_root / "git" / "snapshots" / snapshot_id

    async def snapshot(self, ws_path: Path, snapshot_id: str, *,
                       parent: SnapshotRecord | None) -> SnapshotRecord:
        """Commit the whole working tree of ``ws_path`` to ``refs/ah/snapshots/<snapshot_id>``.

        Raises:
            ValueError: ``snapshot_id`` is not usable as a ref name or the id is taken.
            SnapshotError: git failed.
        """
        _check_id(snapshot_id)
        ref = SNAPSHOT_REF_PREFIX + snapshot_id
        repo = await SnapshotRepo.open(ws_path, self.store_root)
        if await trio.to_thread.run_sync(self._locator(snapshot_id).exists) or await repo.resolve(ref):
            raise ValueError(f"snapshot {snapshot_id!r} already exists")
        parent_commit = None
        if parent is not None and parent.provider == self.name:
            # A parent from another repository (e.g. before a session-branch) is only recorded.
            parent_commit = await repo.resolve(f"{parent.ref}^{{commit}}")
        tree = await repo.write_tree(seed_tree=parent_commit)
        # In the workspace's own repository a snapshot is parented on the commit the work tree stands
        # on, as `git stash` parents its commits: it reads as "HEAD plus the working tree", and a
        # worktree branched from it carries the project's history. In a private repository there is
        # no such commit: the previous snapshot is the parent.
        commit_parent = await repo.head() if repo.user_index is not None else parent_commit
        try:
            args = ["commit-tree", "--no-gpg-sign", "-m", f"Agent Harbor snapshot {snapshot_id}", tree]
            if commit_parent:
                args += ["-p", commit_parent]
            commit = (await repo.git(args)).stdout.decode().strip()
            await repo.git(["update-ref", ref, commit, ""])  # "" as old value: must not exist yet
            if parent is not None and parent_commit:
                size = parent.size_bytes + await _size_change(repo, f"{parent_commit}^{{tree}}", tree)
            else:
                size = await _size_change(repo, None, tree)
        except GitError as exc:
            raise SnapshotError(f"snapshot {snapshot_id} failed: {exc}") from exc
        await trio.to_thread.run_sync(_write_atomic, self._locator(snapshot_id), str(repo.git_dir))
        return SnapshotRecord(snapshot_id, self.name, ref, time.time(), size,
                              parent.id if parent is not None else None)

    async def _git_dir(self, rec: SnapshotRecord) -> Path:
        try:
            return Path(await trio.to_thread.run_sync(self._locator(rec.id).read_text))
        except FileNotFoundError:
            raise SnapshotError(f"unknown git snapshot {rec.id!r}") from None

    async def _checkout(self, rec: SnapshotRecord, dest: Path) -> Path:
        git_dir = await self._git_dir(rec)
        dest = dest.absolute()
        await trio.to_thread.run_sync(_prepare_empty_dir, dest)
        index = Path(await trio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="ah-checkout-"))) / "index"
        try:
            await run_git(["--git-dir", str(git_dir), "--work-tree", str(dest), *_PRIVATE_INDEX_CONFIG,
                           "read-tree", "--reset", "-u", f"{rec.ref}^{{tree}}"],
                          cwd=dest, env={"GIT_INDEX_FILE": str(index)})
        except GitError as exc:
            await trio.to_thread.run_sync(remove_tree, dest)
            raise SnapshotError(f"checking out snapshot {rec.id} failed: {exc}") from exc
        finally:
            await trio.to_thread.run_sync(remove_tree, index.parent)
        return dest

    async def materialize_readonly(self, rec: SnapshotRecord, dest: Path) -> Path:
        """Check the snapshot's files out at ``dest`` (absent or empty) and clear all write bits.

        Raises:
            SnapshotError: unknown snapshot, ``dest`` not empty, or git failed.
        """
        dest = await self._checkout(rec, dest)
        await trio.to_thread.run_sync(_make_readonly, dest)
        return dest

    async def branch(self, rec: SnapshotRecord, dest: Path) -> Path:
        """Check the snapshot's files out at ``dest`` (absent or empty), writable. ``dest`` is a
        plain directory: the snapshot holds the files, not the repository they came from.

        Raises:
            SnapshotError: unknown snapshot, ``dest`` not empty, or git failed.
        """
        return await self._checkout(rec, dest)

    async def commit_of(self, rec: SnapshotRecord) -> tuple[Path, str]:
        """Where the snapshot's commit lives (the workspace's own repository, or a private one) and
        its id.

        Raises:
            SnapshotError: unknown snapshot, or its ref is gone.
        """
        git_dir = await self._git_dir(rec)
        proc = await run_git(["--git-dir", str(git_dir), "rev-parse", "--verify", "--quiet",
                              f"{rec.ref}^{{commit}}"], check=False)
        if proc.returncode != 0:
            raise SnapshotError(f"snapshot {rec.id}: {rec.ref} is gone from {git_dir}")
        return git_dir, proc.stdout.decode().strip()

    async def read_file(self, rec: SnapshotRecord, rel_path: str) -> bytes | None:
        """The file's bytes as stored (symlinks: their target). ``None`` if absent or a directory.

        Raises:
            PathOutsideWorkspace: ``rel_path`` is absolute or has a ``..``.
            SnapshotError: unknown snapshot.
        """
        rel = normalize_rel(rel_path)
        if not rel:
            return None
        git_dir = await self._git_dir(rec)
        proc = await run_git(["--git-dir", str(git_dir), "cat-file", "blob", f"{rec.ref}:{rel}"], check=False)
        return proc.stdout if proc.returncode == 0 else None

    async def list_files(self, rec: SnapshotRecord) -> list[str]:
        """Every file path in the snapshot, sorted (git order: bytewise)."""
        git_dir = await self._git_dir(rec)
        proc = await run_git(["--git-dir", str(git_dir), "ls-tree", "-r", "-z", "--name-only", rec.ref])
        return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\x00") if p]
