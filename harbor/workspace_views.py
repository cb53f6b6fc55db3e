"""Workspace views: what a session changed, its files, diffs, tree, search, and its end-of-run summary.

Every client-supplied path goes through :func:`actors.paths.resolve_inside` (lexical checks plus
the resolved location) before anything is touched, and file bytes are read through
:func:`actors.paths.open_inside`, so nothing outside the workspace is ever read: not through
``..``, an absolute path, nor a symlink the agent planted. Diffs and the changed-file list come
from :mod:`actors.changes` (git, compared with the session's base: the worktree's base commit, the
snapshot a branched session started from, or the empty tree).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from actors.changes import FileChange, FileDiff, changed_files, file_diff, render_html, render_split
from actors.events import EventKind, iso_ts
from actors.paths import PathOutsideWorkspace, open_inside, resolve_inside
from actors.snapshots import SnapshotError
from actors.workspace import GitError, run_git
from harbor.api.problems import Problem
from harbor.store import models as m

if TYPE_CHECKING:
    from harbor.core import Harbor

log = logging.getLogger(__name__)

#: Largest file ``/content`` answers whole (use ``/preview`` for a part of a bigger one).
MAX_CONTENT_BYTES = 5 << 20
#: Entries a tree listing or a search walks before it stops and says ``truncated``.
MAX_WALK_ENTRIES = 200_000
#: Entries a tree answer holds at most.
MAX_TREE_NODES = 5_000
#: Files a multi-file diff covers at most.
MAX_DIFF_FILES = 200
#: ``full=true`` diffs: enough context lines to show every line of any file.
FULL_CONTEXT = 1_000_000
_HIDDEN = frozenset({".git"})


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso_ts(ts)


def _outside(exc: PathOutsideWorkspace) -> Problem:
    return Problem(400, f"the path is not inside the workspace: {exc}", errors={"path": [str(exc)]},
                   kind="path-outside-workspace")


def _no_file(path: str) -> Problem:
    return Problem(404, f"no file {path!r} in the workspace", kind="not-found")


def _git_failed(exc: Exception) -> Problem:
    return Problem(503, f"the workspace could not be read: {exc}", kind="workspace-unavailable")


def _is_binary(data: bytes) -> bool:
    return b"\x00" in data[:8000]


def _decode(data: bytes) -> tuple[str, str]:
    """``(text, encoding)``: UTF-8 text where it decodes, base64 otherwise."""
    if not _is_binary(data):
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(data).decode("ascii"), "base64"


def change_view(change: FileChange, stat_result: os.stat_result | None) -> dict[str, Any]:
    """One entry of ``GET /sessions/{id}/files``."""
    return {"path": change.path, "status": change.status, "change_type": change.status,
            "old_path": change.old_path, "lines_added": change.lines_added, "lines_removed": change.lines_removed,
            "binary": change.binary,
            "size_bytes": stat_result.st_size if stat_result is not None else None,
            "last_modified": _iso(stat_result.st_mtime) if stat_result is not None else None}


def diff_view(d: FileDiff, fmt: str, context: int, full: bool, content: str | None) -> dict[str, Any]:
    """One file's diff in the contract's shape, plus the rendering ``fmt`` asks for."""
    doc: dict[str, Any] = {
        "path": d.path, "old_path": d.old_path, "status": d.status, "binary": d.binary,
        "diff": d.diff, "lines_added": d.lines_added, "lines_removed": d.lines_removed,
        "context_lines": context, "full_file": full, "file_content": content, "format": fmt,
        "hunks": [{"old_start": h.old_start, "old_lines": h.old_lines, "new_start": h.new_start,
                   "new_lines": h.new_lines, "content": h.content} for h in d.hunks],
    }
    if fmt == "split":
        doc["rows"] = render_split(d)
    elif fmt == "html":
        doc["html"] = render_html(d)
    return doc


def summarize(changes: Iterable[FileChange]) -> dict[str, int]:
    """The session's ``changes`` statistic."""
    items = list(changes)
    return {"files_changed": len(items), "lines_added": sum(c.lines_added for c in items),
            "lines_removed": sum(c.lines_removed for c in items)}


# -- blocking helpers (worker threads) -------------------------------------------------------


