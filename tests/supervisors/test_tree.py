"""Supervisor restart strategies, intensity and backoff, on trio's virtual clock (autojump_clock).

Children are small fakes that record what happened to them; time is virtual, so the tests are fast
and the delays they assert are exact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import trio

from supervisors import ChildSpec, Escalation, Restart, Supervisor


class Boom(Exception):
    pass


class FakeChild:
    """Becomes ready, then behaves as told: crash, return, or run until cancelled."""

    def __init__(
        self, name: str, behaviour: str = "crash", *, after: float = 0.0, before_ready: bool = False
    ) -> None:
        self.name = name
        self.behaviour = behaviour  # "crash" | "return" | "forever"
        self.after = after
        self.before_ready = before_ready
        self.starts: list[float] = []
        self.cancelled = 0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.starts.append(trio.current_time())
        if self.before_ready:
            raise Boom(f"{self.name} failed to start")
        task_status.started()
        try:
            await trio.sleep(self.after)
            if self.behaviour == "forever":
                await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled += 1
            raise
        if self.behaviour == "crash":
            raise Boom(f"{self.name} crashed")

    def spec(self, restart: Restart = Restart.PERMANENT) -> ChildSpec:
        return ChildSpec(self.name, self.run, restart)


async def test_permanent_child_crashing_is_restarted_then_escalates(autojump_clock: trio.abc.Clock) -> None:
    crasher = FakeChild("crasher")
    sibling = FakeChild("sibling", "forever")
    tree = Supervisor("root", [sibling.spec(), crasher.spec()], intensity=3, period=5.0)

    with pytest.raises(Escalation) as caught:
        await tree.run()

    assert len(crasher.starts) == 4  # the first run and 3 restarts; the 4th crash escalates
    assert caught.value.child.name == "crasher"
    assert isinstance(caught.value.__cause__, Boom)
    assert sibling.cancelled == 1  # siblings are cancelled, not left running
    assert len(sibling.starts) == 1


async def test_escalation_uses_injected_clock_window() -> None:
    # A fake clock that never advances: every restart falls in the same window.
    crasher = FakeChild("crasher")
    tree = Supervisor("root", [crasher.spec()], intensity=2, period=1.0, backoff=0.0, clock=lambda: 42.0)
    with trio.fail_after(5), pytest.raises(Escalation):
        await tree.run()
    assert len(crasher.starts) == 3


async def test_crashes_spread_wider_than_period_never_escalate(autojump_clock: trio.abc.Clock) -> None:
    crasher = FakeChild("slow-crasher", after=10.0)  # one crash every ~10 s; the window is 5 s
    tree = Supervisor("root", [crasher.spec()], intensity=1, period=5.0)
    with trio.move_on_after(200):
        await tree.run()
    assert len(crasher.starts) >= 15


async def test_transient_child_exiting_normally_is_not_restarted(autojump_clock: trio.abc.Clock) -> None:
    done = FakeChild("done", "return")
    await Supervisor("root", [done.spec(Restart.TRANSIENT)]).run()
    assert len(done.starts) == 1


async def test_transient_child_raising_is_restarted(autojump_clock: trio.abc.Clock) -> None:
    flaky = FakeChild("flaky")

    async def crash_twice(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if len(flaky.starts) == 2:
            flaky.behaviour = "return"
        await flaky.run(task_status=task_status)

    await Supervisor("root", [ChildSpec("flaky", crash_twice, Restart.TRANSIENT)]).run()
    assert len(flaky.starts) == 3


async def test_temporary_child_is_never_restarted(autojump_clock: trio.abc.Clock) -> None:
    crasher = FakeChild("crasher")
    returner = FakeChild("returner", "return")
    await Supervisor("root", [crasher.spec(Restart.TEMPORARY), returner.spec(Restart.TEMPORARY)]).run()
    assert len(crasher.starts) == 1
    assert len(returner.starts) == 1


async def test_permanent_child_returning_normally_is_restarted(autojump_clock: trio.abc.Clock) -> None:
    returner = FakeChild("returner", "return", after=1.0)
    with trio.move_on_after(10.5):
        await Supervisor("root", [returner.spec()], intensity=5, period=5.0).run()
    assert len(returner.starts) >= 5


async def test_cancelling_run_stops_children_without_escalation(autojump_clock: trio.abc.Clock) -> None:
    children = [FakeChild(f"c{i}", "forever") for i in range(3)]
    tree = Supervisor("root", [child.spec() for child in children], intensity=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(tree.run)
        assert all(len(child.starts) == 1 for child in children)
        nursery.cancel_scope.cancel()
    assert [child.cancelled for child in children] == [1, 1, 1]
    assert all(len(child.starts) == 1 for child in children)  # a commanded stop restarts nothing


async def test_restart_backoff_grows_exponentially_up_to_cap(autojump_clock: trio.abc.Clock) -> None:
    crasher = FakeChild("crasher")
    tree = Supervisor("root", [crasher.spec()], intensity=5, period=100.0, backoff=0.05, max_backoff=0.3)
    with pytest.raises(Escalation):
        await tree.run()
    gaps = [round(b - a, 6) for a, b in zip(crasher.starts, crasher.starts[1:], strict=False)]
    assert gaps == [0.05, 0.1, 0.2, 0.3, 0.3]


async def test_backoff_resets_once_restarts_leave_the_window(autojump_clock: trio.abc.Clock) -> None:
    crasher = FakeChild("crasher", after=10.0)
    tree = Supervisor("root", [crasher.spec()], intensity=3, period=5.0, backoff=0.05)
    with trio.move_on_after(40):
        await tree.run()
    gaps = [round(b - a, 6) for a, b in zip(crasher.starts, crasher.starts[1:], strict=False)]
    assert set(gaps) == {10.05}


async def test_children_start_in_order_each_ready_before_the_next() -> None:
    events: list[str] = []

    def child(name: str) -> Callable[..., object]:
        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            events.append(f"{name} starting")
            await trio.sleep(0.01)
            events.append(f"{name} ready")
            task_status.started()
            await trio.sleep_forever()

        return run

    tree = Supervisor("root", [ChildSpec(n, child(n)) for n in ("journal", "sampler")])
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(tree.run)
            events.append("tree ready")
            nursery.cancel_scope.cancel()
    assert events == ["journal starting", "journal ready", "sampler starting", "sampler ready", "tree ready"]


async def test_child_failing_before_ready_is_restarted_until_ready(autojump_clock: trio.abc.Clock) -> None:
    late = FakeChild("late", "forever", before_ready=True)

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        late.before_ready = len(late.starts) < 2
        await late.run(task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(Supervisor("root", [ChildSpec("late", run)]).run)
        assert len(late.starts) == 3
        nursery.cancel_scope.cancel()


async def test_escalation_before_ready_fails_the_supervisor_start(autojump_clock: trio.abc.Clock) -> None:
    broken = FakeChild("broken", before_ready=True)
    never = FakeChild("never", "forever")
    tree = Supervisor("root", [broken.spec(), never.spec()], intensity=2)
    async with trio.open_nursery() as nursery:
        with pytest.raises(Escalation):  # raised by start() itself, bare
            await nursery.start(tree.run)
    assert never.starts == []


async def test_crash_is_logged_with_traceback(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    crasher = FakeChild("crasher")
    with caplog.at_level(logging.INFO, logger="supervisors.tree"):
        await Supervisor("root", [crasher.spec(Restart.TEMPORARY)]).run()
    crashes = [r for r in caplog.records if r.name == "supervisors.tree" and r.exc_info]
    assert len(crashes) == 1
    assert "crasher" in crashes[0].getMessage()
    assert isinstance(crashes[0].exc_info[1], Boom)


def test_invalid_configuration_is_refused() -> None:
    child = FakeChild("a")
    with pytest.raises(ValueError, match="unique"):
        Supervisor("root", [child.spec(), child.spec()])
    with pytest.raises(ValueError, match="period > 0"):
        Supervisor("root", [], period=0)
