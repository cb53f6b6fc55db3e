"""Path safety for workspace views: turn a client-supplied relative path into one inside a root.

The HTTP layer URL-decodes a path once and hands the result here. What arrives is taken literally
and never decoded again: ``..%2fetc`` is a harmless file name, while ``%2e%2e/etc`` has already
become ``../etc`` and is refused. Every rule is about the *resolved* location, so a symlink inside
the workspace that points elsewhere is refused too, whichever component it is.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["PathOutsideWorkspace", "normalize_rel", "open_inside", "resolve_inside"]


class PathOutsideWorkspace(ValueError):
    """A requested path leaves (or could leave) the root it must stay inside."""


def normalize_rel(rel: str) -> str:
    """Check ``rel`` lexically and return it in canonical form (``a/b``; ``""`` for the root).

    Touches no file system, so it also serves for paths inside snapshots that exist only in git.

    Raises:
        PathOutsideWorkspace: ``rel`` is absolute, contains a NUL byte or a ``..`` component.
    """
    if "\x00" in rel:
        raise PathOutsideWorkspace("path contains a NUL byte")
    if rel.startswith("/"):
        raise PathOutsideWorkspace(f"absolute path not allowed: {rel!r}")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    # Any ``..`` is refused, even one that would stay inside (``a/../b``): a single clear rule
    # is easier to trust than an accounting of how far up each one goes.
    if ".." in parts:
        raise PathOutsideWorkspace(f"path leaves the workspace: {rel!r}")
    return "/".join(parts)


def resolve_inside(root: Path, rel: str) -> Path:
    """Resolve ``rel`` under ``root``, following symlinks, and prove the result stays inside.

    The returned path is fully resolved (no symlink components at the time of the call). It need not
    exist. Blocking (a few ``lstat``/``readlink`` calls): call it from a worker thread when the
    root is on a slow file system.

    Args:
        root: the directory everything must stay inside (resolved itself first).
        rel: the client's path, already URL-decoded once.

    Returns:
        The resolved absolute path, ``root`` itself for ``""``.

    Raises:
        PathOutsideWorkspace: absolute, NUL byte, ``..`` component, or a symlink anywhere along the
            way resolves outside ``root``.
        FileNotFoundError: ``root`` does not exist.
    """
    clean = normalize_rel(rel)
    real_root = root.resolve(strict=True)
    real = Path(os.path.realpath(real_root / clean)) if clean else real_root
    if real != real_root and real_root not in real.parents:
        raise PathOutsideWorkspace(f"path resolves outside the workspace: {rel!r}")
    return real


def open_inside(root: Path, rel: str, flags: int = os.O_RDONLY) -> int:
    """Open ``rel`` under ``root`` without ever following a symlink that was not checked.

    :func:`resolve_inside` proves where a path points *now*; an agent could swap a directory for a
    symlink before the caller opens it. This walks the resolved path one component at a time with
    ``O_NOFOLLOW`` relative to the previous directory, so a swap makes the open fail instead of
    escaping. Blocking.

    Returns:
        An OS file descriptor the caller must close.

    Raises:
        PathOutsideWorkspace: as for :func:`resolve_inside`, or a component became a symlink.
        OSError: the file does not exist or cannot be opened.
    """
    real_root = root.resolve(strict=True)
    parts = resolve_inside(real_root, rel).relative_to(real_root).parts
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(real_root, dir_flags if parts else flags | os.O_CLOEXEC)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        try:
            nxt = os.open(part, (flags | os.O_NOFOLLOW | os.O_CLOEXEC) if last else dir_flags, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PathOutsideWorkspace(f"path changed while opening: {rel!r}") from exc
            raise
        finally:
            os.close(fd)
        fd = nxt
    return fd
