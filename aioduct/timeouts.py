"""Deadlines: the per-request timeout budget, runtime-agnostic.

A request carries absolute deadlines on the runtime's clock rather than wrapping awaits
in timeout context managers: each wait computes "the earlier of my own limit and the
total deadline" and passes it down as one float, which costs a clock read and no
allocation. When a wait expires, :meth:`Deadlines.error` names the limit that fired.
"""

from __future__ import annotations

from time import perf_counter

from .errors import ConnectTimeout, ReadTimeout, TimeoutError, TotalTimeout, WriteTimeout
from .runtimes import Expired, Runtime

__all__ = ["Deadlines"]

_KINDS: dict[str, tuple[type[TimeoutError], str]] = {
    "connect": (ConnectTimeout, "connect_timeout"),
    "read": (ReadTimeout, "read_timeout"),
    "write": (WriteTimeout, "write_timeout"),
}


class Deadlines:
    """Timeout settings of one request, anchored at its start."""

    __slots__ = ("connect", "now", "pool", "read", "started", "total", "total_at", "write")

    def __init__(
        self,
        runtime: Runtime,
        *,
        total: float | None,
        connect: float | None,
        read: float | None,
        write: float | None,
        pool: float | None = None,
    ) -> None:
        now = self.now = runtime.now
        #: perf_counter() at the start, for Timings (loop clocks can be coarse: uvloop's
        #: has millisecond resolution).
        self.started = perf_counter()
        self.total = total
        self.total_at = None if total is None else now() + total
        self.connect = connect
        self.read = read
        self.write = write
        #: Longest wait for a pooled connection (``pool_timeout``), within the total.
        self.pool = pool

    def _at(self, limit: float | None) -> float | None:
        total_at = self.total_at
        if limit is None:
            return total_at
        when = self.now() + limit
        return when if total_at is None or when < total_at else total_at

    def for_connect(self) -> float | None:
        return self._at(self.connect)

    def for_read(self) -> float | None:
        """The deadline of the next read; raises :class:`~aioduct.runtimes.Expired` once
        the total deadline has passed.

        A read returns at once when bytes are there, and a timer armed in the past fires
        only on the loop's next turn, after the I/O that is ready: so a server that keeps
        sending would outlast the total deadline for ever if no read checked it. Checked
        only where the total is the nearer limit (no cost in the usual case).
        """
        # _at() inlined: computed on every read of every response.
        limit, total_at = self.read, self.total_at
        if limit is None:
            if total_at is not None and self.now() >= total_at:
                raise Expired()
            return total_at
        now = self.now()
        when = now + limit
        if total_at is None or when < total_at:
            return when
        if now >= total_at:
            raise Expired()
        return total_at

    def read_at(self) -> float | None:
        """:meth:`for_read`'s deadline without its check, for a wait that handles its
        own expiry (a bounded wait for ``100 Continue``)."""
        return self._at(self.read)

    def for_write(self) -> float | None:
        return self._at(self.write)

    def error(self, kind: str, what: str) -> TimeoutError:
        """The exception for an expired wait of ``kind`` ("connect", "read", "write")."""
        if self.total_at is not None and self.now() >= self.total_at - 1e-3:
            return TotalTimeout(f"request exceeded timeout={self.total:g}s while {what}")
        cls, option = _KINDS[kind]
        limit = getattr(self, kind)
        return cls(f"{what} took longer than {option}={limit:g}s")
