"""Workspace provisioning: a session's directory, as a git worktree of a cached clone or an empty dir.

Clones are cached per repository URL under one root (:class:`RepoCache`): each is a bare repository
whose remote branches live under ``refs/remotes/origin/*``, so session branches (``ah/<name>``)
and snapshot refs never collide with what a fetch writes. A ``git`` workspace is a worktree of
that clone; ``none`` and ``upload`` workspaces are plain directories (optionally a copy of a
template, e.g. the uploaded files).

This module also owns the one way the package runs git (:func:`run_git`): never interactive, never
steered by ``GIT_DIR``-style variables inherited from whoever started the daemon.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import trio

__all__ = [
    "GitError",
    "ProvisionError",
    "RepoCache",
    "RepoRequest",
    "Workspace",
    "add_worktree",
    "git_env",
    "provision",
    "remove",
    "remove_tree",
    "run_git",
    "worktree_at",
]

logger = logging.getLogger(__name__)

# Variables that would point git at another repository, index or object store than the one a
# command names explicitly.
_REPO_VARIABLES = frozenset({
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_PREFIX", "GIT_CEILING_DIRECTORIES",
    "GIT_QUARANTINE_PATH", "GIT_LITERAL_PATHSPECS", "GIT_GLOB_PATHSPECS", "GIT_ICASE_PATHSPECS",
})
_STDERR_LIMIT = 4000


class GitError(Exception):
    """A git command failed; ``str()`` is git's own stderr (trimmed)."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        self.git_args = args
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(stderr or f"git {' '.join(args[:3])} exited with status {returncode}")


class ProvisionError(Exception):
    """A workspace could not be provisioned; the message is git's stderr or a plain reason."""


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every git command runs with: inherited, minus repository overrides, plus
    settings that make any credential or host-key question fail at once instead of waiting."""
    env = {k: v for k, v in os.environ.items() if k not in _REPO_VARIABLES}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="true",
        SSH_ASKPASS="true",
        GCM_INTERACTIVE="never",
        GIT_AUTHOR_NAME="Agent Harbor",
        GIT_AUTHOR_EMAIL="harbor@localhost",
        GIT_COMMITTER_NAME="Agent Harbor",
        GIT_COMMITTER_EMAIL="harbor@localhost",
    )
    # GIT_SSH (a program) loses to GIT_SSH_COMMAND; only add BatchMode where it does not override it.
    if "GIT_SSH" not in env or "GIT_SSH_COMMAND" in env:
        env["GIT_SSH_COMMAND"] = env.get("GIT_SSH_COMMAND", "ssh") + " -o BatchMode=yes"
    if extra:
        env.update(extra)
    return env


def _trim(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return text if len(text) <= _STDERR_LIMIT else "…" + text[-_STDERR_LIMIT:]


async def run_git(
    args: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes = b"",
    check: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git *args`` as a child process without blocking the trio loop.

    Args:
        args: arguments after ``git``.
        cwd: working directory.
        env: extra variables on top of :func:`git_env`.
        stdin: bytes fed to git (empty: git never waits on a terminal).
        check: raise :class:`GitError` on a non-zero exit.
        timeout: seconds before the command is killed and :class:`GitError` raised; ``None`` for
            local commands, which end on their own (the caller's cancel scopes still apply).

    Returns:
        The completed process, stdout and stderr captured as bytes.

    Raises:
        GitError: non-zero exit (with ``check``) or timeout.

    A checkpoint; on cancellation git is killed.
    """
    try:
        with trio.fail_after(timeout if timeout is not None else float("inf")):
            proc = await trio.run_process(
                ["git", *args], stdin=stdin, capture_stdout=True, capture_stderr=True, check=False,
                cwd=cwd, env=git_env(env),
            )
    except trio.TooSlowError:
        raise GitError(args, -1, f"git {args[0] if args else ''} timed out after {timeout:g} s") from None
    if check and proc.returncode != 0:
        raise GitError(args, proc.returncode, _trim(proc.stderr))
    return proc


