"""Real-process tests for actors.process: spawn, lines, pause/resume, stop/kill sweeps, leftovers.

Every wait is bounded (trio.fail_after) and synchronised on something the child prints or on psutil
state; the only sleeps are measurement windows (CPU time must not advance while paused).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import psutil
import pytest
import trio

from actors.process import (
    AgentProcess,
    ExitInfo,
    InputClosed,
    PauseFailed,
    ProcessStats,
    find_marked,
    iter_lines,
    kill_leftovers,
)

PY = sys.executable

# Prints "<tag> <pid>" then sleeps; run as: python -c TAIL <tag>
TAIL = "import os, sys, time; print(sys.argv[1], os.getpid(), flush=True); time.sleep(300)"

# An agent with a child, a grandchild in its group, and an escapee whose launcher already exited
# (so the escapee is neither in the group nor a descendant: only the marker finds it).
FAMILY = f"""
import os, subprocess, sys, time
TAIL = {TAIL!r}
subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', sys.argv[1], 'grandchild']);"
    " time.sleep(300)", TAIL])
launcher = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys; subprocess.Popen([sys.executable, '-c', sys.argv[1], 'escapee'],"
    " start_new_session=True)", TAIL])
launcher.wait()
print("agent", os.getpid(), flush=True)
time.sleep(300)
"""

BUSY_FAMILY = """
import subprocess, sys
busy = [sys.executable, "-c", "while True: pass"]
inside = subprocess.Popen(busy)
outside = subprocess.Popen(busy, start_new_session=True)
print("children", inside.pid, outside.pid, flush=True)
while True: pass
"""

Spawner = Callable[..., Awaitable[AgentProcess]]


@pytest.fixture
def marker() -> Iterator[str]:
    """A fresh session marker; anything still carrying it after the test is killed."""
    value = f"test-{uuid.uuid4()}"
    yield value
    kill_leftovers(None, None, value)


@pytest.fixture
async def spawn(marker: str, tmp_path: Path) -> AsyncIterator[Spawner]:
    agents: list[AgentProcess] = []

    async def _spawn(*argv: str, env: dict[str, str] | None = None) -> AgentProcess:
        agent = await AgentProcess.spawn(
            argv, cwd=tmp_path, env=dict(os.environ) if env is None else env, marker=marker
        )
        agents.append(agent)
        return agent

    yield _spawn
    for agent in agents:
        await agent.kill()


async def read_tagged(agent: AgentProcess, tags: set[str]) -> dict[str, int]:
    """Read stdout until every tag has printed "<tag> <pid>"; return tag -> pid."""
    seen: dict[str, int] = {}
    with trio.move_on_after(10):
        async for line in iter_lines(agent.stdout):
            tag, _, pid = line.decode().partition(" ")
            if tag in tags:
                seen[tag] = int(pid)
            if seen.keys() == tags:
                return seen
    raise AssertionError(f"no line from {tags - seen.keys()}; agent returncode {agent.returncode}")


def gone(proc: psutil.Process) -> bool:
    """Dead, or a zombie waiting for a reaper we do not control."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    # Polling is the point: psutil state has no event to wait on.
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.005)


