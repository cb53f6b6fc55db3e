"""What changed in a workspace since its base: the changed-file list, per-file diffs, and renderings.

Git computes everything: the working tree is written as a tree through the workspace's private
index (:class:`~actors.snapshots.SnapshotRepo`, the same one snapshots use, so only changed files
are rehashed) and compared with the base by ``git diff --find-renames``. Results therefore agree
with ``git diff`` byte for byte; no diff algorithm lives here.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .paths import normalize_rel
from .snapshots import SnapshotError, SnapshotRepo

__all__ = ["FileChange", "FileDiff", "Hunk", "changed_files", "file_diff", "render_html", "render_split"]

ChangeStatus = Literal["added", "modified", "deleted", "renamed"]

# Porcelain ``git diff`` (what users compare with), minus whatever user configuration could make its
# output unparseable or run other programs: colour, external diff drivers, textconv, prefixes.
_DIFF = ["diff", "--no-color", "--no-ext-diff", "--no-textconv", "--find-renames",
         "--src-prefix=a/", "--dst-prefix=b/"]
_STATUS: dict[str, ChangeStatus] = {"A": "added", "C": "added", "D": "deleted", "M": "modified",
                                    "T": "modified", "R": "renamed"}
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class FileChange:
    """One changed file. ``old_path`` is set for renames; binary files count no lines."""

    path: str
    status: ChangeStatus
    old_path: str | None = None
    lines_added: int = 0
    lines_removed: int = 0
    binary: bool = False


@dataclass
class Hunk:
    """One ``@@`` section; ``content`` is its text, starting with the ``@@`` line."""

    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    content: str


@dataclass
class FileDiff:
    """A file's diff against the base.

    ``status`` is a :data:`ChangeStatus`, or ``"unchanged"`` for a file that exists but did not
    change. ``diff`` is exactly ``git diff``'s text for the file (header included), ``""`` for
    binary and unchanged files.
    """

    path: str
    status: str
    old_path: str | None = None
    binary: bool = False
    lines_added: int = 0
    lines_removed: int = 0
    diff: str = ""
    hunks: list[Hunk] = field(default_factory=list)


async def _trees(ws: Path, base: str | None, store_root: Path) -> tuple[SnapshotRepo, str, str]:
    repo = await SnapshotRepo.open(ws, store_root)
    if base is None:
        base_tree = (await repo.git(["hash-object", "-t", "tree", "-w", "--stdin"])).stdout.decode().strip()
    else:
        resolved = await repo.resolve(f"{base}^{{tree}}")
        if resolved is None:
            raise SnapshotError(f"base {base!r} not found in {repo.git_dir}")
        base_tree = resolved
    return repo, base_tree, await repo.write_tree()


def _split_z(out: bytes) -> list[str]:
    return out.decode("utf-8", "surrogateescape").split("\x00")


async def _changes(repo: SnapshotRepo, base_tree: str, tree: str) -> list[FileChange]:
    status = _split_z((await repo.git([*_DIFF, "--name-status", "-z", base_tree, tree])).stdout)
    changes: dict[str, FileChange] = {}
    i = 0
    while i < len(status) - 1:
        code = status[i]
        if code[:1] in ("R", "C"):
            old, new = status[i + 1], status[i + 2]
            i += 3
        else:
            old, new = None, status[i + 1]
            i += 2
        kind = _STATUS.get(code[:1], "modified")
        changes[new] = FileChange(new, kind, old if kind == "renamed" else None)
    numstat = _split_z((await repo.git([*_DIFF, "--numstat", "-z", base_tree, tree])).stdout)
    i = 0
    while i < len(numstat) - 1:
        added, removed, path = numstat[i].split("\t", 2)
        if path:
            i += 1
        else:  # a rename: the old and new paths follow as their own fields
            path = numstat[i + 2]
            i += 3
        change = changes.get(path)
        if change is not None:
            change.binary = added == "-"
            change.lines_added = 0 if change.binary else int(added)
            change.lines_removed = 0 if change.binary else int(removed)
    return sorted(changes.values(), key=lambda c: c.path)


async def changed_files(ws: Path, base: str | None, *, store_root: Path) -> list[FileChange]:
    """Files that differ between ``base`` and the working tree of ``ws`` now, renames detected.

    Untracked files count (as added); ignored files do not.

    Args:
        ws: the workspace.
        base: a commit or tree in the workspace's snapshot repository (a worktree's base commit, a
            snapshot's ref); ``None`` compares with the empty tree (everything is added).
        store_root: the git snapshot store (where the workspace's private index lives).

    Returns:
        Changes sorted by path.

    Raises:
        SnapshotError: ``base`` does not exist, or git failed.

    A checkpoint; git runs as a child process.
    """
    repo, base_tree, tree = await _trees(ws, base, store_root)
    return await _changes(repo, base_tree, tree)


async def file_diff(ws: Path, base: str | None, path: str, *, store_root: Path,
                    context: int = 3) -> FileDiff:
    """The diff of one file between ``base`` and the working tree (see :func:`changed_files`).

    ``path`` may name either side of a rename. The text is ``git diff -U<context>`` for the file
    (both paths of a rename).

    Raises:
        PathOutsideWorkspace: ``path`` is absolute or has ``..``.
        FileNotFoundError: the file exists neither in the base nor in the working tree.
        ValueError: negative ``context``.
        SnapshotError: bad ``base`` or git failed.
    """
    if context < 0:
        raise ValueError("context must be >= 0")
    rel = normalize_rel(path)
    repo, base_tree, tree = await _trees(ws, base, store_root)
    change = next((c for c in await _changes(repo, base_tree, tree) if rel in (c.path, c.old_path)), None)
    if change is None:
        exists = await repo.git(["cat-file", "-e", f"{tree}:{rel}"], check=False)
        if not rel or exists.returncode != 0:
            raise FileNotFoundError(path)
        return FileDiff(path=rel, status="unchanged")
    result = FileDiff(path=change.path, status=change.status, old_path=change.old_path, binary=change.binary,
                      lines_added=change.lines_added, lines_removed=change.lines_removed)
    if change.binary:
        return result
    paths = [change.old_path, change.path] if change.old_path else [change.path]
    proc = await repo.git([*_DIFF, f"-U{context}", base_tree, tree, "--", *paths],
                          env={"GIT_LITERAL_PATHSPECS": "1"})
    result.diff = proc.stdout.decode("utf-8", "replace")
    result.hunks = _hunks(result.diff)
    return result


def _lines(text: str) -> list[str]:
    # "\n" only: str.splitlines() would also split at "\r", "\x0c" and others, which are ordinary
    # content inside a diff line.
    return text.removesuffix("\n").split("\n") if text else []


def _hunks(diff: str) -> list[Hunk]:
    hunks: list[Hunk] = []
    body: list[str] = []
    for line in _lines(diff):
        m = _HUNK.match(line)
        if m:
            if hunks:
                hunks[-1].content = "\n".join(body) + "\n"
            body = [line]
            hunks.append(Hunk(int(m[1]), int(m[2] or 1), int(m[3]), int(m[4] or 1), ""))
        elif hunks:
            body.append(line)
    if hunks:
        hunks[-1].content = "\n".join(body) + "\n"
    return hunks


def _row(kind: str, old: tuple[int, str] | None = None, new: tuple[int, str] | None = None,
         text: str | None = None) -> dict[str, Any]:
    return {"type": kind, "old_line": old[0] if old else None, "old_text": old[1] if old else None,
            "new_line": new[0] if new else None, "new_text": new[1] if new else None, "text": text}


def _flush(rows: list[dict[str, Any]], removed: list[tuple[int, str]], added: list[tuple[int, str]]) -> None:
    """Pair a run of removed lines with the run of added lines after it, row by row."""
    for i in range(max(len(removed), len(added))):
        old = removed[i] if i < len(removed) else None
        new = added[i] if i < len(added) else None
        rows.append(_row("change" if old and new else "delete" if old else "add", old, new))
    removed.clear()
    added.clear()


def render_split(d: FileDiff) -> list[dict[str, Any]]:
    """Side-by-side rows for a diff.

    Each row has ``type`` — ``hunk`` (``text`` is the ``@@`` line), ``context``, ``change`` (a removed
    line beside the added line replacing it), ``delete``, ``add`` or ``note`` (``\\ No newline at end
    of file``) — and ``old_line``/``old_text``/``new_line``/``new_text`` (``None`` where a side is
    empty). Binary and unchanged files have no rows. Not a checkpoint.
    """
    rows: list[dict[str, Any]] = []
    for hunk in d.hunks:
        header, *body = _lines(hunk.content)
        rows.append(_row("hunk", text=header))
        old_no, new_no = hunk.old_start, hunk.new_start
        removed: list[tuple[int, str]] = []
        added: list[tuple[int, str]] = []

        for line in body:
            if line.startswith("-"):
                removed.append((old_no, line[1:]))
                old_no += 1
            elif line.startswith("+"):
                added.append((new_no, line[1:]))
                new_no += 1
            elif line.startswith("\\"):
                _flush(rows, removed, added)
                rows.append(_row("note", text=line))
            else:
                _flush(rows, removed, added)
                rows.append(_row("context", (old_no, line[1:]), (new_no, line[1:])))
                old_no += 1
                new_no += 1
        _flush(rows, removed, added)
    return rows


def render_html(d: FileDiff) -> str:
    """A side-by-side ``<table class="diff diff-split">``; all text escaped. Not a checkpoint.

    Rows carry ``diff-<type>`` classes (see :func:`render_split`); cells ``diff-ln`` (line numbers),
    ``diff-old``/``diff-new``, plus ``diff-removed``/``diff-added``/``diff-empty`` on changed sides.
    """
    esc = html.escape
    out = [f'<table class="diff diff-split" data-path="{esc(d.path)}" data-status="{esc(d.status)}">']
    if d.binary:
        out.append('<tr class="diff-binary"><td colspan="4">Binary file not shown</td></tr>')
    for r in render_split(d):
        if r["type"] in ("hunk", "note"):
            out.append(f'<tr class="diff-{r["type"]}"><td colspan="4">{esc(r["text"])}</td></tr>')
            continue
        cells = []
        for side, mark in (("old", "diff-removed"), ("new", "diff-added")):
            number, text = r[f"{side}_line"], r[f"{side}_text"]
            state = "" if r["type"] == "context" else f" {mark}" if text is not None else " diff-empty"
            cells.append(f'<td class="diff-ln">{"" if number is None else number}</td>'
                         f'<td class="diff-{side}{state}">{"" if text is None else esc(text)}</td>')
        out.append(f'<tr class="diff-{r["type"]}">{"".join(cells)}</tr>')
    out.append("</table>")
    return "\n".join(out)
