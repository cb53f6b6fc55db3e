"""The repository index: every repository a task names is remembered (``/repositories``, ``/repos``)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from harbor.store import models as m


def repository_name(url: str) -> str:
    """``https://host/org/repo.git`` → ``org/repo``; a local path → its last two parts."""
    tail = url.rstrip("/").removesuffix(".git").replace(":", "/")
    parts = [p for p in tail.split("/") if p]
    return "/".join(parts[-2:]) if len(parts) >= 2 else (parts[-1] if parts else url)


def local_path_problem(url: str) -> str | None:
    """Why ``url`` cannot be used, when it names a local path (not ``scheme://`` nor ``git@host:``)."""
    if "://" in url or url.startswith("git@"):
        return None
    try:
        exists = Path(url).expanduser().is_dir()
    except (OSError, RuntimeError) as exc:  # a name too long, a path through a file, a loop of links
        return f"not a usable directory: {exc.strerror if isinstance(exc, OSError) else exc}"
    return None if exists else f"no such directory: {url}"


def repository_id(url: str, tenant: str | None) -> str:
    """Stable id per (tenant, url), so re-indexing updates one row."""
    return hashlib.sha256(f"{tenant or ''}\0{url}".encode()).hexdigest()[:26].upper()


class RepositoryIndex:
    """Reads and writes of the ``repository`` table."""

    def index_sync(self, url: str, branch: str | None, tenant: str | None, project: str | None,
                   now: float | None = None) -> None:
        """Record that a task used ``url`` (runs on the journal's writer thread)."""
        now = now or time.time()
        rid = repository_id(url, tenant)
        updated = m.Repository.update(last_used_at=now, **({"default_branch": branch} if branch else {})).where(
            m.Repository.id == rid).execute()
        if not updated:
            m.Repository.create(id=rid, tenant_id=tenant, project_id=project, url=url, name=repository_name(url),
                                default_branch=branch, created_at=now, last_used_at=now)
