"""The snapshot scheduler: coalescing per key, the global bound, pause/resume, failures contained."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from actors.snapshot_scheduler import SnapshotScheduler


@pytest.fixture
async def scheduler(nursery: trio.Nursery) -> SnapshotScheduler:
    sched = SnapshotScheduler(max_concurrent=2)
    await nursery.start(sched.run)
    return sched


class Jobs:
    """Jobs that block on a gate and record how many run at once."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.active = 0
        self.max_active = 0
        self.ran: list[str] = []

    def job(self, key: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            try:
                await self.gate.wait()
                for _ in range(3):  # stay busy over a few scheduling rounds
                    await trio.lowlevel.checkpoint()
                self.ran.append(key)
            finally:
                self.active -= 1
        return run


async def test_burst_on_one_key_runs_at_most_two_jobs(scheduler: SnapshotScheduler) -> None:
    jobs = Jobs()
    assert scheduler.request("s", jobs.job("s"))
    await trio.testing.wait_all_tasks_blocked()
    assert scheduler.stats.started == 1
    with trio.testing.assert_no_checkpoints():  # request never blocks
        accepted = [scheduler.request("s", jobs.job("s")) for _ in range(99)]
    assert accepted == [True] + [False] * 98
    jobs.gate.set()
    with trio.fail_after(5):
        await scheduler.wait_idle("s")
    assert jobs.ran == ["s", "s"]
    assert (scheduler.stats.requested, scheduler.stats.coalesced) == (100, 98)
    assert scheduler.stats.started == scheduler.stats.finished == 2


async def test_burst_before_any_job_starts_is_one_job(scheduler: SnapshotScheduler) -> None:
    jobs = Jobs()
    jobs.gate.set()
    accepted = [scheduler.request("s", jobs.job("s")) for _ in range(100)]
    assert accepted.count(True) == 1
    with trio.fail_after(5):
        await scheduler.wait_idle("s")
    assert jobs.ran == ["s"]


async def test_global_limit_across_ten_busy_keys(scheduler: SnapshotScheduler) -> None:
    jobs = Jobs()
    keys = [f"k{i}" for i in range(10)]
    for key in keys:
        scheduler.request(key, jobs.job(key))
    await trio.testing.wait_all_tasks_blocked()
    assert jobs.active == 2
    assert scheduler.stats.started == 2
    # Two keys are running, so a second request queues behind them; the other eight still have
    # their first job waiting for a slot, and a second request merges into it.
    accepted = [scheduler.request(key, jobs.job(key)) for key in keys]
    assert accepted.count(True) == 2
    jobs.gate.set()
    with trio.fail_after(5):
        for key in keys:
            await scheduler.wait_idle(key)
    assert jobs.max_active == 2
    assert sorted(set(jobs.ran)) == keys
    assert len(jobs.ran) == scheduler.stats.started == scheduler.stats.finished == 12


async def test_pause_holds_the_pending_job_until_resume(scheduler: SnapshotScheduler) -> None:
    jobs = Jobs()
    scheduler.request("s", jobs.job("s"))
    await trio.testing.wait_all_tasks_blocked()
    scheduler.request("s", jobs.job("s"))
    scheduler.pause("s")
    jobs.gate.set()
    await trio.testing.wait_all_tasks_blocked()
    assert jobs.ran == ["s"]
    assert scheduler.busy("s")
    scheduler.request("other", jobs.job("other"))  # other keys are unaffected
    await trio.testing.wait_all_tasks_blocked()
    assert jobs.ran == ["s", "other"]
    scheduler.resume("s")
    with trio.fail_after(5):
        await scheduler.wait_idle("s")
    assert jobs.ran == ["s", "other", "s"]


async def test_requests_while_paused_wait(scheduler: SnapshotScheduler) -> None:
    jobs = Jobs()
    jobs.gate.set()
    scheduler.pause("s")
    assert scheduler.request("s", jobs.job("s"))
    await trio.testing.wait_all_tasks_blocked()
    assert jobs.ran == []
    scheduler.resume("s")
    with trio.fail_after(5):
        await scheduler.wait_idle("s")
    assert jobs.ran == ["s"]


async def test_forget_drops_pending_and_lets_running_finish(scheduler: SnapshotScheduler) -> None:
    jobs = Jobs()
    scheduler.request("s", jobs.job("s"))
    await trio.testing.wait_all_tasks_blocked()
    scheduler.request("s", jobs.job("s"))
    scheduler.forget("s")
    jobs.gate.set()
    with trio.fail_after(5):
        await scheduler.wait_idle("s")
    assert jobs.ran == ["s"]
    assert not scheduler.busy("s")


async def test_failing_job_is_logged_and_scheduler_survives(scheduler: SnapshotScheduler,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> None:
        raise RuntimeError("disk full")

    jobs = Jobs()
    jobs.gate.set()
    scheduler.request("s", boom)
    with trio.fail_after(5):
        await scheduler.wait_idle("s")
    assert scheduler.stats.failed == 1
    assert any(r.name == "actors.snapshot_scheduler" and "disk full" in (r.exc_text or "")
               for r in caplog.records)
    scheduler.request("s", jobs.job("s"))
    with trio.fail_after(5):
        await scheduler.wait_idle("s")
    assert jobs.ran == ["s"]


async def test_requests_before_run_start_when_it_does() -> None:
    sched = SnapshotScheduler()
    jobs = Jobs()
    jobs.gate.set()
    assert sched.request("s", jobs.job("s"))
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        with trio.fail_after(5):
            await sched.wait_idle("s")
        nursery.cancel_scope.cancel()
    assert jobs.ran == ["s"]


async def test_cancelling_run_cancels_running_jobs() -> None:
    sched = SnapshotScheduler()
    jobs = Jobs()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(sched.run)
            sched.request("s", jobs.job("s"))
            await trio.testing.wait_all_tasks_blocked()
            assert jobs.active == 1
            nursery.cancel_scope.cancel()
    assert jobs.active == 0
    assert jobs.ran == []
