"""Client-side limits: a request rate (:class:`RateLimit`) and a download speed.

Both are token buckets, written once as pure logic (:class:`TokenBucket`: no clock and
no sleeping of its own, ``now`` is passed in) and used by two layers that wait on the
hop's runtime, so they work unchanged on every driver:

* :class:`RateLimitLayer` (``rate_limit=aioduct.RateLimit(...)``) holds each send --
  every redirect hop and every retry attempt -- until a token is free, per origin or
  for the whole client. The local engine's ``per_host_rate`` is this limit with
  ``per_host=True`` (an alias, see :func:`per_host_rate_limit`).
* :class:`BandwidthLayer` (``max_download_speed=`` bytes/s) paces the reading of
  response bodies, buffered or streamed, across all the client's requests.

The bucket works by reservation (a GCRA, "generic cell rate algorithm"): each taker is
told when its turn comes and the bucket moves on at once, so concurrent takers queue in
order without a lock held across a wait. State is per client and shared by the threads
of a :class:`~aioduct.BlockingClient` (a lock guards each decision).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING, Final

import msgspec

from .errors import TotalTimeout
from .suggestions import SuggestingMeta

if TYPE_CHECKING:
    from .layers import Next
    from .models import BodyReader, Request, Response
    from .runtimes import Runtime
    from .timeouts import Deadlines

__all__ = ["BandwidthLayer", "RateLimit", "RateLimitLayer", "TokenBucket", "per_host_rate_limit"]


class RateLimit(msgspec.Struct, frozen=True, kw_only=False, metaclass=SuggestingMeta):
    """At most ``rate`` requests per ``per`` seconds, with bursts of up to ``burst``.

    ``burst=None`` means 1: sends are spaced evenly, ``per / rate`` seconds apart.
    ``per_host=True`` keeps one budget per origin (scheme, host, port), which is what
    politeness towards servers asks for; ``False`` one budget for the whole client.
    """

    rate: float
    per: float = 1.0
    burst: int | None = None
    per_host: bool = True

    def __post_init__(self) -> None:
        for name in ("rate", "per"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"RateLimit {name} must be a number, not {value!r}")
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"RateLimit {name} must be a finite number > 0, not {value!r}")
        burst = self.burst
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int)):
            raise TypeError(f"RateLimit burst must be a whole number of requests, not {burst!r}")
        if burst is not None and burst < 1:
            raise ValueError(f"RateLimit burst must be >= 1 (or None), not {burst}")

    @property
    def interval(self) -> float:
        """Seconds one request's token takes to come back."""
        return self.per / self.rate


def per_host_rate_limit(per_host_rate: float | None) -> RateLimit | None:
    """The :class:`RateLimit` the bulk engines' ``per_host_rate=`` stands for."""
    if per_host_rate is None:
        return None
    if isinstance(per_host_rate, bool) or not isinstance(per_host_rate, int | float):
        raise TypeError(f"per_host_rate must be requests per second, not {per_host_rate!r}")
    if not (per_host_rate > 0 and math.isfinite(per_host_rate)):
        raise ValueError(f"per_host_rate must be > 0 requests/s, not {per_host_rate}")
    return RateLimit(float(per_host_rate), per_host=True)


class TokenBucket:
    """Token buckets by key, as decisions: when may ``cost`` units go, given ``now``?

    ``interval`` is the time one unit of cost takes to refill, ``capacity`` how many
    units may go at once after a quiet spell. A key whose bucket is full again is
    forgotten, so a crawl over millions of hosts keeps only the busy ones.
    """

    __slots__ = ("_capacity", "_due", "_interval")

    def __init__(self, interval: float, capacity: float = 1.0) -> None:
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"interval must be a finite number > 0, not {interval!r}")
        if not capacity >= 1:
            raise ValueError(f"capacity must be >= 1, not {capacity!r}")
        self._interval = interval
        self._capacity = capacity
        #: key -> when its bucket would be full again (the GCRA "theoretical arrival time")
        self._due: dict[Hashable, float] = {}

    def take(self, cost: float, now: float, key: Hashable = None) -> float:
        """Reserve ``cost`` units for ``key``: the time (``>= now``) they may be used."""
        due = self._due.get(key, now)
        if due < now:
            due = now
        # Spending may start once the bucket holds enough, i.e. once it is no more than
        # (capacity - cost) units short of full; a cost above capacity waits for a full
        # bucket and then overdraws it.
        slack = (self._capacity - min(cost, self._capacity)) * self._interval
        start = due - slack
        if start < now:
            start = now
        self._due[key] = due + cost * self._interval
        return start

    def forget_idle(self, now: float) -> None:
        """Drop keys whose buckets are full again (their state says nothing any more)."""
        self._due = {key: due for key, due in self._due.items() if due > now}

    def __len__(self) -> int:
        return len(self._due)


