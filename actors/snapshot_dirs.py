"""Directory-based snapshot providers: ``copy``/``reflink`` (``cp -a --reflink=auto`` into the store)
and native ``btrfs``/``zfs`` snapshots where the workspace lives on one (minimal).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import trio

from .paths import normalize_rel, resolve_inside
from .snapshot_base import (
    SnapshotError,
    SnapshotRecord,
    _check_id,
    _make_readonly,
    _prepare_empty_dir,
    _tree_size,
)
from .workspace import remove_tree


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
