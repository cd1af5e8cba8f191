"""Retry decisions: what is worth another try, and how long to wait first.

Pure logic, no I/O and no clock of its own, so every engine (the send engine's job
runner, each local-engine worker) makes the same decisions and tests need no sleeping.
The rules follow the book's ``RetryConfig``: connection errors and timeouts are retried,
and so are 5xx and 429 responses unless ``retry_on_status`` is off; other 4xx never are.
The wait is ``min(initial_backoff * multiplier ** n, max_backoff)`` for retry ``n``
(0-based), except that a ``Retry-After`` header on the response (seconds or an HTTP date)
is honoured instead, capped at ``max_backoff``.
"""

from __future__ import annotations

import datetime
import email.utils
import math
from collections.abc import Callable

import msgspec

from .config import SuggestingMeta
from .errors import (
    AioductError,
    ConnectError,
    LocalProtocolError,
    ReadError,
    RemoteProtocolError,
    TimeoutError,
    TLSError,
    WorkerCrashed,
    WriteError,
)

__all__ = ["RetryConfig", "parse_retry_after"]

#: Transport failures that another try may well not meet again.
_TRANSIENT: tuple[type[AioductError], ...] = (
    ConnectError,
    ReadError,
    WriteError,
    RemoteProtocolError,
    TimeoutError,
    WorkerCrashed,
)
#: ... except these, which fail the same way every time.
_PERMANENT: tuple[type[AioductError], ...] = (TLSError, LocalProtocolError)


class RetryConfig(msgspec.Struct, frozen=True, kw_only=True, metaclass=SuggestingMeta):
    """When and how often to retry a request. Durations are seconds."""

    max_retries: int = 3
    """Retries after the first attempt (so at most ``max_retries + 1`` attempts)."""
    initial_backoff: float = 0.1
    max_backoff: float = 30.0
    backoff_multiplier: float = 2.0
    retry_on_status: bool = True
    """Also retry 5xx and 429 responses (other 4xx are never retried)."""

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {self.max_retries}")
        for name in ("initial_backoff", "max_backoff", "backoff_multiplier"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")

    def retries_error(self, exc: BaseException) -> bool:
        """Is a request that failed with ``exc`` worth another try?"""
        return isinstance(exc, _TRANSIENT) and not isinstance(exc, _PERMANENT)

    def retries_status(self, status: int) -> bool:
        """Is a response with this status worth another try?"""
        return self.retry_on_status and (status >= 500 or status == 429)

    def next_delay(
        self,
        attempt: int,
        *,
        error: BaseException | None = None,
        status: int = 0,
        retry_after: str | None = None,
    ) -> float | None:
        """The one retry decision: seconds to wait before another try, or ``None``: stop.

        ``attempt`` is the number of the attempt that just ended (1-based); it failed with
        ``error``, or got a response with ``status`` (and its ``Retry-After`` value).
        """
        if attempt > self.max_retries:
            return None
        if error is not None:
            worth = self.retries_error(error)
        else:
            worth = self.retries_status(status)
            if not worth:
                return None
            return self.backoff(attempt - 1, retry_after)
        return self.backoff(attempt - 1) if worth else None

    def backoff(
        self,
        retry: int,
        retry_after: str | None = None,
        *,
        wall_clock: Callable[[], float] | None = None,
    ) -> float:
        """Seconds to wait before retry number ``retry`` (0-based).

        ``retry_after`` is the response's ``Retry-After`` value, if any; an HTTP date in
        it is measured against ``wall_clock`` (``time.time`` by default).
        """
        if retry_after is not None:
            delay = parse_retry_after(retry_after, wall_clock=wall_clock)
            if delay is not None:
                return min(delay, self.max_backoff)
        try:
            delay = self.initial_backoff * self.backoff_multiplier**retry
        except OverflowError:
            return self.max_backoff
        return min(delay, self.max_backoff)


def parse_retry_after(value: str, *, wall_clock: Callable[[], float] | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` if it cannot be parsed."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 9110 dates are GMT anyway
        when = when.replace(tzinfo=datetime.UTC)
    if wall_clock is None:
        import time

        wall_clock = time.time
    return max(0.0, when.timestamp() - wall_clock())