def cpu_seconds(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


# --- spawn, output, exit -------------------------------------------------------------------------


async def test_spawn_streams_lines_and_reports_exit_code(spawn: Spawner) -> None:
    agent = await spawn(PY, "-c", "import sys; print('one'); print('two'); sys.exit(3)")
    assert os.getpgid(agent.pid) == agent.pgid == agent.pid
    assert agent.create_time == psutil.Process(agent.pid).create_time()
    with trio.fail_after(10):
        lines = [line async for line in iter_lines(agent.stdout)]
        info = await agent.wait()
    assert lines == [b"one", b"two"]
    assert info == ExitInfo(returncode=3, signal=None, stderr_tail=[])
    assert agent.returncode == 3


async def test_spawn_env_is_exactly_env_plus_marker(spawn: Spawner, marker: str) -> None:
    agent = await spawn("/usr/bin/env", env={"FOO": "bar", "PATH": "/usr/bin:/bin"})
    with trio.fail_after(10):
        lines = {line async for line in iter_lines(agent.stdout)}
        await agent.wait()
    assert lines == {b"FOO=bar", b"PATH=/usr/bin:/bin", f"AH_SESSION_ID={marker}".encode()}


async def test_spawn_exec_failure_raises_untouched(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await AgentProcess.spawn(
            [str(tmp_path / "no-such-agent")], cwd=tmp_path, env={}, marker="never-started"
        )


async def test_write_input_reaches_agent_and_fails_cleanly_once_closed(spawn: Spawner) -> None:
    agent = await spawn(PY, "-c", "import sys; print(sys.stdin.readline().upper(), end='', flush=True)")
    with trio.fail_after(10):
        await agent.write_input(b"hello\n")
        lines = [line async for line in iter_lines(agent.stdout)]
        await agent.wait()
        assert lines == [b"HELLO"]
        with pytest.raises(InputClosed) as caught:
            await agent.write_input(b"anyone there?\n" * 10_000)
    assert isinstance(caught.value, trio.BrokenResourceError)


async def test_exit_info_keeps_last_twenty_stderr_lines_and_signal(spawn: Spawner) -> None:
    agent = await spawn(
        PY,
        "-c",
        "import os, sys\nfor i in range(30): print('err', i, file=sys.stderr)\nos.kill(os.getpid(), 9)",
    )
    with trio.fail_after(10):
        async for line in iter_lines(agent.stderr):
            agent.note_stderr(line.decode())
        info = await agent.wait()
    assert info.returncode == -signal.SIGKILL
    assert info.signal == signal.SIGKILL
    assert info.stderr_tail == [f"err {i}" for i in range(10, 30)]


# --- iter_lines ----------------------------------------------------------------------------------


class Chunks(trio.abc.ReceiveStream):
    """A stream that returns the given chunks, then EOF."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = list(chunks)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return self._chunks.pop(0) if self._chunks else b""

    async def aclose(self) -> None:
        self._chunks = []


async def lines_of(*chunks: bytes, max_line: int = 1 << 20) -> list[bytes]:
    return [line async for line in iter_lines(Chunks(*chunks), max_line=max_line)]


async def test_iter_lines_joins_chunk_boundaries() -> None:
    assert await lines_of(b"ab", b"c\nde", b"f\n", b"g", b"h\ni") == [b"abc", b"def", b"gh", b"i"]


async def test_iter_lines_keeps_empty_lines() -> None:
    assert await lines_of(b"\n\na\n", b"\n") == [b"", b"", b"a", b""]


async def test_iter_lines_yields_last_partial_line_at_eof() -> None:
    assert await lines_of(b"done\nno newline") == [b"done", b"no newline"]
    assert await lines_of() == []


async def test_iter_lines_cuts_long_lines_into_max_line_pieces() -> None:
    assert await lines_of(b"abcdefghij\nxy\n", max_line=4) == [b"abcd", b"efgh", b"ij", b"xy"]
    # Growing across chunks without a newline: memory stays bounded, nothing lost.
    assert await lines_of(b"abc", b"def", b"ghi", b"\n", max_line=4) == [b"abcd", b"efgh", b"i"]


async def test_iter_lines_line_of_exactly_max_line_is_not_followed_by_empty_line() -> None:
    # A line of max_line bytes used to be emitted when full and its "\n" then read as an empty line.
    assert await lines_of(b"abcd", b"\nef\n", max_line=4) == [b"abcd", b"ef"]
    assert await lines_of(b"abcdefgh", b"\n", max_line=4) == [b"abcd", b"efgh"]


@pytest.mark.parametrize("seed", range(20))
async def test_iter_lines_matches_reference_for_any_chunking(seed: int) -> None:
    import random

    rng = random.Random(seed)
    data = bytes(rng.choice(b"ab\n") for _ in range(rng.randrange(0, 400)))
    cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data) + 1, rng.randrange(1, 30))))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True) if b > a]
    max_line = rng.randrange(1, 12)
    expected = []
    body = data[:-1] if data.endswith(b"\n") else data
    for line in body.split(b"\n") if data else []:
        expected += [line[i : i + max_line] for i in range(0, len(line), max_line)] or [b""]
    assert await lines_of(*chunks, max_line=max_line) == expected


async def test_iter_lines_is_fast_on_many_short_lines() -> None:
    chunk = b"x" * 60 + b"\n"
    chunks = [chunk * 1000] * 100  # 100k lines
    started = time.perf_counter()
    count = len(await lines_of(*chunks))
    assert count == 100_000
    assert time.perf_counter() - started < 0.5


# --- pause / resume ------------------------------------------------------------------------------


async def test_pause_stops_the_whole_tree_and_resume_restarts_it(spawn: Spawner) -> None:
    agent = await spawn(PY, "-c", BUSY_FAMILY)
    with trio.fail_after(10):
        async for line in iter_lines(agent.stdout):
            _, inside, outside = line.decode().split()
            break
    tree = [psutil.Process(agent.pid), psutil.Process(int(inside)), psutil.Process(int(outside))]
    assert os.getpgid(int(outside)) != agent.pgid  # the setsid'ed child is outside the group

    await agent.pause()
    assert [p.status() for p in tree] == [psutil.STATUS_STOPPED] * 3
    before = cpu_seconds(tree)
    await trio.sleep(0.3)  # a measurement window, not synchronisation
    assert cpu_seconds(tree) == before

    agent.resume()
    await wait_until(lambda: all(p.status() != psutil.STATUS_STOPPED for p in tree))
    await wait_until(lambda: all(sum(p.cpu_times()[:2]) > 0 for p in tree))
    running_from = cpu_seconds(tree)
    await wait_until(lambda: cpu_seconds(tree) > running_from + 0.05)


async def test_pause_fails_when_a_member_cannot_stop(spawn: Spawner) -> None:
    agent = await spawn(PY, "-c", "print('up', flush=True); import time; time.sleep(300)")
    with trio.fail_after(10):
        async for _ in iter_lines(agent.stdout):
            break

    def never_stopped(procs: list[psutil.Process]) -> list[int]:
        return [p.pid for p in procs]

    import actors.process as process_module

    original = process_module._not_stopped
    process_module._not_stopped = never_stopped
    try:
        with pytest.raises(PauseFailed):
            await agent.pause(timeout=0.1)
    finally:
        process_module._not_stopped = original
    agent.resume()


# --- stop / kill ---------------------------------------------------------------------------------


async def test_stop_paused_session_is_prompt(spawn: Spawner) -> None:
    # A stopped group holds SIGTERM pending until SIGCONT: stop() used to sit out the whole grace.
    agent = await spawn(
        PY,
        "-c",
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(1)",
    )
    with trio.fail_after(10):
        async for _ in iter_lines(agent.stdout):
            break
    await agent.pause()
    started = trio.current_time()
    info = await agent.stop(grace=5)
    assert trio.current_time() - started < 0.5
    assert info.returncode == 7
    assert info.signal is None


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_stop_and_kill_leave_no_descendant_or_escapee(spawn: Spawner, marker: str, how: str) -> None:
    agent = await spawn(PY, "-c", FAMILY)
    pids = await read_tagged(agent, {"agent", "grandchild", "escapee"})
    tree = await trio.to_thread.run_sync(agent.members)
    escapee = psutil.Process(pids["escapee"])
    assert escapee.pid not in {p.pid for p in tree}  # reachable only through the marker
    assert os.getpgid(escapee.pid) != agent.pgid
    assert {pids["agent"], pids["grandchild"]} <= {p.pid for p in tree}

    with trio.fail_after(10):
        info = await (agent.stop(grace=2) if how == "stop" else agent.kill())
    expected = signal.SIGTERM if how == "stop" else signal.SIGKILL
    assert (info.returncode, info.signal) == (-expected, expected)
    await wait_until(lambda: all(gone(p) for p in [*tree, escapee]))
    assert await trio.to_thread.run_sync(find_marked, marker) == []


async def test_stop_sends_sigkill_after_grace_to_agent_ignoring_sigterm(spawn: Spawner) -> None:
    agent = await spawn(
        PY,
        "-c",
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)",
    )
    with trio.fail_after(10):
        async for _ in iter_lines(agent.stdout):
            break
    started = trio.current_time()
    info = await agent.stop(grace=0.3)
    elapsed = trio.current_time() - started
    assert info.signal == signal.SIGKILL
    assert 0.3 <= elapsed < 2.0


async def test_kill_of_paused_agent_is_immediate(spawn: Spawner) -> None:
    agent = await spawn(PY, "-c", "print('ready', flush=True); import time; time.sleep(300)")
    with trio.fail_after(10):
        async for _ in iter_lines(agent.stdout):
            break
    await agent.pause()
    started = trio.current_time()
    info = await agent.kill()
    assert trio.current_time() - started < 0.5
    assert info.signal == signal.SIGKILL


async def test_stop_under_cancellation_still_kills_and_reaps(spawn: Spawner) -> None:
    agent = await spawn(
        PY,
        "-c",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
        "time.sleep(300)",
    )
    with trio.fail_after(10):
        async for _ in iter_lines(agent.stdout):
            break
    with trio.move_on_after(0.1):
        await agent.stop(grace=30)  # cancelled during the grace: the kill phase must still run
    assert agent.returncode == -signal.SIGKILL


# --- crash recovery ------------------------------------------------------------------------------


async def test_kill_leftovers_kills_group_and_marked_escapee_of_crashed_daemon(marker: str) -> None:
    # A plain Popen on purpose: the "crashed daemon" must not be an AgentProcess.
    popen = subprocess.Popen(  # noqa: ASYNC220
        [PY, "-c", FAMILY],
        start_new_session=True,
        env={**os.environ, "AH_SESSION_ID": marker},
        stdout=subprocess.PIPE,
    )
    try:
        assert popen.stdout is not None
        seen: dict[str, int] = {}
        with trio.fail_after(10):
            while seen.keys() != {"agent", "grandchild", "escapee"}:
                line = await trio.to_thread.run_sync(popen.stdout.readline, abandon_on_cancel=True)
                tag, _, pid = line.decode().strip().partition(" ")
                seen[tag] = int(pid)
        procs = [psutil.Process(pid) for pid in seen.values()]
        leader = psutil.Process(popen.pid)

        signalled = kill_leftovers(popen.pid, leader.create_time(), marker)

        assert signalled >= 4  # leader, the grandchild's parent, grandchild, escapee
        assert popen.wait(timeout=5) == -signal.SIGKILL
        await wait_until(lambda: all(gone(p) for p in procs))
    finally:
        popen.kill()
        popen.wait(timeout=5)
        assert popen.stdout is not None
        popen.stdout.close()


async def test_kill_leftovers_leaves_unrelated_processes_alone(marker: str) -> None:
    popen = subprocess.Popen(  # noqa: ASYNC220
        [PY, "-c", "import time; time.sleep(300)"], start_new_session=True
    )
    try:
        # Same pid but another start time: the pid was reused by something that is not ours.
        wrong_time = psutil.Process(popen.pid).create_time() - 3600
        assert kill_leftovers(popen.pid, wrong_time, marker) == 0
        assert kill_leftovers(None, None, marker) == 0
        assert popen.poll() is None
    finally:
        popen.kill()
        popen.wait(timeout=5)


# --- stats ---------------------------------------------------------------------------------------


async def test_stats_reports_tree_memory_count_and_cpu(spawn: Spawner) -> None:
    agent = await spawn(PY, "-c", "print('busy', flush=True)\nwhile True: pass")
    with trio.fail_after(10):
        async for _ in iter_lines(agent.stdout):
            break
    first = await trio.to_thread.run_sync(agent.stats)
    assert first.cpu_percent == 0.0
    assert first.rss_bytes > 0
    assert first.processes == 1
    await trio.sleep(0.3)  # a measurement window
    second: ProcessStats = await trio.to_thread.run_sync(agent.stats)
    assert second.cpu_percent > 30
