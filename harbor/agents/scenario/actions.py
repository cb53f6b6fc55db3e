"""What the scenario agent really does to its workspace: seed it, edit files, commit.

Every path is relative to the workspace and must stay inside it (symlinks included): a scenario
may come inline from the API, and its file steps never reach outside the session's workspace.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_HASH_COMMENT = frozenset({".py", ".sh", ".bash", ".rb", ".pl", ".r", ".yaml", ".yml", ".toml", ".cfg",
                           ".ini", ".conf", ".mk", ".cmake", ".dockerfile"})
_SLASH_COMMENT = frozenset({".js", ".jsx", ".ts", ".tsx", ".mjs", ".c", ".h", ".cc", ".cpp", ".hpp", ".go",
                            ".rs", ".java", ".kt", ".swift", ".cs", ".scala", ".dart", ".php"})
_DASH_COMMENT = frozenset({".sql", ".lua", ".hs", ".elm"})
_GIT_IDENTITY = {"GIT_AUTHOR_NAME": "Harbor Scenario", "GIT_AUTHOR_EMAIL": "scenario@agent-harbor.invalid",
                 "GIT_COMMITTER_NAME": "Harbor Scenario",
                 "GIT_COMMITTER_EMAIL": "scenario@agent-harbor.invalid"}


class ActionError(Exception):
    """A file step that cannot be carried out (the path leaves the workspace, text not found...)."""


def inside(workspace: Path, rel: str) -> Path:
    """``workspace / rel``, refused if it resolves (through symlinks) outside ``workspace``.

    ``workspace`` must already be resolved.
    """
    path = (workspace / rel).resolve()
    if path != workspace and workspace not in path.parents:
        raise ActionError(f"{rel} leaves the workspace")
    return path


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ActionError(f"cannot read {path.name}: {exc.strerror or exc}") from None


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ActionError(f"cannot write {path.name}: {exc.strerror or exc}") from None


def _comment(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _HASH_COMMENT:
        return "# "
    if suffix in _SLASH_COMMENT:
        return "// "
    return "-- " if suffix in _DASH_COMMENT else ""


def change_lines(workspace: Path, rel: str, added: int, removed: int) -> tuple[int, int]:
    """Remove the last ``removed`` lines of a file, then append ``added`` new ones.

    Creates the file (and its directories) when missing.

    Returns:
        ``(lines_added, lines_removed)`` as really done (a short file loses fewer lines).

    Raises:
        ActionError: the path leaves the workspace or the file cannot be read or written.
    """
    path = inside(workspace, rel)
    lines = _read(path).splitlines(keepends=True)
    removed = min(removed, len(lines))
    if removed:
        del lines[len(lines) - removed:]
    if added and lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    prefix, start = _comment(path), len(lines)
    lines.extend(f"{prefix}line {start + i + 1}, written by the harbor scenario agent\n"
                 for i in range(added))
    _write(path, "".join(lines))
    return added, removed


def write_file(workspace: Path, rel: str, content: str) -> tuple[int, int]:
    """Replace a file's content (creating it). Returns ``(lines_added, lines_removed)``."""
    path = inside(workspace, rel)
    old = _read(path)
    _write(path, content)
    return len(content.splitlines()), len(old.splitlines())


def edit_file(workspace: Path, rel: str, old: str, new: str, replace_all: bool) -> tuple[int, int]:
    """Replace ``old`` by ``new`` in a file: the first occurrence, or all with ``replace_all``.

    Returns:
        ``(lines_added, lines_removed)``, counting the replaced fragments' lines.

    Raises:
        ActionError: the file does not exist or does not contain ``old``.
    """
    path = inside(workspace, rel)
    if not path.is_file():
        raise ActionError(f"{rel} does not exist")
    text = _read(path)
    count = text.count(old)
    if count == 0:
        raise ActionError(f"the text to replace was not found in {rel}")
    n = count if replace_all else 1
    _write(path, text.replace(old, new, n))
    return n * len(new.splitlines()), n * len(old.splitlines())


def _git(workspace: Path, *args: str) -> None:
    env = {**os.environ, **_GIT_IDENTITY}
    subprocess.run(["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
                   cwd=workspace, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True,
                   timeout=60)


def seed(workspace: Path, repo: dict[str, Any], base_dir: Path | None) -> list[str]:
    """Prepare the workspace as ``repo`` asks: copy ``dir``, write ``files``, ``git init`` + commit.

    The repository is created (with an initial commit of everything seeded) only when ``init`` is
    set and the workspace is not already the top of a git repository.

    Returns:
        Warnings worth a log line (e.g. git missing); the timeline still plays.

    Raises:
        ActionError: a seed file cannot be written.
    """
    warnings = []
    if repo["dir"]:
        source = (base_dir / repo["dir"]) if base_dir is not None else None
        if source is not None and source.is_dir():
            import shutil  # only scenarios that seed from a folder pay for it

            shutil.copytree(source, workspace, dirs_exist_ok=True)
        else:
            warnings.append(f"repo.dir {repo['dir']!r} not found next to the scenario; skipped")
    for rel, data in repo["files"]:
        path = inside(workspace, rel)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            raise ActionError(f"cannot write {rel}: {exc.strerror or exc}") from None
    if repo["init"] and not (workspace / ".git").exists():
        try:
            _git(workspace, "init", "-q", *(["-b", repo["branch"]] if repo["branch"] else []))
            _git(workspace, "add", "-A")
            _git(workspace, "commit", "-q", "--no-verify", "--allow-empty", "-m",
                 "Initial commit (scenario seed)")
        except FileNotFoundError:
            warnings.append("git is not installed; the workspace was not made a repository")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            detail = exc.stderr.decode("utf-8", "replace").strip() if isinstance(exc.stderr, bytes) else ""
            warnings.append(f"git failed to seed the repository: {detail or exc}")
    return warnings
