"""Retries: what is worth another try, how long to wait first, and the layer that does it.

The decisions are pure logic, no I/O and no clock of their own, so they are the same on
every driver and tests need no sleeping. The rules follow the book's ``RetryConfig``:
connection errors and timeouts are retried, and so are 5xx and 429 responses unless
``retry_on_status`` is off; other 4xx never are. The wait is
``min(initial_backoff * multiplier ** n, max_backoff)`` for retry ``n`` (0-based), scaled
down by a random factor (``jitter``) so that clients failing together do not retry in
step, except that a ``Retry-After`` header on the response (seconds or an HTTP date) is
honoured instead, capped at ``max_retry_after`` (by default ``max_backoff``): a server
asking for hours, or for a number too large for a float, never makes a client sleep
longer than that.

:class:`RetryLayer` runs those decisions around each send of a client that has
``retry=``: only for idempotent methods unless told otherwise (``methods=``), never for
a request whose body is a one-shot stream, within the request's total deadline, and
within an optional retry budget (``budget=``) that keeps a failing host from being
hammered by every request's retries at once. The bulk engines' ``retry=`` is the same
layer: a :class:`~aioduct.Result`'s ``attempts`` is the response's.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import msgspec

from .bodies import is_replayable
from .errors import (
    AioductError,
    ConnectError,
    ConnectTimeout,
    LocalProtocolError,
    ReadError,
    RemoteProtocolError,
    TimeoutError,
    TLSError,
    WorkerCrashed,
    WriteError,
)
from .suggestions import SuggestingMeta

if TYPE_CHECKING:
    from .layers import Hop, Next
    from .models import Request, Response

__all__ = ["IDEMPOTENT_METHODS", "RetryBudget", "RetryConfig", "RetryLayer", "parse_retry_after"]

#: Methods RFC 9110 §9.2.2 calls idempotent: retried by default.
IDEMPOTENT_METHODS: Final = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")

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
#: Failures before a connection existed: the request never left, so any method may retry.
_NOT_SENT: tuple[type[AioductError], ...] = (ConnectError, ConnectTimeout)

#: A retried response body larger than this is not drained; its connection is closed.
_DRAIN_LIMIT: Final = 64 * 1024


class RetryConfig(msgspec.Struct, frozen=True, kw_only=True, metaclass=SuggestingMeta):
    """When and how often to retry a request. Durations are seconds."""

    max_retries: int = 3
    """Retries after the first attempt (so at most ``max_retries + 1`` attempts)."""
    initial_backoff: float = 0.1
    max_backoff: float = 30.0
    backoff_multiplier: float = 2.0
    retry_on_status: bool = True
    """Also retry 5xx and 429 responses (other 4xx are never retried)."""
    methods: tuple[str, ...] | None = IDEMPOTENT_METHODS
    """Methods retried; ``None``: every method (POST and PATCH too: only if the server
    de-duplicates them). A request that never reached the server (no connection could
    be made) is retried whatever its method."""
    jitter: float = 0.5
    """Each backoff is scaled by a random factor in ``[1 - jitter, 1]``; 0: exact."""
    max_retry_after: float | None = None
    """Longest wait a ``Retry-After`` header may ask for; ``None``: ``max_backoff``."""
    budget: float | None = None
    """Retries allowed as a share of the requests sent over the last ``budget_window``
    seconds (``0.2``: at most one retry per five requests), per client; ``None``: no
    budget. Once spent, failures are returned as they are until requests succeed again."""
    budget_window: float = 10.0
    """The sliding window the budget is counted over."""

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TypeError(f"max_retries must be a whole number, not {self.max_retries!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {self.max_retries}")
        for name in ("initial_backoff", "max_backoff", "backoff_multiplier", "max_retry_after"):
            value = getattr(self, name)
            if value is None and name == "max_retry_after":
                continue
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if not (0 <= self.jitter <= 1):
            raise ValueError(f"jitter must be between 0 and 1, not {self.jitter!r}")
        budget, window = self.budget, self.budget_window
        if budget is not None and not (budget >= 0 and math.isfinite(budget)):
            raise ValueError(f"budget must be a share of requests >= 0 (0.2: 20%), not {budget!r}")
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"budget_window must be finite seconds > 0, not {window}")
        methods = self.methods
        if methods is not None:
            if isinstance(methods, str):
                raise TypeError(
                    f"methods must be a list of methods (or None: all), not the string {methods!r}"
                )
            msgspec.structs.force_setattr(self, "methods", tuple(m.upper() for m in methods))

    def retries_method(self, method: str) -> bool:
        """May a request with this method be sent again after it reached the server?"""
        return self.methods is None or method in self.methods

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
        rand: float | None = None,
    ) -> float | None:
        """The one retry decision: seconds to wait before another try, or ``None``: stop.

        ``attempt`` is the number of the attempt that just ended (1-based); it failed with
        ``error``, or got a response with ``status`` (and its ``Retry-After`` value).
        ``rand`` (in ``[0, 1)``) applies :attr:`jitter` to a backoff; ``None``: none.
        """
        if attempt > self.max_retries:
            return None
        if error is not None:
            if not self.retries_error(error):
                return None
            return self.backoff(attempt - 1, rand=rand)
        if not self.retries_status(status):
            return None
        return self.backoff(attempt - 1, retry_after, rand=rand)

    def backoff(
        self,
        retry: int,
        retry_after: str | None = None,
        *,
        wall_clock: Callable[[], float] | None = None,
        rand: float | None = None,
    ) -> float:
        """Seconds to wait before retry number ``retry`` (0-based).

        ``retry_after`` is the response's ``Retry-After`` value, if any; an HTTP date in
        it is measured against ``wall_clock`` (``time.time`` by default). It is honoured
        as given (no jitter: the server chose the time), up to :attr:`max_retry_after`.
        """
        if retry_after is not None:
            delay = parse_retry_after(retry_after, wall_clock=wall_clock)
            if delay is not None:
                cap = self.max_backoff if self.max_retry_after is None else self.max_retry_after
                return min(delay, cap)
        try:
            delay = min(self.initial_backoff * self.backoff_multiplier**retry, self.max_backoff)
        except OverflowError:
            delay = self.max_backoff
        if rand is not None and self.jitter:
            delay *= 1.0 - self.jitter * rand
        return delay


def parse_retry_after(value: str, *, wall_clock: Callable[[], float] | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` if it cannot be parsed.

    RFC 9110 §10.2.3: ASCII digits (delay-seconds) or an HTTP date. Anything else --
    a sign, a fraction, ``1e9``, other scripts' digits -- is not a value. Huge numbers
    come back as they are (``inf`` at worst): the caller caps them.
    """
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 9110 dates are GMT anyway
        when = when.replace(tzinfo=datetime.UTC)
    if wall_clock is None:
        import time

        wall_clock = time.time
    try:
        return max(0.0, when.timestamp() - wall_clock())
    except (OverflowError, ValueError):
        return None


