"""Politeness towards each origin, as decisions: per-host slots and paced starts.

A bulk run may promise a server two things: at most ``per_host_concurrency`` of its
requests in flight at once, and starts spaced ``1 / per_host_rate`` seconds apart. Both
engines keep that promise, each in its own way of waiting -- a coroutine awaits, a
callback driver arms a timer -- so the bookkeeping lives here, written once, with no
awaiting and no clock of its own (``now`` is passed in, as aioquic takes time):

* :meth:`HostGates.enter` takes a slot for a job and says when it may start, or queues
  it (``None``) when the host's slots are all taken;
* :meth:`HostGates.leave` gives a finished job's slot back, or hands it straight to the
  first queued job (which then starts when :meth:`leave` says);
* :meth:`HostGates.withdraw` takes back a queued job that will not run after all.

A host whose slots are all free and whose pacing no longer constrains anything is
forgotten: a crawl may touch millions of hosts, and an idle one costs no memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["HostGates"]

Ticket = TypeVar("Ticket")


class _Host(Generic[Ticket]):
    __slots__ = ("active", "next_start", "queue")

    def __init__(self) -> None:
        self.active = 0
        self.next_start = 0.0
        self.queue: deque[Ticket] = deque()


class HostGates(Generic[Ticket]):
    """The per-origin state of one runner (see the module docstring).

    ``Ticket`` is whatever the caller needs back to resume a queued job: a future, an
    entry of its own. Tickets are compared by identity when withdrawn.
    """

    __slots__ = ("_hosts", "_interval", "_limit")

    def __init__(self, per_host_concurrency: int | None, per_host_rate: float | None) -> None:
        if per_host_concurrency is not None and per_host_concurrency < 1:
            raise ValueError(f"per_host_concurrency must be >= 1, not {per_host_concurrency}")
        if per_host_rate is not None and not per_host_rate > 0:
            raise ValueError(f"per_host_rate must be > 0 requests/s, not {per_host_rate}")
        self._limit = per_host_concurrency
        self._interval = 1.0 / per_host_rate if per_host_rate else 0.0
        self._hosts: dict[Hashable, _Host[Ticket]] = {}

    @property
    def active(self) -> bool:
        """Whether there is anything to enforce (no limits: callers may skip the gates)."""
        return self._limit is not None or self._interval > 0.0

    def enter(self, origin: Hashable, ticket: Ticket, now: float) -> float | None:
        """Take a slot for ``ticket``: its start time (``>= now``), or ``None`` if queued."""
        host = self._hosts.get(origin)
        if host is None:
            host = self._hosts[origin] = _Host()
        limit = self._limit
        if limit is not None and host.active >= limit:
            host.queue.append(ticket)
            return None
        host.active += 1
        return self._pace(host, now)

    def leave(self, origin: Hashable, now: float) -> tuple[Ticket, float] | None:
        """Give a slot of ``origin`` back: the queued ticket it passes to, and its start."""
        host = self._hosts.get(origin)
        if host is None:
            raise KeyError(f"no job of {origin!r} holds a slot")
        if host.queue:
            return host.queue.popleft(), self._pace(host, now)  # active is unchanged
        host.active -= 1
        if host.active == 0 and host.next_start <= now:
            del self._hosts[origin]
        return None

    def withdraw(self, origin: Hashable, ticket: Ticket) -> bool:
        """Take a queued ``ticket`` back (cancelled before its turn); False if not queued."""
        host = self._hosts.get(origin)
        if host is None:
            return False
        for i, queued in enumerate(host.queue):
            if queued is ticket:
                del host.queue[i]
                return True
        return False

    def _pace(self, host: _Host[Ticket], now: float) -> float:
        interval = self._interval
        if not interval:
            return now
        start = max(now, host.next_start)
        host.next_start = start + interval
        return start

    def __len__(self) -> int:
        """Hosts with state (slots taken, jobs queued, or pacing still in force)."""
        return len(self._hosts)