def remove_tree(path: Path) -> None:
    """Delete ``path`` recursively, read-only entries included; nothing if it is missing. Blocking."""

    def make_writable_and_retry(func, failed, _exc):  # type: ignore[no-untyped-def]
        parent = os.path.dirname(failed)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        if not os.path.islink(failed) and os.path.isdir(failed):
            os.chmod(failed, os.stat(failed).st_mode | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
        func(failed)

    if os.path.islink(path) or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=make_writable_and_retry)


@dataclass(frozen=True)
class RepoRequest:
    """What a task asks for: ``mode`` is ``git``, ``none`` or ``upload``."""

    mode: str
    url: str | None = None
    branch: str | None = None
    commit: str | None = None


@dataclass(frozen=True)
class Workspace:
    """A provisioned workspace.

    Attributes:
        path: the directory the agent works in.
        kind: ``worktree`` (a git worktree of ``repo_cache``) or ``empty`` (a plain directory).
        repo_cache: the cached clone the worktree belongs to.
        base_commit: the commit the worktree was checked out at (the base for diffs).
        branch: the branch checked out in the worktree (``ah/<dir name>``), ``None`` if detached.
    """

    path: Path
    kind: str
    repo_cache: Path | None = None
    base_commit: str | None = None
    branch: str | None = None


def _normalize_url(url: str) -> str:
    url = url.strip()
    if not url:
        raise ProvisionError("repo.url is empty")
    if url.startswith("-"):
        raise ProvisionError(f"repo.url must not start with '-': {url!r}")
    if "://" in url or re.match(r"^[^/]+:", url):  # a URL, or scp-like ``host:path``
        return url
    return os.path.abspath(os.path.expanduser(url))


def _check_rev(name: str, value: str | None) -> None:
    if value is not None and (not value or value.startswith("-") or "\x00" in value):
        raise ProvisionError(f"repo.{name} is not a valid git revision: {value!r}")


