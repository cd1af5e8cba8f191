"""HostGates: per-host slots and pacing as pure decisions (time passed in)."""

from __future__ import annotations

import pytest

from aioduct.politeness import HostGates


def test_no_limits_admit_at_once_and_keep_no_state() -> None:
    gates: HostGates[str] = HostGates(None, None)
    assert not gates.active
    assert [gates.enter("a", f"t{i}", 5.0) for i in range(3)] == [5.0, 5.0, 5.0]
    for _ in range(3):
        assert gates.leave("a", 5.0) is None
    assert len(gates) == 0


def test_concurrency_limit_queues_and_hands_slots_over_in_order() -> None:
    gates: HostGates[str] = HostGates(2, None)
    assert gates.active
    assert gates.enter("a", "t1", 0.0) == 0.0
    assert gates.enter("a", "t2", 0.0) == 0.0
    assert gates.enter("a", "t3", 0.0) is None
    assert gates.enter("a", "t4", 0.0) is None
    assert gates.enter("b", "u1", 0.0) == 0.0  # another host has its own slots
    assert gates.leave("a", 1.0) == ("t3", 1.0)
    assert gates.leave("a", 2.0) == ("t4", 2.0)
    assert gates.leave("a", 3.0) is None
    assert gates.leave("a", 3.0) is None
    assert gates.leave("b", 3.0) is None
    assert len(gates) == 0  # idle hosts are forgotten


def test_rate_spaces_starts_and_a_paced_host_is_kept_until_its_pacing_lapses() -> None:
    gates: HostGates[str] = HostGates(None, 4.0)  # one start every 0.25 s
    assert [gates.enter("a", t, 10.0) for t in ("t1", "t2", "t3")] == [10.0, 10.25, 10.5]
    for _ in range(3):
        assert gates.leave("a", 10.1) is None
    assert len(gates) == 1  # next start is 10.75: forgetting it would allow a burst
    assert gates.enter("a", "t4", 10.2) == 10.75
    assert gates.leave("a", 11.0) is None
    assert len(gates) == 0
    assert gates.enter("a", "t5", 20.0) == 20.0  # no debt carried from long ago


def test_handed_over_slot_is_paced_too() -> None:
    gates: HostGates[str] = HostGates(1, 2.0)
    assert gates.enter("a", "t1", 0.0) == 0.0
    assert gates.enter("a", "t2", 0.0) is None
    assert gates.leave("a", 0.1) == ("t2", 0.5)


def test_withdraw_removes_only_a_queued_ticket_by_identity() -> None:
    gates: HostGates[list[int]] = HostGates(1, None)
    first, second, twin = [1], [2], [2]
    assert gates.enter("a", first, 0.0) == 0.0
    assert gates.enter("a", second, 0.0) is None
    assert not gates.withdraw("a", twin)  # equal, but not the same ticket
    assert gates.withdraw("a", second)
    assert not gates.withdraw("a", second)
    assert not gates.withdraw("nowhere", second)
    assert gates.leave("a", 1.0) is None


def test_leave_without_a_slot_is_a_bug_that_says_so() -> None:
    with pytest.raises(KeyError, match="holds a slot"):
        HostGates[str](1, None).leave("a", 0.0)


@pytest.mark.parametrize(("limit", "rate"), [(0, None), (None, 0.0), (None, -1.0)])
def test_nonsense_limits_are_refused(limit: int | None, rate: float | None) -> None:
    with pytest.raises(ValueError):
        HostGates[str](limit, rate)