def _lstat_inside(root: Path, rel: str) -> os.stat_result | None:
    try:
        return os.lstat(resolve_inside(root, rel)) if rel else None
    except (OSError, PathOutsideWorkspace):
        return None


def _stat_changes(root: Path, changes: list[FileChange]) -> list[os.stat_result | None]:
    # A path git reports may have gone (deleted) or been swapped for a symlink since: lstat only
    # what still resolves inside, never through a link leading out.
    return [None if c.status == "deleted" else _lstat_inside(root, c.path) for c in changes]


def _read_inside(root: Path, rel: str, limit: int) -> tuple[bytes, os.stat_result]:
    """Up to ``limit + 1`` bytes of a regular file under ``root`` (the extra byte shows truncation)."""
    fd = open_inside(root, rel)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(rel)
        if not stat.S_ISREG(st.st_mode):
            raise PermissionError(f"{rel} is not a regular file")
        chunks, remaining = [], limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def _node(real_root: Path, path: Path, st: os.stat_result, modified: set[str]) -> dict[str, Any]:
    rel = path.relative_to(real_root).as_posix() if path != real_root else ""
    is_link = stat.S_ISLNK(st.st_mode)
    is_dir = stat.S_ISDIR(st.st_mode)
    node: dict[str, Any] = {
        "path": rel, "name": path.name if rel else "", "type": "directory" if is_dir else "file",
        "size_bytes": None if is_dir else st.st_size, "last_modified": _iso(st.st_mtime),
        "is_modified": rel in modified if not is_dir else any(p.startswith(rel + "/") or not rel for p in modified),
        "children": [] if is_dir else None,
    }
    if is_link:
        node["symlink"] = True
    return node


def _tree(real_root: Path, start: Path, recursive: bool, modified_only: bool, modified: set[str]
          ) -> dict[str, Any]:
    """The directory ``start`` (already proven inside ``real_root``) as nested nodes. Symlinks are
    listed, never followed; ``.git`` is left out."""
    root_node = _node(real_root, start, os.lstat(start), modified)
    budget = {"walked": 0, "nodes": 0, "truncated": False}

    def fill(node: dict[str, Any], directory: Path, descend: bool) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name in _HIDDEN:
                continue
            budget["walked"] += 1
            if budget["walked"] > MAX_WALK_ENTRIES or budget["nodes"] >= MAX_TREE_NODES:
                budget["truncated"] = True
                return
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            child = _node(real_root, Path(entry.path), st, modified)
            if modified_only and not child["is_modified"]:
                continue
            budget["nodes"] += 1
            node["children"].append(child)
            if child["type"] == "directory" and descend:
                fill(child, Path(entry.path), recursive)
            elif child["type"] == "directory":
                child["children"] = None  # not listed (non-recursive)

    if root_node["type"] == "directory":
        fill(root_node, start, recursive)
    root_node["truncated"] = budget["truncated"]
    return root_node


def _search(real_root: Path, query: str, kind: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
    wildcard = any(c in query for c in "*?[")
    needle = query.lower()
    found: list[dict[str, Any]] = []
    walked = 0
    for dirpath, dirnames, filenames in os.walk(real_root):  # never follows symlinked directories
        dirnames[:] = sorted(d for d in dirnames if d not in _HIDDEN)
        files = sorted(f for f in filenames if f not in _HIDDEN)
        for name, is_dir in [*((d, True) for d in dirnames), *((f, False) for f in files)]:
            walked += 1
            if walked > MAX_WALK_ENTRIES:
                return found, True
            if (kind == "file" and is_dir) or (kind == "directory" and not is_dir):
                continue
            full = Path(dirpath) / name
            rel = full.relative_to(real_root).as_posix()
            hit = (fnmatch.fnmatch(name.lower(), needle) or fnmatch.fnmatch(rel.lower(), needle)) if wildcard \
                else needle in name.lower()
            if not hit:
                continue
            try:
                st = full.lstat()
            except OSError:
                continue
            found.append({"path": rel, "name": name, "type": "directory" if is_dir else "file",
                          "size_bytes": None if is_dir else st.st_size, "last_modified": _iso(st.st_mtime)})
            if len(found) >= limit:
                return found, True
    return found, False


def disk_usage(root: Path) -> tuple[int, int]:
    """``(files, bytes)`` under ``root`` (``.git`` left out, symlinks not followed). Blocking."""
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _HIDDEN]
        for name in filenames:
            if name in _HIDDEN:
                continue
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
                files += 1
            except OSError:
                pass
    return files, size