class RepoCache:
    """One cached clone per repository URL under ``root``, fetched when it lacks what is asked.

    A clone is a bare repository named ``<readable name>-<hash of the URL>``; a fetch brings every
    branch into ``refs/remotes/origin/*`` and every tag. Each URL has its own :class:`trio.Lock`,
    so concurrent callers never clone or fetch the same repository twice at once.

    Args:
        root: directory holding the clones (created on demand).
        refresh_after: a clone whose last fetch is older than this (seconds) is fetched again when a
            branch (or the default branch) is asked for; ``None`` fetches only for what is missing.
            Commits are immutable, so asking for one already present never fetches.
        network_timeout: deadline (seconds) for each clone or fetch.
    """

    def __init__(self, root: Path, *, refresh_after: float | None = 60.0,
                 network_timeout: float = 600.0) -> None:
        self.root = root.absolute()
        self.refresh_after = refresh_after
        self.network_timeout = network_timeout
        self.clone_count = 0
        self.fetch_count = 0
        self._locks: dict[str, trio.Lock] = {}

    def path_for(self, url: str) -> Path:
        """Where the clone of ``url`` lives (whether or not it exists yet). Not a checkpoint."""
        url = _normalize_url(url)
        readable = re.sub(r"\.git$", "", url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
        readable = re.sub(r"[^A-Za-z0-9._-]+", "-", readable).strip(".-")[:40] or "repo"
        return self.root / f"{readable}-{hashlib.sha256(url.encode()).hexdigest()[:16]}"

    def owns(self, repo: Path) -> bool:
        """Whether ``repo`` is one of this cache's clones (anything under its root). Not a checkpoint."""
        return repo.resolve().is_relative_to(self.root.resolve())

    def _lock(self, url: str) -> trio.Lock:
        return self._locks.setdefault(_normalize_url(url), trio.Lock())

    async def ensure(self, url: str, *, branch: str | None = None, commit: str | None = None) -> Path:
        """Make sure the clone of ``url`` exists and holds ``commit`` (or ``branch``, or the default
        branch); clone or fetch as needed.

        Returns:
            The clone's path (a bare repository).

        Raises:
            ProvisionError: the clone or a needed fetch failed (git's message), or the branch or
                commit does not exist upstream.

        A checkpoint; cancelling a clone leaves no half-made cache behind.
        """
        _check_rev("branch", branch)
        _check_rev("commit", commit)
        async with self._lock(url):
            return await self._ensure_locked(url, branch, commit)

    async def _ensure_locked(self, url: str, branch: str | None, commit: str | None) -> Path:
        url = _normalize_url(url)
        repo = self.path_for(url)
        if not await trio.to_thread.run_sync(repo.is_dir):
            await self._clone(url, repo)
        elif commit is not None:
            if not await _has(repo, f"{commit}^{{commit}}"):
                await self._fetch(repo, required=True)
        else:
            present = await _has(repo, _branch_ref(branch))
            if not present or await self._stale(repo):
                await self._fetch(repo, required=not present)
        if commit is not None and not await _has(repo, f"{commit}^{{commit}}"):
            # Not on any branch or tag (e.g. a pull-request head): many servers serve it by id.
            await run_git(["--git-dir", str(repo), "fetch", "--quiet", "origin", commit],
                          check=False, timeout=self.network_timeout)
            if not await _has(repo, f"{commit}^{{commit}}"):
                raise ProvisionError(f"commit {commit!r} not found in {url}")
        if commit is None and not await _has(repo, _branch_ref(branch)):
            if branch is None:
                raise ProvisionError(f"{url} has no default branch; name a branch or a commit")
            raise ProvisionError(f"branch {branch!r} not found in {url}")
        return repo

    async def _clone(self, url: str, repo: Path) -> None:
        tmp = repo.with_name(f"{repo.name}.tmp-{secrets.token_hex(4)}")

        def prepare() -> None:
            repo.parent.mkdir(parents=True, exist_ok=True)
            for stale in repo.parent.glob(f"{repo.name}.tmp-*"):  # left by a cancelled clone
                remove_tree(stale)

        await trio.to_thread.run_sync(prepare)
        self.clone_count += 1
        try:
            await run_git(["init", "--quiet", "--bare", str(tmp)])
            await run_git(["--git-dir", str(tmp), "remote", "add", "origin", url])
            await run_git(["--git-dir", str(tmp), "fetch", "--quiet", "--tags", "origin"],
                          timeout=self.network_timeout)
            await run_git(["--git-dir", str(tmp), "remote", "set-head", "origin", "--auto"],
                          check=False, timeout=self.network_timeout)
            await trio.to_thread.run_sync(os.rename, tmp, repo)
        except GitError as exc:
            await trio.to_thread.run_sync(remove_tree, tmp)
            raise ProvisionError(str(exc)) from exc
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(remove_tree, tmp)
            raise

    async def _fetch(self, repo: Path, *, required: bool) -> None:
        self.fetch_count += 1
        try:
            await run_git(["--git-dir", str(repo), "fetch", "--quiet", "--prune", "--tags", "origin"],
                          timeout=self.network_timeout)
        except GitError as exc:
            if required:
                raise ProvisionError(str(exc)) from exc
            logger.warning("fetch of %s failed; using the cached clone: %s", repo, exc)
            return
        if not await _has(repo, "refs/remotes/origin/HEAD"):
            await run_git(["--git-dir", str(repo), "remote", "set-head", "origin", "--auto"],
                          check=False, timeout=self.network_timeout)

    async def _stale(self, repo: Path) -> bool:
        if self.refresh_after is None:
            return False
        try:
            fetched = (await trio.to_thread.run_sync(os.stat, repo / "FETCH_HEAD")).st_mtime
        except FileNotFoundError:
            return True
        return time.time() - fetched > self.refresh_after

    async def resolve(self, url: str, *, branch: str | None = None, commit: str | None = None) -> str:
        """The commit id ``commit``/``branch``/the default branch names in the clone (after
        :meth:`ensure`).

        Raises:
            ProvisionError: it does not resolve.
        """
        repo = self.path_for(url)
        rev = f"{commit}^{{commit}}" if commit is not None else f"{_branch_ref(branch)}^{{commit}}"
        proc = await run_git(["--git-dir", str(repo), "rev-parse", "--verify", "--quiet", rev], check=False)
        if proc.returncode != 0:
            raise ProvisionError(f"{commit or branch or 'the default branch'} not found in {url}")
        return proc.stdout.decode().strip()

    async def branches(self, url: str) -> list[tuple[str, str, bool]]:
        """The repository's branches as ``(name, last commit id, is_default)``, sorted by name.

        Raises:
            ProvisionError: the repository cannot be cloned or fetched.
        """
        repo = await self.ensure(url)
        proc = await run_git(["--git-dir", str(repo), "for-each-ref", "--format=%(refname)%00%(objectname)",
                              "refs/remotes/origin/"])
        head = await run_git(["--git-dir", str(repo), "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"],
                             check=False)
        default = head.stdout.decode().strip()
        result = []
        for line in proc.stdout.decode().splitlines():
            ref, sha = line.split("\x00")
            if ref != "refs/remotes/origin/HEAD":
                result.append((ref.removeprefix("refs/remotes/origin/"), sha, ref == default))
        return sorted(result)

    async def files(self, url: str, ref: str | None = None) -> list[str]:
        """Paths of the files at ``ref`` (a branch name or any revision; default branch if ``None``).

        Raises:
            ProvisionError: the repository cannot be cloned, or ``ref`` does not exist upstream.
        """
        _check_rev("ref", ref)
        async with self._lock(url):
            repo = await self._ensure_locked(url, None, None)
            if ref is not None and await _has(repo, _branch_ref(ref)):
                rev = _branch_ref(ref)
            else:
                if ref is not None:
                    await self._ensure_locked(url, None, ref)
                rev = ref or _branch_ref(None)
        proc = await run_git(["--git-dir", str(repo), "ls-tree", "-r", "-z", "--name-only",
                              f"{rev}^{{tree}}"])
        return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\x00") if p]


def _branch_ref(branch: str | None) -> str:
    return f"refs/remotes/origin/{branch}" if branch is not None else "refs/remotes/origin/HEAD"


async def _has(repo: Path, rev: str) -> bool:
    proc = await run_git(["--git-dir", str(repo), "rev-parse", "--verify", "--quiet", rev], check=False)
    return proc.returncode == 0


def _prepare_dest(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ProvisionError(f"workspace directory already exists and is not empty: {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)


async def provision(request: RepoRequest, dest: Path, cache: RepoCache, *,
                    template: Path | None = None) -> Workspace:
    """Create the workspace ``request`` asks for at ``dest``.

    ``git``: a worktree of the cached clone at ``dest``, at ``commit``, else ``branch``, else the
    default branch, on a new session branch ``ah/<dest.name>`` (detached when that is not a valid
    branch name). ``none``/``upload``: an empty directory, or a copy of ``template``.

    Raises:
        ProvisionError: unknown mode, missing URL, ``dest`` not empty, or git failed (with git's
            message). Nothing is left at ``dest`` after a failure.

    A checkpoint.
    """
    dest = dest.absolute()
    if request.mode == "git":
        return await _provision_git(request, dest, cache)
    if request.mode in ("none", "upload"):
        def make() -> None:  # one trip to a worker thread: every session start waits for it
            _prepare_dest(dest)
            dest.mkdir(exist_ok=True)

        await trio.to_thread.run_sync(make)
        if template is not None:
            cp = ["cp", "-a", "--reflink=auto", "-T", "--", str(template), str(dest)]
            proc = await trio.run_process(cp, capture_stdout=True, capture_stderr=True, check=False)
            if proc.returncode != 0:
                await trio.to_thread.run_sync(remove_tree, dest)
                raise ProvisionError(f"copying the template failed: {_trim(proc.stderr)}")
        return Workspace(path=dest, kind="empty")
    raise ProvisionError(f"unknown repo.mode {request.mode!r}; expected git, none or upload")


async def _provision_git(request: RepoRequest, dest: Path, cache: RepoCache) -> Workspace:
    if not request.url:
        raise ProvisionError("repo.url is required when repo.mode is git")
    _check_rev("branch", request.branch)
    _check_rev("commit", request.commit)
    await trio.to_thread.run_sync(_prepare_dest, dest)
    # Under the URL's lock so a concurrent fetch never rewrites refs while the worktree is added.
    async with cache._lock(request.url):
        repo = await cache._ensure_locked(request.url, request.branch, request.commit)
        sha = await cache.resolve(request.url, branch=request.branch, commit=request.commit)
        return await add_worktree(repo, sha, dest)


async def add_worktree(repo: Path, commit: str, dest: Path) -> Workspace:
    """A worktree of the cached clone ``repo`` at ``dest`` (absent or empty), checked out at ``commit``
    on a new session branch ``ah/<dest.name>`` (detached when that is not a valid branch name).

    Besides :func:`provision`, what a session branched from a snapshot of a worktree starts as (the
    snapshot's commit lives in the same clone).

    Raises:
        ProvisionError: ``dest`` is not empty, or git failed (nothing is left at ``dest`` then).

    A checkpoint.
    """
    dest = dest.absolute()
    await trio.to_thread.run_sync(_prepare_dest, dest)
    branch: str | None = _session_branch(dest)
    valid = await run_git(["check-ref-format", f"refs/heads/{branch}"], check=False)
    if valid.returncode != 0:
        branch = None
    target = ["-B", branch] if branch else ["--detach"]
    try:
        await run_git(["--git-dir", str(repo), "-c", "core.hooksPath=/dev/null", "worktree", "add",
                       "--quiet", *target, str(dest), commit])
    except GitError as exc:
        await trio.to_thread.run_sync(remove_tree, dest)
        raise ProvisionError(str(exc)) from exc
    return Workspace(path=dest, kind="worktree", repo_cache=repo, base_commit=commit, branch=branch)


def _session_branch(dest: Path) -> str:
    """The branch a session's worktree at ``dest`` is checked out on."""
    return f"ah/{dest.name}"


async def worktree_at(path: Path, base_commit: str | None, cache: RepoCache) -> Workspace:
    """The worktree workspace at ``path``, its clone in ``cache`` and session branch read back from git.

    What :func:`remove` needs of a worktree provisioned by an earlier run (only the path and the base
    commit are stored). Only a linked worktree of one of ``cache``'s clones whose top is ``path``
    itself counts, and only a branch named as :func:`add_worktree` names it is taken for the
    session's: a directory that is anything else (gone, no longer a worktree, or merely inside some
    other repository) gives a workspace without a clone, whose removal just deletes the directory.

    A checkpoint.
    """
    plain = Workspace(path=path, kind="worktree", base_commit=base_commit)
    if not await trio.to_thread.run_sync(path.is_dir):
        return plain
    where = await run_git(["rev-parse", "--path-format=absolute", "--show-toplevel", "--absolute-git-dir",
                           "--git-common-dir"], cwd=path, check=False)
    lines = where.stdout.decode().splitlines()
    if where.returncode != 0 or len(lines) != 3:
        return plain
    top, git_dir, common = (Path(line) for line in lines)
    if top != path.resolve() or git_dir.parent != common / "worktrees" or not cache.owns(common):
        return plain
    head = await run_git(["symbolic-ref", "-q", "--short", "HEAD"], cwd=path, check=False)
    branch = head.stdout.decode().strip() if head.returncode == 0 else None
    return Workspace(path=path, kind="worktree", repo_cache=common, base_commit=base_commit,
                     branch=branch if branch == _session_branch(path) else None)


async def remove(ws: Workspace) -> None:
    """Delete a workspace: unregister the worktree, drop its session branch if it never moved from
    the base commit, and delete the directory. Idempotent; never raises for what is already gone.

    A checkpoint.
    """
    repo = ws.repo_cache
    if ws.kind == "worktree" and repo is not None and await trio.to_thread.run_sync(repo.is_dir):
        git = ["--git-dir", str(repo)]
        await run_git([*git, "worktree", "remove", "--force", "--force", str(ws.path)], check=False)
        await run_git([*git, "worktree", "prune"], check=False)
        if ws.branch and ws.base_commit:
            # Conditional delete: a branch the agent committed to is kept, its work reachable.
            await run_git([*git, "update-ref", "-d", f"refs/heads/{ws.branch}", ws.base_commit], check=False)
    await trio.to_thread.run_sync(remove_tree, ws.path)
