"""Workspace snapshots behind one interface, :class:`SnapshotProvider`, chosen per workspace.

- ``git`` (:class:`GitSnapshotProvider`): the whole working tree (untracked files too, ignored
  ones not) committed to a private ref ``refs/ah/snapshots/<id>``. Trees are written through a
  private index per workspace (:class:`SnapshotRepo`), never the user's, so HEAD, the index,
  branches and the stash stay exactly as the agent left them. Cheap and deduplicated.
- ``copy``/``reflink`` (:class:`CopyProvider`): ``cp -a --reflink=auto`` into the store.
- ``btrfs``/``zfs``: native snapshots, only where the workspace lives on one (minimal).

Every provider can materialise a snapshot read-only (seek), branch it into a new writable
directory (session-branch), and read or list its files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio

from .paths import normalize_rel, resolve_inside
from .workspace import GitError, remove_tree, run_git

__all__ = [
    "BtrfsProvider",
    "CopyProvider",
    "GitSnapshotProvider",
    "SnapshotError",
    "SnapshotProvider",
    "SnapshotRecord",
    "SnapshotRepo",
    "ZfsProvider",
    "choose_provider",
    "detect_capabilities",
    "discard",
    "provider_named",
]

SNAPSHOT_REF_PREFIX = "refs/ah/snapshots/"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Settings that would make a private index write into the user's repository (split index shares,
# fsmonitor tokens) or run an external tool; none of them change which content gets snapshotted.
_PRIVATE_INDEX_CONFIG = ["-c", "core.splitIndex=false", "-c", "core.fsmonitor=false",
                         "-c", "core.untrackedCache=false", "-c", "core.hooksPath=/dev/null"]
# Snapshots favour speed over size for new loose objects (about a fifth faster on a first snapshot);
# packing them later recompresses at the repository's own level anyway.
_FAST_OBJECTS = ["-c", "core.looseCompression=1"]


class SnapshotError(Exception):
    """A snapshot could not be taken, found or materialised."""


@dataclass(frozen=True)
class SnapshotRecord:
    """A snapshot that exists.

    Attributes:
        id: the caller's id (a ULID in the daemon); also the ref or directory name.
        provider: the provider's name (``git``, ``copy``, ``reflink``, ``btrfs``, ``zfs``).
        ref: ``refs/ah/snapshots/<id>`` for git, the snapshot's directory for the others.
        created: unix seconds.
        size_bytes: total size of the snapshot's files (logical, before sharing or compression).
        parent: the previous snapshot's id, if any.
    """

    id: str
    provider: str
    ref: str
    created: float
    size_bytes: int
    parent: str | None = None


class SnapshotProvider(Protocol):
    """What every snapshot provider offers. All methods are checkpoints that never block the loop."""

    name: str

    async def snapshot(self, ws_path: Path, snapshot_id: str, *,
                       parent: SnapshotRecord | None) -> SnapshotRecord:
        """Capture ``ws_path`` now as ``snapshot_id``."""
        ...

    async def materialize_readonly(self, rec: SnapshotRecord, dest: Path) -> Path:
        """Put the snapshot's files at ``dest``, every file and directory without write bits."""
        ...

    async def branch(self, rec: SnapshotRecord, dest: Path) -> Path:
        """A new writable directory at ``dest`` holding exactly the snapshot's files."""
        ...

    async def read_file(self, rec: SnapshotRecord, rel_path: str) -> bytes | None:
        """A file's bytes in the snapshot; ``None`` if it has no such file."""
        ...

    async def list_files(self, rec: SnapshotRecord) -> list[str]:
        """Relative paths of every file (and symlink) in the snapshot, sorted."""
        ...


def _check_id(snapshot_id: str) -> None:
    if not _ID.match(snapshot_id) or ".." in snapshot_id or snapshot_id.endswith(".lock"):
        raise ValueError(f"invalid snapshot id {snapshot_id!r}")


def _key(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.name)[:40] or "root"
    return f"{name}-{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"