class WorkspaceViews:
    """Read-only views of session workspaces (the ``/sessions/{id}/files|diff|workspace`` routes)."""

    def __init__(self, harbor: Harbor) -> None:
        self.harbor = harbor

    # -- basics ------------------------------------------------------------------------------------

    @staticmethod
    def workspace(row: m.Session) -> Path | None:
        """The session's workspace directory, if it has one on disk."""
        if not row.workspace_path:
            return None
        path = Path(row.workspace_path)
        return path if path.is_dir() else None

    def require_workspace(self, row: m.Session) -> Path:
        ws = self.workspace(row)
        if ws is None:
            raise Problem(404, f"session {row.id} has no workspace (not provisioned yet, or removed)",
                          kind="no-workspace")
        return ws

    async def safe_path(self, ws: Path, rel: str) -> tuple[Path, str]:
        """``rel`` resolved inside ``ws``, and its canonical relative form (400 when it leaves it)."""

        def resolve() -> tuple[Path, str]:
            real = resolve_inside(ws, rel)
            root = ws.resolve()
            return real, (real.relative_to(root).as_posix() if real != root else "")

        try:
            return await trio.to_thread.run_sync(resolve)
        except PathOutsideWorkspace as exc:
            raise _outside(exc) from None
        except FileNotFoundError:
            raise _no_file(rel) from None

    async def changes(self, row: m.Session) -> list[FileChange]:
        """What changed since the session's base ([] before a workspace exists)."""
        ws = self.workspace(row)
        if ws is None:
            return []
        try:
            return await changed_files(ws, row.base_commit, store_root=self.harbor.snapshots.store_root(row.id))
        except (SnapshotError, GitError) as exc:
            raise _git_failed(exc) from None

    # -- the changed-file list and one file ----------------------------------------------------------

    async def list_changes(self, row: m.Session, status: str | None, pattern: str | None) -> dict[str, Any]:
        """``GET /sessions/{id}/files``: changed files, filtered by status (comma list) and glob."""
        changes = await self.changes(row)
        if status:
            wanted = {s.strip() for s in status.split(",") if s.strip()}
            changes = [c for c in changes if c.status in wanted]
        if pattern:
            prefix = pattern.rstrip("/") + "/"
            changes = [c for c in changes if fnmatch.fnmatchcase(c.path, pattern) or c.path.startswith(prefix)
                       or (c.old_path is not None and fnmatch.fnmatchcase(c.old_path, pattern))]
        ws = self.workspace(row)
        stats = await trio.to_thread.run_sync(_stat_changes, ws, changes) if ws else [None] * len(changes)
        items = [change_view(c, s) for c, s in zip(changes, stats, strict=True)]
        return {"items": items, "total": len(items), **summarize(changes)}

    async def file_info(self, row: m.Session, rel: str) -> dict[str, Any]:
        """``GET /sessions/{id}/files/{path}``: metadata, change status and edit history."""
        ws = self.require_workspace(row)
        _, rel_clean = await self.safe_path(ws, rel)
        changes = await self.changes(row)
        change = next((c for c in changes if rel_clean in (c.path, c.old_path)), None)
        st = await trio.to_thread.run_sync(_lstat_inside, ws, rel_clean)
        if st is None and change is None:
            raise _no_file(rel)
        status = "unchanged" if change is None else ("deleted" if change.path != rel_clean else change.status)
        history = await self.history(row.id, {rel_clean, *([change.path, change.old_path] if change else [])})
        is_dir = st is not None and stat.S_ISDIR(st.st_mode)
        return {"path": rel_clean, "type": "directory" if is_dir else "file", "exists": st is not None,
                "status": status, "is_modified": change is not None, "old_path": change.old_path if change else None,
                "lines_added": change.lines_added if change else 0,
                "lines_removed": change.lines_removed if change else 0,
                "binary": change.binary if change else False,
                "size_bytes": st.st_size if st is not None and not is_dir else None,
                "last_modified": _iso(st.st_mtime) if st is not None else None, "history": history}

    async def history(self, session_id: str, paths: set[str | None]) -> list[dict[str, Any]]:
        """The session's ``file_edit`` events for any of ``paths``, oldest first."""
        kinds = [EventKind.FILE_EDIT.value, EventKind.DIFF.value]
        rows = await self.harbor.journal.read(lambda: list(
            m.Event.select().where((m.Event.session_id == session_id) & (m.Event.kind.in_(kinds)))
            .order_by(m.Event.seq.desc()).limit(2000)))
        out = []
        for r in reversed(rows):
            data = json.loads(r.data)
            if (data.get("file_path") or data.get("path")) in paths:
                out.append({"seq": r.seq, "ts": iso_ts(r.ts), "type": r.kind,
                            "lines_added": data.get("lines_added"), "lines_removed": data.get("lines_removed"),
                            "description": data.get("description")})
        return out

    async def _read(self, ws: Path, rel: str, limit: int) -> tuple[bytes, os.stat_result]:
        try:
            return await trio.to_thread.run_sync(_read_inside, ws, rel, limit)
        except PathOutsideWorkspace as exc:
            raise _outside(exc) from None
        except IsADirectoryError:
            raise Problem(400, f"{rel!r} is a directory", errors={"path": ["is a directory"]}) from None
        except (FileNotFoundError, NotADirectoryError):
            raise _no_file(rel) from None
        except OSError as exc:
            raise Problem(400, f"{rel!r} cannot be read: {exc}", errors={"path": ["cannot be read"]}) from None

    async def content(self, row: m.Session, rel: str) -> dict[str, Any]:
        """``GET /sessions/{id}/files/{path}/content``: the whole file (UTF-8 or base64)."""
        ws = self.require_workspace(row)
        _, rel_clean = await self.safe_path(ws, rel)
        data, st = await self._read(ws, rel, MAX_CONTENT_BYTES)
        if len(data) > MAX_CONTENT_BYTES:
            raise Problem(413, f"{rel!r} is larger than {MAX_CONTENT_BYTES} bytes; use /preview",
                          kind="file-too-large")
        text, encoding = _decode(data)
        changed = {c.path for c in await self.changes(row)}
        return {"path": rel_clean, "content": text, "encoding": encoding, "binary": _is_binary(data),
                "size_bytes": st.st_size, "last_modified": _iso(st.st_mtime), "is_modified": rel_clean in changed}

    async def preview(self, row: m.Session, rel: str, max_lines: int, max_bytes: int) -> dict[str, Any]:
        """``GET /sessions/{id}/files/{path}/preview``: the first lines of a text file."""
        ws = self.require_workspace(row)
        _, rel_clean = await self.safe_path(ws, rel)
        data, st = await self._read(ws, rel, max_bytes)
        doc: dict[str, Any] = {"path": rel_clean, "size_bytes": st.st_size, "last_modified": _iso(st.st_mtime),
                               "max_lines": max_lines, "max_bytes": max_bytes}
        if _is_binary(data):
            return {**doc, "binary": True, "content": None, "encoding": None, "lines": 0, "truncated": False}
        truncated = len(data) > max_bytes
        text = data[:max_bytes].decode("utf-8", "replace")
        lines = text.splitlines(keepends=True)
        if len(lines) > max_lines:
            lines, truncated = lines[:max_lines], True
        return {**doc, "binary": False, "content": "".join(lines), "encoding": "utf-8", "lines": len(lines),
                "truncated": truncated}

    # -- diffs ------------------------------------------------------------------------------------

    async def _diff(self, row: m.Session, ws: Path, rel: str, context: int) -> FileDiff:
        try:
            return await file_diff(ws, row.base_commit, rel, store_root=self.harbor.snapshots.store_root(row.id),
                                   context=context)
        except PathOutsideWorkspace as exc:
            raise _outside(exc) from None
        except FileNotFoundError:
            raise _no_file(rel) from None
        except (SnapshotError, GitError) as exc:
            raise _git_failed(exc) from None

    async def _full_text(self, ws: Path, d: FileDiff) -> str | None:
        if d.binary or d.status == "deleted":
            return None
        try:
            data, _ = await trio.to_thread.run_sync(_read_inside, ws, d.path, MAX_CONTENT_BYTES)
        except (OSError, PathOutsideWorkspace):
            return None
        if len(data) > MAX_CONTENT_BYTES or _is_binary(data):
            return None
        return data.decode("utf-8", "replace")

    async def diff(self, row: m.Session, rel: str, *, context: int, full: bool, fmt: str) -> dict[str, Any]:
        """``GET /sessions/{id}/diff/{path}``: one file against the base (git's text, hunks, rendering)."""
        ws = self.require_workspace(row)
        await self.safe_path(ws, rel)
        d = await self._diff(row, ws, rel, FULL_CONTEXT if full else context)
        content = await self._full_text(ws, d) if full else None
        return diff_view(d, fmt, FULL_CONTEXT if full else context, full, content)

    async def diffs(self, row: m.Session, files: list[str] | None, *, context: int, fmt: str) -> dict[str, Any]:
        """``GET /sessions/{id}/diff``: several files (every changed file when ``files`` is empty)."""
        ws = self.workspace(row)
        if ws is None:
            return {"files": [], "total_lines_added": 0, "total_lines_removed": 0, "total": 0}
        if files:
            for rel in files:
                await self.safe_path(ws, rel)
            wanted = files
        else:
            wanted = [c.path for c in await self.changes(row)]
        truncated = len(wanted) > MAX_DIFF_FILES
        out = [diff_view(await self._diff(row, ws, rel, context), fmt, context, False, None)
               for rel in wanted[:MAX_DIFF_FILES]]
        return {"files": out, "total": len(out), "truncated": truncated,
                "total_lines_added": sum(f["lines_added"] for f in out),
                "total_lines_removed": sum(f["lines_removed"] for f in out)}

    # -- tree, search, info -------------------------------------------------------------------------

    async def tree(self, row: m.Session, rel: str, *, recursive: bool, modified_only: bool) -> dict[str, Any]:
        """``GET /sessions/{id}/workspace/files``: a directory as nested nodes."""
        ws = self.require_workspace(row)
        start, _ = await self.safe_path(ws, rel)
        if not await trio.to_thread.run_sync(start.exists):
            raise _no_file(rel)
        modified: set[str] = set()
        for c in await self.changes(row):
            modified.add(c.path)
        real_root = await trio.to_thread.run_sync(ws.resolve)
        return await trio.to_thread.run_sync(_tree, real_root, start, recursive, modified_only, modified)

    async def search(self, row: m.Session, query: str, kind: str, limit: int) -> dict[str, Any]:
        """``GET /sessions/{id}/workspace/search/files``: names containing ``query`` (or matching a glob)."""
        ws = self.require_workspace(row)
        real_root = await trio.to_thread.run_sync(ws.resolve)
        items, truncated = await trio.to_thread.run_sync(_search, real_root, query, kind, limit)
        return {"query": query, "items": items, "total": len(items), "truncated": truncated}

    async def info(self, row: m.Session) -> dict[str, Any]:
        """``GET /sessions/{id}/workspace/info``."""
        record = await self.harbor.journal.read(lambda: m.Workspace.get_or_none(m.Workspace.session_id == row.id))
        snapshots = await self.harbor.journal.read(lambda: m.Snapshot.select().where(
            m.Snapshot.session_id == row.id).count())
        latest = await self.harbor.snapshots.latest(row.id)
        ws = self.workspace(row)
        doc: dict[str, Any] = {
            "sessionId": row.id, "path": row.workspace_path, "exists": ws is not None,
            "kind": record.kind if record is not None else ("branch" if row.from_snapshot_id else None),
            "workspaceId": record.id if record is not None else None,
            "baseCommit": row.base_commit, "branch": None, "repo": row.repo,
            "parentSessionId": row.parent_session_id, "fromSnapshotId": row.from_snapshot_id,
            "snapshotCount": snapshots, "latestSnapshotId": latest.id if latest is not None else None,
            "snapshotProvider": latest.provider if latest is not None else None,
            "fileCount": None, "sizeBytes": None, "changes": row.changes,
            "createdAt": _iso(record.created_at) if record is not None else None,
        }
        if ws is not None:
            doc["fileCount"], doc["sizeBytes"] = await trio.to_thread.run_sync(disk_usage, ws)
            head = await run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], cwd=ws,
                                 env={"GIT_CEILING_DIRECTORIES": str(ws.parent)}, check=False)
            doc["branch"] = head.stdout.decode().strip() or None
            doc["changes"] = summarize(await self.changes(row))
        return doc
