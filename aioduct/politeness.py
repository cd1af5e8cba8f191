"""Politeness towards each origin, as decisions: per-host slots.

A bulk run may promise a server at most ``per_host_concurrency`` of its requests in
flight at once. The bookkeeping lives here, written once, with no awaiting of its own:

* :meth:`HostGates.enter` takes a slot for a job, or queues it (``False``) when the
  host's slots are all taken;
* :meth:`HostGates.leave` gives a finished job's slot back, or hands it straight to the
  first queued job;
* :meth:`HostGates.withdraw` takes back a queued job that will not run after all
  (:meth:`HostGates.drop_where`: every queued job of a kind, e.g. one map's).

A host whose slots are all free is forgotten: a crawl may touch millions of hosts, and
an idle one costs no memory. (Pacing, ``per_host_rate``, is the client's rate-limit
layer: :class:`aioduct.RateLimit` with ``per_host=True``, see :mod:`aioduct.limits`.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["HostGates"]

Ticket = TypeVar("Ticket")


class _Host(Generic[Ticket]):
    __slots__ = ("active", "queue")

    def __init__(self) -> None:
        self.active = 0
        self.queue: deque[Ticket] = deque()


class HostGates(Generic[Ticket]):
    """The per-origin state of one runner (see the module docstring).

    ``Ticket`` is whatever the caller needs back to resume a queued job: a future, an
    entry of its own. Tickets are compared by identity when withdrawn.
    """

    __slots__ = ("_hosts", "_limit")

    def __init__(self, per_host_concurrency: int | None) -> None:
        if per_host_concurrency is not None and per_host_concurrency < 1:
            raise ValueError(f"per_host_concurrency must be >= 1, not {per_host_concurrency}")
        self._limit = per_host_concurrency
        self._hosts: dict[Hashable, _Host[Ticket]] = {}

    @property
    def active(self) -> bool:
        """Whether there is anything to enforce (no limit: callers may skip the gates)."""
        return self._limit is not None

    def enter(self, origin: Hashable, ticket: Ticket) -> bool:
        """Take a slot for ``ticket`` (True), or queue it until one is handed over (False)."""
        host = self._hosts.get(origin)
        if host is None:
            host = self._hosts[origin] = _Host()
        limit = self._limit
        if limit is not None and host.active >= limit:
            host.queue.append(ticket)
            return False
        host.active += 1
        return True

    def leave(self, origin: Hashable) -> Ticket | None:
        """Give a slot of ``origin`` back: the queued ticket it passes to, if any."""
        host = self._hosts.get(origin)
        if host is None:
            raise KeyError(f"no job of {origin!r} holds a slot")
        if host.queue:
            return host.queue.popleft()  # active is unchanged
        host.active -= 1
        if host.active == 0:
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

    def drop_where(self, condition: Callable[[Ticket], bool]) -> int:
        """Take back every queued ticket ``condition`` accepts (their jobs will not run);
        returns how many. Queued tickets hold no slot, so nothing else changes."""
        dropped = 0
        for host in self._hosts.values():
            kept = [ticket for ticket in host.queue if not condition(ticket)]
            dropped += len(host.queue) - len(kept)
            host.queue = deque(kept)
        return dropped

    def __len__(self) -> int:
        """Hosts with state (slots taken or jobs queued)."""
        return len(self._hosts)
