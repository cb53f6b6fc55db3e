"""Workspace snapshots behind one interface, :class:`SnapshotProvider`, chosen per workspace.

- ``git`` (:class:`GitSnapshotProvider`): the whole working tree (untracked files too, ignored
  ones not) committed to a private ref ``refs/ah/snapshots/<id>``. Trees are written through a
  private index per workspace (:class:`SnapshotRepo`), never the user's, so HEAD, the index,
  branches and the stash stay exactly as the agent left them. Cheap and deduplicated.
- ``copy``/``reflink`` (:class:`CopyProvider`): ``cp -a --reflink=auto`` into the store.
- ``btrfs``/``zfs``: native snapshots, only where the workspace lives on one (minimal).

Every provider (:mod:`actors.snapshot_git`, :mod:`actors.snapshot_dirs`; shared types in
:mod:`actors.snapshot_base`) can materialise a snapshot read-only (seek), branch it into a new writable
directory (session-branch), and read or list its files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .snapshot_base import (
    SNAPSHOT_REF_PREFIX,
    SnapshotError,
    SnapshotProvider,
    SnapshotRecord,
    discard,
)
from .snapshot_dirs import BtrfsProvider, CopyProvider, ZfsProvider
from .snapshot_git import GitSnapshotProvider, SnapshotRepo

__all__ = [
    "SNAPSHOT_REF_PREFIX",
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
    (always), ``reflink`` (``cp --reflink=always`` works beside it), ``btrfs``/``zfs`` (the file
    system, with its tool installed). Writes nothing inside ``path``.

    Blocking (a test copy and ``/proc`` read): call it through ``trio.to_thread.run_sync``.
    """
    caps = ["git"] if shutil.which("git") else []
    caps.append("copy")
    # Probed beside the workspace, never in it: the agent would see the probe's files come and go,
    # and a snapshot taken meanwhile would keep them.
    if _reflink_works(path.parent):
        caps.append("reflink")
    fstype = _fs_type(path if path.is_dir() else path.parent)
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
    pref = (preference or "auto").lower()
    if pref == "auto" and shutil.which("git"):
        return provider_named("git", store_root)  # the first choice needs no probing
    caps = detect_capabilities(ws_path)
    if pref == "auto":
        pref = next(p for p in ("git", "reflink", "copy") if p in caps)
    elif pref not in _PROVIDERS:
        raise ValueError(f"unknown snapshot provider {preference!r}; known: auto, {', '.join(_PROVIDERS)}")
    elif pref not in caps:
        raise ValueError(f"snapshot provider {pref!r} is not available for {ws_path}; "
                         f"available: {', '.join(caps)}")
    return provider_named(pref, store_root)
