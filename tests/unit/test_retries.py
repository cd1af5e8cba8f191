"""RetryConfig.next_delay: the one retry decision both job runners make."""

from __future__ import annotations

import pytest

from aioduct import RetryConfig
from aioduct.errors import ConnectError, LocalProtocolError, ReadTimeout, StatusError, TLSError

RETRY = RetryConfig(max_retries=2, initial_backoff=0.5, backoff_multiplier=3.0, max_backoff=10.0)


@pytest.mark.parametrize(
    ("error", "delays"),
    [
        (ConnectError("refused"), [0.5, 1.5, None]),
        (ReadTimeout("slow"), [0.5, 1.5, None]),
        (TLSError("bad certificate"), [None, None, None]),  # fails the same way every time
        (LocalProtocolError("bad header"), [None, None, None]),
        (ValueError("not ours"), [None, None, None]),
    ],
)
def test_errors(error: BaseException, delays: list[float | None]) -> None:
    assert [RETRY.next_delay(n, error=error) for n in (1, 2, 3)] == delays


@pytest.mark.parametrize(
    ("status", "retry_after", "delays"),
    [
        (503, None, [0.5, 1.5, None]),
        (429, "7", [7.0, 7.0, None]),
        (503, "120", [10.0, 10.0, None]),  # capped at max_backoff
        (503, "soon", [0.5, 1.5, None]),  # unparsable: the backoff
        (404, "1", [None, None, None]),
        (200, None, [None, None, None]),
    ],
)
def test_statuses(status: int, retry_after: str | None, delays: list[float | None]) -> None:
    got = [RETRY.next_delay(n, status=status, retry_after=retry_after) for n in (1, 2, 3)]
    assert got == delays


def test_retry_on_status_off_retries_errors_only() -> None:
    retry = RetryConfig(max_retries=1, retry_on_status=False, initial_backoff=0.1)
    assert retry.next_delay(1, status=503) is None
    assert retry.next_delay(1, error=ConnectError("x")) == 0.1
    assert retry.next_delay(1, error=StatusError("503", response=None)) is None  # type: ignore[arg-type]


# -- the layer's decisions: jitter, methods, Retry-After caps, budget -----------------------


def test_jitter_scales_a_backoff_down_by_at_most_its_share() -> None:
    retry = RetryConfig(initial_backoff=1.0, jitter=0.5)
    assert retry.next_delay(1, status=503) == 1.0  # no rand: exact
    assert retry.next_delay(1, status=503, rand=0.0) == 1.0
    assert retry.next_delay(1, status=503, rand=0.999) == pytest.approx(0.5005)
    assert retry.next_delay(1, status=503, retry_after="3", rand=0.9) == 3.0  # server's time
    assert RetryConfig(jitter=0).next_delay(1, status=503, rand=0.7) == 0.1


def test_methods_default_to_the_idempotent_ones() -> None:
    retry = RetryConfig()
    assert all(retry.retries_method(m) for m in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS"))
    assert not retry.retries_method("POST") and not retry.retries_method("PATCH")
    assert RetryConfig(methods=None).retries_method("POST")
    assert RetryConfig(methods=("post",)).methods == ("POST",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9999999999", 5.0),  # urllib3 PR #3743: OverflowError in time.sleep
        ("9" * 400, 5.0),  # float("9"*400) is inf: capped, not an error
        ("3600", 5.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 5.0),
        ("2", 2.0),
        ("-5", 0.1),  # not delay-seconds: the backoff
        ("1e9", 0.1),
        ("+3", 0.1),
        ("0x10", 0.1),
        ("\u0661\u0662", 0.1),  # Arabic-Indic digits: str.isdigit() says yes, RFC 9110 no
        ("Mon, 99 Foo 10000 99:99:99 GMT", 0.1),
        ("", 0.1),
    ],
)
def test_retry_after_is_capped_and_garbage_ignored(value: str, expected: float) -> None:
    retry = RetryConfig(initial_backoff=0.1, max_retry_after=5.0)
    assert retry.next_delay(1, status=503, retry_after=value) == expected


def test_max_retry_after_defaults_to_max_backoff() -> None:
    assert RetryConfig(max_backoff=7.0).next_delay(1, status=429, retry_after="60") == 7.0
    assert (
        RetryConfig(max_backoff=7.0, max_retry_after=90).next_delay(1, status=429, retry_after="60")
        == 60.0
    )


def test_budget_allows_a_share_of_requests_over_a_sliding_window() -> None:
    from aioduct.retries import RetryBudget

    budget = RetryBudget(0.2, window=10.0)
    for _ in range(4):
        budget.record_request(0.0)
    assert not budget.try_retry(0.0)  # 1 retry > 20% of 4 requests
    budget.record_request(0.5)
    assert budget.try_retry(0.5)  # 1 <= 20% of 5
    assert not budget.try_retry(0.5)
    for _ in range(5):
        budget.record_request(1.0)
    assert budget.try_retry(1.0)  # 2 <= 20% of 10
    assert not budget.try_retry(1.0)
    # ten seconds on, those requests and retries have left the window
    assert not budget.try_retry(11.5)
    budget.record_request(11.5)
    for _ in range(4):
        budget.record_request(11.6)
    assert budget.try_retry(11.6)
