"""The lifecycle table, pair by pair: every move the design allows is legal, every other one raises.

The expected moves are written out here independently of ``actors.lifecycle`` (from the lifecycle
described in ARCHITECTURE.md and api-contract.md "Sessions"), so a change to the table that nobody
meant shows up as a failing pair, not as a test that agrees with whatever the table says.
"""

from __future__ import annotations

import itertools

import pytest

from actors.lifecycle import (
    ACTIVE,
    SIGNALLABLE,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    Status,
    StatusChange,
    can_transition,
    transition,
)

# "from": "to to to" — the only moves a session may make.
_LEGAL_TEXT = {
    "queued": "provisioning stopped failed cancelled",
    "provisioning": "running stopping failed cancelled",
    "running": "pausing stopping completed failed cancelled",
    "pausing": "paused running stopping completed failed cancelled",
    "paused": "resuming stopping completed failed cancelled",
    "resuming": "running paused stopping completed failed cancelled",
    "stopping": "stopped failed cancelled",
    "stopped": "",
    "completed": "",
    "failed": "",
    "cancelled": "",
}
LEGAL = {(Status(a), Status(b)) for a, targets in _LEGAL_TEXT.items() for b in targets.split()}
ALL_PAIRS = list(itertools.product(Status, Status))


def _pair_id(pair: tuple[Status, Status]) -> str:
    return f"{pair[0]}->{pair[1]}"


@pytest.mark.parametrize("pair", sorted(LEGAL), ids=_pair_id)
def test_legal_move_is_applied(pair: tuple[Status, Status]) -> None:
    current, target = pair
    change = transition(current, target, reason="because")
    assert change == StatusChange(previous=current, status=target, reason="because")
    assert can_transition(current, target)


@pytest.mark.parametrize("pair", [p for p in ALL_PAIRS if p not in LEGAL], ids=_pair_id)
def test_illegal_move_is_refused(pair: tuple[Status, Status]) -> None:
    current, target = pair
    assert not can_transition(current, target)
    with pytest.raises(IllegalTransition) as info:
        transition(current, target)
    assert info.value.current == current
    assert info.value.target == target
    assert str(current) in str(info.value)
    assert str(target) in str(info.value)


def test_every_pair_is_covered_and_the_table_names_every_status() -> None:
    assert len(ALL_PAIRS) == len(Status) ** 2 == 121
    assert set(TRANSITIONS) == set(Status)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL


def test_named_sets_partition_the_statuses() -> None:
    assert ACTIVE | TERMINAL == set(Status)
    assert not ACTIVE & TERMINAL
    assert SIGNALLABLE <= ACTIVE
    # Nothing leaves a terminal state; every active state can still end (delete is always possible).
    for status in TERMINAL:
        assert not TRANSITIONS[status]
    for status in ACTIVE:
        assert Status.CANCELLED in TRANSITIONS[status]
        assert Status.FAILED in TRANSITIONS[status]


def test_wire_spelling_is_lowercase() -> None:
    assert [str(s) for s in Status] == ["queued", "provisioning", "running", "pausing", "paused", "resuming",
                                        "stopping", "stopped", "completed", "failed", "cancelled"]