def _make_readonly(root: Path) -> None:
    """Clear every write bit under ``root`` (children before parents). Symlinks are skipped: on
    Linux ``chmod`` would follow them, possibly out of the tree. Blocking."""
    no_write = ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*filenames, *dirnames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(p, stat.S_IMODE(st.st_mode) & no_write)
    os.chmod(root, stat.S_IMODE(os.stat(root).st_mode) & no_write)


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _prepare_empty_dir(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise SnapshotError(f"destination exists and is not empty: {dest}")
    dest.mkdir(parents=True, exist_ok=True)


async def discard(path: Path) -> None:
    """Delete a materialised or branched directory, read-only entries included. Idempotent."""
    await trio.to_thread.run_sync(remove_tree, path)


# --------------------------------------------------------------------------------------- git


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
    """Snapshots as commits on private refs (``refs/ah/snapshots/<id>``), parented on the previous
    snapshot. Never touches the user's index, HEAD, branches or stash.

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
        try:
            args = ["commit-tree", "--no-gpg-sign", "-m", f"Agent Harbor snapshot {snapshot_id}", tree]
            if parent_commit:
                args += ["-p", parent_commit]
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


# ------------------------------------------------------------------------- directory-based


async def _cp(args: list[str]) -> None:
    proc = await trio.run_process(["cp", *args], capture_stdout=True, capture_stderr=True, check=False)
    if proc.returncode != 0:
        raise SnapshotError(f"cp failed: {proc.stderr.decode('utf-8', 'replace').strip()}")


def _list_dir_files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            out.append(name if rel_dir == "." else f"{rel_dir}/{name}")
    return sorted(out)


def _read_inside(root: Path, rel: str) -> bytes | None:
    path = resolve_inside(root, rel)
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


class _DirectorySnapshots:
    """Shared by providers whose snapshot is a directory (``rec.ref``)."""

    name = "copy"

    async def _copy_out(self, rec: SnapshotRecord, dest: Path) -> Path:
        dest = dest.absolute()
        await trio.to_thread.run_sync(_prepare_empty_dir, dest)
        try:
            await _cp(["-a", "--reflink=auto", "-T", "--", rec.ref, str(dest)])
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(remove_tree, dest)
            raise
        return dest

    async def materialize_readonly(self, rec: SnapshotRecord, dest: Path) -> Path:
        """Copy (reflink where possible) the snapshot to ``dest`` and clear all write bits.

        Raises:
            SnapshotError: ``dest`` not empty or the copy failed.
        """
        dest = await self._copy_out(rec, dest)
        await trio.to_thread.run_sync(_make_readonly, dest)
        return dest

    async def branch(self, rec: SnapshotRecord, dest: Path) -> Path:
        """Copy (reflink where possible) the snapshot to ``dest``, modes as they were captured.

        Raises:
            SnapshotError: ``dest`` not empty or the copy failed.
        """
        return await self._copy_out(rec, dest)

    async def read_file(self, rec: SnapshotRecord, rel_path: str) -> bytes | None:
        """The file's bytes; ``None`` if absent or a directory.

        Raises:
            PathOutsideWorkspace: the path, or a symlink on it, leads outside the snapshot.
        """
        if not normalize_rel(rel_path):
            return None
        return await trio.to_thread.run_sync(_read_inside, Path(rec.ref), rel_path)

    async def list_files(self, rec: SnapshotRecord) -> list[str]:
        """Every file and symlink in the snapshot, sorted."""
        return await trio.to_thread.run_sync(_list_dir_files, Path(rec.ref))


class CopyProvider(_DirectorySnapshots):
    """Snapshots as full copies (``cp -a --reflink=auto``) under ``store_root/copy/<id>``.

    The workspace's top-level ``.git`` is left out: a copied ``.git`` file would point a branch
    at the live worktree's index and HEAD, and a copied ``.git`` directory is the repository, not
    the work. Ignored files are kept (unlike ``git``): a copy is whatever is on disk.

    Args:
        store_root: the snapshot store.
        name: ``copy``, or ``reflink`` when chosen because the file system shares blocks.
    """

    def __init__(self, store_root: Path, name: str = "copy") -> None:
        self.store_root = store_root.absolute()
        self.name = name

    async def snapshot(self, ws_path: Path, snapshot_id: str, *,
                       parent: SnapshotRecord | None) -> SnapshotRecord:
        """Copy ``ws_path`` into the store.

        Raises:
            ValueError: bad or taken ``snapshot_id``.
            SnapshotError: the copy failed.
        """
        _check_id(snapshot_id)
        dest = self.store_root / "copy" / snapshot_id
        tmp = dest.with_name(f"{snapshot_id}.tmp-{secrets.token_hex(4)}")

        def prepare() -> list[str]:
            if dest.exists():
                raise ValueError(f"snapshot {snapshot_id!r} already exists")
            tmp.mkdir(parents=True)
            return [str(ws_path / n) for n in sorted(os.listdir(ws_path)) if n != ".git"]

        entries = await trio.to_thread.run_sync(prepare)
        try:
            for i in range(0, len(entries), 500):  # bounded argv
                await _cp(["-a", "--reflink=auto", "-t", str(tmp), "--", *entries[i:i + 500]])
            await trio.to_thread.run_sync(os.rename, tmp, dest)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(remove_tree, tmp)
            raise
        size = await trio.to_thread.run_sync(_tree_size, dest)
        return SnapshotRecord(snapshot_id, self.name, str(dest), time.time(), size,
                              parent.id if parent is not None else None)


class BtrfsProvider(_DirectorySnapshots):
    """Read-only btrfs subvolume snapshots; the workspace must be a subvolume on the same file
    system as ``store_root``. Minimal, and untested where btrfs is unavailable."""

    name = "btrfs"

    def __init__(self, store_root: Path) -> None:
        self.store_root = store_root.absolute()

    async def _btrfs(self, *args: str) -> None:
        proc = await trio.run_process(["btrfs", *args], capture_stdout=True, capture_stderr=True, check=False)
        if proc.returncode != 0:
            raise SnapshotError(f"btrfs {args[0]} failed: {proc.stderr.decode('utf-8', 'replace').strip()}")

    async def snapshot(self, ws_path: Path, snapshot_id: str, *,
                       parent: SnapshotRecord | None) -> SnapshotRecord:
        """``btrfs subvolume snapshot -r`` of the workspace into the store."""
        _check_id(snapshot_id)
        dest = self.store_root / "btrfs" / snapshot_id
        await trio.to_thread.run_sync(lambda: dest.parent.mkdir(parents=True, exist_ok=True))
        await self._btrfs("subvolume", "snapshot", "-r", str(ws_path), str(dest))
        size = await trio.to_thread.run_sync(_tree_size, dest)
        return SnapshotRecord(snapshot_id, self.name, str(dest), time.time(), size,
                              parent.id if parent is not None else None)

    async def branch(self, rec: SnapshotRecord, dest: Path) -> Path:
        """A writable subvolume snapshot of the snapshot at ``dest`` (which must not exist)."""
        await self._btrfs("subvolume", "snapshot", rec.ref, str(dest.absolute()))
        return dest.absolute()


class ZfsProvider(_DirectorySnapshots):
    """ZFS snapshots of the dataset holding the workspace, read through ``.zfs/snapshot``; copies
    (block-cloned where ZFS supports it) for seek and branch. Minimal, and untested where ZFS is
    unavailable."""

    name = "zfs"

    def __init__(self, store_root: Path) -> None:
        self.store_root = store_root.absolute()

    async def snapshot(self, ws_path: Path, snapshot_id: str, *,
                       parent: SnapshotRecord | None) -> SnapshotRecord:
        """``zfs snapshot <dataset>@<id>`` of the dataset mounted at or above the workspace."""
        _check_id(snapshot_id)
        ws = await trio.to_thread.run_sync(lambda: ws_path.resolve(strict=True))
        proc = await trio.run_process(["zfs", "list", "-H", "-o", "name,mountpoint", str(ws)],
                                      capture_stdout=True, capture_stderr=True, check=False)
        if proc.returncode != 0:
            raise SnapshotError(f"zfs list failed: {proc.stderr.decode('utf-8', 'replace').strip()}")
        dataset, mountpoint = proc.stdout.decode().splitlines()[0].split("\t")
        snap = await trio.run_process(["zfs", "snapshot", f"{dataset}@{snapshot_id}"],
                                      capture_stdout=True, capture_stderr=True, check=False)
        if snap.returncode != 0:
            raise SnapshotError(f"zfs snapshot failed: {snap.stderr.decode('utf-8', 'replace').strip()}")
        ref = Path(mountpoint) / ".zfs" / "snapshot" / snapshot_id / ws.relative_to(mountpoint)
        size = await trio.to_thread.run_sync(_tree_size, ref)
        return SnapshotRecord(snapshot_id, self.name, str(ref), time.time(), size,
                              parent.id if parent is not None else None)


# ------------------------------------------------------------------------------- choosing


def _fs_type(path: Path) -> str | None:
    real = os.path.realpath(path)
    best, fstype = "", None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), left.split()[4])
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, fstype = mount, right.split()[0]
    except OSError:
        return None
    return fstype


def _reflink_works(directory: Path) -> bool:
    try:
        with tempfile.TemporaryDirectory(dir=directory, prefix=".ah-reflink-") as tmp:
            src = Path(tmp) / "a"
            src.write_bytes(b"x")
            done = subprocess.run(["cp", "--reflink=always", str(src), str(Path(tmp) / "b")],
                                  capture_output=True, check=False, timeout=10)
            return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def detect_capabilities(path: Path) -> list[str]:
    """Snapshot providers usable for a workspace at ``path``: ``git`` (git installed), ``copy``
    (always), ``reflink`` (``cp --reflink=always`` works there), ``btrfs``/``zfs`` (the file system,
    with its tool installed).

    Blocking (a test copy and ``/proc`` read): call it through ``trio.to_thread.run_sync``.
    """
    caps = ["git"] if shutil.which("git") else []
    caps.append("copy")
    directory = path if path.is_dir() else path.parent
    if _reflink_works(directory):
        caps.append("reflink")
    fstype = _fs_type(directory)
    if fstype in ("btrfs", "zfs") and shutil.which(fstype):
        caps.append(fstype)
    return caps


_PROVIDERS = ("git", "copy", "reflink", "btrfs", "zfs")


def provider_named(name: str, store_root: Path) -> SnapshotProvider:
    """The provider called ``name`` (e.g. ``rec.provider`` of a stored record), without checking
    the workspace: for reading snapshots that already exist. Not a checkpoint.

    Raises:
        ValueError: unknown name.
    """
    if name == "git":
        return GitSnapshotProvider(store_root)
    if name in ("copy", "reflink"):
        return CopyProvider(store_root, name)
    if name == "btrfs":
        return BtrfsProvider(store_root)
    if name == "zfs":
        return ZfsProvider(store_root)
    raise ValueError(f"unknown snapshot provider {name!r}; known: {', '.join(_PROVIDERS)}")


def choose_provider(preference: str | None, ws_path: Path, store_root: Path) -> SnapshotProvider:
    """The provider for a workspace: ``preference`` if it is available there, else (``None`` or
    ``"auto"``) ``git``, falling back to ``reflink`` then ``copy``.

    Blocking (see :func:`detect_capabilities`).

    Raises:
        ValueError: ``preference`` is unknown, or names a provider this workspace cannot use.
    """
    caps = detect_capabilities(ws_path)
    pref = (preference or "auto").lower()
    if pref == "auto":
        pref = next(p for p in ("git", "reflink", "copy") if p in caps)
    elif pref not in _PROVIDERS:
        raise ValueError(f"unknown snapshot provider {preference!r}; known: auto, {', '.join(_PROVIDERS)}")
    elif pref not in caps:
        raise ValueError(f"snapshot provider {pref!r} is not available for {ws_path}; "
                         f"available: {', '.join(caps)}")
    return provider_named(pref, store_root)

