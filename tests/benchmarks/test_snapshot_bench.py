"""Snapshot cost on a 10,000-file / ~100 MB workspace, beside ``cp -a`` of the same tree.

Not part of the default run (``norecursedirs``); ``make bench`` runs it with ``-s`` so the table shows.
"""

from __future__ import annotations

import base64
import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from actors.changes import changed_files
from actors.snapshots import CopyProvider, GitSnapshotProvider, SnapshotRecord

FILES = 10_000
DIRS = 100
FILE_BYTES = 10_240  # 10,000 x 10 KiB ≈ 100 MB
ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@e", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@e"}


def make_tree(root: Path) -> None:
    """Text-like files (base64 of random bytes: compressible about as well as source code)."""
    rng = random.Random(42)
    for i in range(FILES):
        d = root / f"pkg{i % DIRS:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i:05d}.py").write_bytes(base64.b64encode(rng.randbytes(FILE_BYTES * 3 // 4)))


def touch_ten(root: Path, round_: int) -> None:
    for i in range(10):
        p = root / f"pkg{i:03d}" / f"mod{i:05d}.py"
        p.write_bytes(p.read_bytes()[:-20] + f"# edit {round_:02d}\n".encode().rjust(20, b"#"))


async def timed(fn: Callable[[], Awaitable[object]]) -> tuple[float, object]:
    start = time.perf_counter()
    result = await fn()
    return time.perf_counter() - start, result


@pytest.mark.slow
async def test_snapshot_benchmark(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    await trio.to_thread.run_sync(make_tree, plain)
    repo = tmp_path / "repo"
    await trio.run_process(["cp", "-a", str(plain), str(repo)])
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
        await trio.run_process(["git", *args], cwd=repo, env=ENV, capture_stdout=True)
    size = sum(p.stat().st_size for p in plain.rglob("*") if p.is_file())
    rows: list[tuple[str, float]] = []

    async def cp_baseline() -> None:
        await trio.run_process(["cp", "-a", str(plain), str(tmp_path / "cp-baseline")])

    seconds, _ = await timed(cp_baseline)
    rows.append(("cp -a of the tree (baseline)", seconds))

    async def series(label: str, provider: GitSnapshotProvider | CopyProvider, ws: Path) -> float:
        seconds, s1 = await timed(lambda: provider.snapshot(ws, f"{label}1", parent=None))
        rows.append((f"{label}: first snapshot", seconds))
        assert isinstance(s1, SnapshotRecord)
        await trio.to_thread.run_sync(touch_ten, ws, 1)
        seconds, s2 = await timed(lambda: provider.snapshot(ws, f"{label}2", parent=s1))
        rows.append((f"{label}: incremental, 10 files changed", seconds))
        assert isinstance(s2, SnapshotRecord)
        incremental = seconds
        seconds, _ = await timed(lambda: provider.snapshot(ws, f"{label}3", parent=s2))
        rows.append((f"{label}: incremental, nothing changed", seconds))
        return incremental

    git_plain = await series("git-plain", GitSnapshotProvider(tmp_path / "store"), plain)
    git_repo = await series("git-repo", GitSnapshotProvider(tmp_path / "store"), repo)
    await series("copy", CopyProvider(tmp_path / "store"), tmp_path / "cp-baseline")

    await trio.to_thread.run_sync(touch_ten, repo, 2)
    seconds, changes = await timed(lambda: changed_files(repo, "HEAD", store_root=tmp_path / "store"))
    rows.append(("changed_files vs HEAD (git-repo)", seconds))
    assert isinstance(changes, list)
    assert len(changes) == 10

    print(f"\n\nSnapshot benchmark: {FILES} files, {size / 1e6:.0f} MB, {os.cpu_count()} CPUs")
    print(f"{'operation':<44}{'seconds':>10}")
    for label, secs in rows:
        print(f"{label:<44}{secs:>10.3f}")
    git_version = (await trio.run_process(["git", "--version"], capture_stdout=True)).stdout.decode().strip()
    print(f"({git_version}; git-plain = private repo for a non-git dir, git-repo = the workspace's repo)")
    assert git_plain < 1.0
    assert git_repo < 1.0