class RetryBudget:
    """Retries as a share of requests over a sliding window (pure: ``now`` passed in).

    The window is kept as ``slots`` counters per kind, so its memory is fixed however
    busy the client is; a slot older than the window is emptied before it is reused.
    """

    __slots__ = ("_requests", "_retries", "_share", "_slot_len", "_stamps")

    def __init__(self, share: float, window: float, slots: int = 10) -> None:
        self._share = share
        self._slot_len = window / slots
        self._requests = [0] * slots
        self._retries = [0] * slots
        self._stamps = [-1] * slots

    def _slot(self, now: float) -> int:
        tick = int(now / self._slot_len)
        index = tick % len(self._stamps)
        if self._stamps[index] != tick:
            self._stamps[index] = tick
            self._requests[index] = self._retries[index] = 0
        return index

    def _totals(self, now: float) -> tuple[int, int]:
        oldest = int(now / self._slot_len) - len(self._stamps) + 1
        requests = retries = 0
        for i, stamp in enumerate(self._stamps):
            if stamp >= oldest:
                requests += self._requests[i]
                retries += self._retries[i]
        return requests, retries

    def record_request(self, now: float) -> None:
        """A first attempt went out."""
        self._requests[self._slot(now)] += 1

    def try_retry(self, now: float) -> bool:
        """Take one retry from the budget, or say there is none left."""
        requests, retries = self._totals(now)
        if retries + 1 > self._share * requests:
            return False
        self._retries[self._slot(now)] += 1
        return True


class RetryLayer:
    """Sends a request again while :class:`RetryConfig` says so (a layer; see module).

    ``response.attempts`` (and ``attempts`` on the error it finally raises) counts the
    sends of the hop it was made on.
    """

    __slots__ = ("_budget", "_lock", "_random", "config")

    def __init__(self, config: RetryConfig) -> None:
        self.config = config
        self._budget = (
            RetryBudget(config.budget, config.budget_window) if config.budget is not None else None
        )
        self._lock = threading.Lock()
        self._random = random.Random()

    async def __call__(self, request: Request, call_next: Next) -> Response:
        config = self.config
        hop: Hop = call_next.hop  # type: ignore[attr-defined]
        runtime = hop.runtime
        if not is_replayable(request.stream):
            # An iterator body is consumed by the first send: there is nothing to send
            # again. (Buffered bodies -- bytes, str, data=, json= -- and replayable
            # streams -- paths, seekable files, such multipart forms -- are retried.)
            try:
                return await call_next(request)
            except AioductError as exc:
                if config.retries_error(exc) and config.max_retries:
                    exc.add_note(
                        "aioduct: not retried: the request body is a one-shot stream "
                        "(pass bytes, a path or a seekable file to make it retryable)"
                    )
                raise
        method_ok = config.retries_method(request.method)
        budget = self._budget
        if budget is not None:
            with self._lock:
                budget.record_request(runtime.now())
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await call_next(request)
            except AioductError as exc:
                exc.attempts = attempt
                if not (method_ok or isinstance(exc, _NOT_SENT)):
                    raise
                delay = config.next_delay(attempt, error=exc, rand=self._rand())
                if delay is None or not self._may_wait(delay, hop):
                    raise
                await runtime.sleep(delay)
                continue
            response._attempts = attempt
            if not method_ok or not config.retries_status(response.status):
                return response
            delay = config.next_delay(
                attempt,
                status=response.status,
                retry_after=response.headers.get("retry-after"),
                rand=self._rand(),
            )
            if delay is None or not self._may_wait(delay, hop):
                return response
            await _release(response)
            await runtime.sleep(delay)

    def _rand(self) -> float | None:
        return self._random.random() if self.config.jitter else None

    def _may_wait(self, delay: float, hop: Hop) -> bool:
        """Whether a retry after ``delay`` fits the request's deadline and the budget."""
        total_at = hop.deadlines.total_at
        now = hop.runtime.now()
        if total_at is not None and now + delay >= total_at:
            return False  # it would fail with a TotalTimeout before it was sent
        budget = self._budget
        if budget is None:
            return True
        with self._lock:
            return budget.try_retry(now)


async def _release(response: Response) -> None:
    """Let go of a response that will be retried: a small unread body is drained (the
    connection stays reusable), a large or unsized one closes its connection."""
    if response.is_read:
        return
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) <= _DRAIN_LIMIT:
        try:
            await response.aread()
        except AioductError:
            await response.aclose()
    else:
        await response.aclose()
