"""What every snapshot provider shares: :class:`SnapshotRecord`, the :class:`SnapshotProvider`
interface, :class:`SnapshotError`, and small helpers for read-only trees and store directories.
The providers live in :mod:`actors.snapshot_git` and :mod:`actors.snapshot_dirs`; choosing one is
:mod:`actors.snapshots`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio

from .workspace import remove_tree

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
