"""HostGates: per-host slots as pure decisions; per-host pacing is the TokenBucket's
(the same cases the gates' pacing had, now through aioduct.limits)."""

from __future__ import annotations

import pytest

from aioduct.limits import RateLimit, TokenBucket, per_host_rate_limit
from aioduct.politeness import HostGates


def test_no_limits_admit_at_once_and_keep_no_state() -> None:
    gates: HostGates[str] = HostGates(None)
    assert not gates.active
    assert [gates.enter("a", f"t{i}") for i in range(3)] == [True, True, True]
    for _ in range(3):
        assert gates.leave("a") is None
    assert len(gates) == 0


def test_concurrency_limit_queues_and_hands_slots_over_in_order() -> None:
    gates: HostGates[str] = HostGates(2)
    assert gates.active
    assert gates.enter("a", "t1")
    assert gates.enter("a", "t2")
    assert not gates.enter("a", "t3")
    assert not gates.enter("a", "t4")
    assert gates.enter("b", "u1")  # another host has its own slots
    assert gates.leave("a") == "t3"
    assert gates.leave("a") == "t4"
    assert gates.leave("a") is None
    assert gates.leave("a") is None
    assert gates.leave("b") is None
    assert len(gates) == 0  # idle hosts are forgotten


def test_rate_spaces_starts_and_a_paced_host_is_kept_until_its_pacing_lapses() -> None:
    limit = per_host_rate_limit(4.0)  # one start every 0.25 s
    assert limit == RateLimit(4.0, per_host=True)
    bucket = TokenBucket(limit.interval)
    assert [bucket.take(1, 10.0, "a") for _ in range(3)] == [10.0, 10.25, 10.5]
    bucket.forget_idle(10.1)
    assert len(bucket) == 1  # next start is 10.75: forgetting it would allow a burst
    assert bucket.take(1, 10.2, "a") == 10.75
    bucket.forget_idle(11.0)
    assert len(bucket) == 0
    assert bucket.take(1, 20.0, "a") == 20.0  # no debt carried from long ago


def test_withdraw_removes_only_a_queued_ticket_by_identity() -> None:
    gates: HostGates[list[int]] = HostGates(1)
    first, second, twin = [1], [2], [2]
    assert gates.enter("a", first)
    assert not gates.enter("a", second)
    assert not gates.withdraw("a", twin)  # equal, but not the same ticket
    assert gates.withdraw("a", second)
    assert not gates.withdraw("a", second)
    assert not gates.withdraw("nowhere", second)
    assert gates.leave("a") is None


def test_leave_without_a_slot_is_a_bug_that_says_so() -> None:
    with pytest.raises(KeyError, match="holds a slot"):
        HostGates[str](1).leave("a")


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        HostGates[str](0)
    for rate in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="per_host_rate"):
            per_host_rate_limit(rate)


def test_drop_where_takes_back_queued_tickets_of_one_kind() -> None:
    gates: HostGates[str] = HostGates(1)
    assert gates.enter("a", "a0") and gates.enter("b", "b0")
    for ticket in ("a1-x", "a2-y", "a3-x"):
        assert not gates.enter("a", ticket)
    assert not gates.enter("b", "b1-x")
    assert gates.drop_where(lambda ticket: ticket.endswith("-x")) == 3
    assert gates.leave("a") == "a2-y"  # the one kept, still first in line
    assert gates.leave("a") is None and gates.leave("b") is None
    assert len(gates) == 0