#: Forget idle hosts after this many decisions (cheap amortised cleanup).
_SWEEP_EVERY: Final = 1024


class RateLimitLayer:
    """Holds each send until the client's :class:`RateLimit` lets it go (a layer).

    The wait is the client's own choice, not the server's slowness, so it does not
    count towards the request's ``timeout``: the total deadline moves by the time
    waited.
    """

    __slots__ = ("_bucket", "_decisions", "_lock", "_per_host")

    def __init__(self, limit: RateLimit) -> None:
        capacity = float(limit.burst or 1)
        self._bucket = TokenBucket(limit.interval, capacity)
        self._per_host = limit.per_host
        self._lock = threading.Lock()
        self._decisions = 0

    async def __call__(self, request: Request, call_next: Next) -> Response:
        hop = call_next.hop  # type: ignore[attr-defined]
        runtime: Runtime = hop.runtime
        key = request.url.origin if self._per_host else None
        with self._lock:
            now = runtime.now()
            start = self._bucket.take(1.0, now, key)
            self._decisions += 1
            if self._decisions % _SWEEP_EVERY == 0:
                self._bucket.forget_idle(now)
        wait = start - now
        if wait > 0:
            await runtime.sleep(wait)
            deadlines: Deadlines = hop.deadlines
            if deadlines.total_at is not None:
                deadlines.total_at += wait
        return await call_next(request)


# -- bandwidth -------------------------------------------------------------------------------

#: Bodies are paced in pieces of about this share of a second's worth of bytes, so a
#: download advances smoothly rather than in bursts of whole socket reads.
_PIECES_PER_SECOND: Final = 20
_MIN_PIECE: Final = 1024


class BandwidthLayer:
    """Paces the reading of response bodies to ``max_download_speed`` bytes/s (a layer).

    The engine hands a client with this layer each body as a stream (and reads it
    itself when the caller asked for a buffered response), so this layer wraps the
    body reader of every response, on every hop: one bucket for the whole client,
    shared by all its concurrent downloads.
    """

    __slots__ = ("_bucket", "_lock", "_piece")

    def __init__(self, bytes_per_second: int) -> None:
        self._piece = max(_MIN_PIECE, bytes_per_second // _PIECES_PER_SECOND)
        # Capacity: one piece, so the first piece goes at once and the rest are paced.
        self._bucket = TokenBucket(1.0 / bytes_per_second, float(self._piece))
        self._lock = threading.Lock()

    async def __call__(self, request: Request, call_next: Next) -> Response:
        response = await call_next(request)
        body = response._body
        if body is not None:
            hop = call_next.hop  # type: ignore[attr-defined]
            response._body = _PacedBody(body, self, hop.runtime, hop.deadlines)
        return response

    def reserve(self, size: int, now: float) -> float:
        """When ``size`` more bytes may be handed on (``>= now``)."""
        with self._lock:
            return self._bucket.take(float(size), now)


class _PacedBody:
    """A body reader that hands its bytes on no faster than the client's bandwidth."""

    __slots__ = ("_body", "_deadlines", "_layer", "_pending", "_runtime")

    def __init__(
        self, body: BodyReader, layer: BandwidthLayer, runtime: Runtime, deadlines: Deadlines
    ) -> None:
        self._body = body
        self._layer = layer
        self._runtime = runtime
        self._deadlines = deadlines
        self._pending = memoryview(b"")

    async def read_chunk(self) -> bytes | None:
        pending = self._pending
        if not pending:
            chunk = await self._body.read_chunk()
            if chunk is None:
                return None
            if not chunk:
                return chunk
            pending = memoryview(chunk)
        piece_size = self._layer._piece
        piece, self._pending = pending[:piece_size], pending[piece_size:]
        runtime = self._runtime
        now = runtime.now()
        wait = self._layer.reserve(len(piece), now) - now
        if wait > 0:
            total_at = self._deadlines.total_at
            if total_at is not None and now + wait > total_at:
                if total_at > now:
                    await runtime.sleep(total_at - now)
                raise TotalTimeout(
                    f"request exceeded timeout={self._deadlines.total:g}s while its body "
                    f"was read at max_download_speed"
                )
            await runtime.sleep(wait)
        return bytes(piece)

    async def aclose(self) -> None:
        self._pending = memoryview(b"")
        await self._body.aclose()
