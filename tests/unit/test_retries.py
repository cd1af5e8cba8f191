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
