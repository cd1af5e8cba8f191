"""Name resolution with a small TTL cache and in-flight de-duplication.

``getaddrinfo`` is a blocking call that asyncio runs on a thread; without a cache every
new connection pays a thread round-trip, and a burst of requests to one new host would
launch a burst of identical lookups. IP literals skip resolution entirely.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from typing import Final

from .errors import ConnectError
from .runtimes import Runtime

__all__ = ["Resolver", "literal_address"]

Addresses = list[tuple[int, str]]

_DEFAULT_TTL: Final = 60.0


def literal_address(host: str) -> Addresses | None:
    """``[(family, ip)]`` when ``host`` is an IP literal, else ``None``."""
    family = _literal_family(host)
    return None if family is None else [(family, host)]


@functools.lru_cache(maxsize=1024)
def _literal_family(host: str) -> int | None:
    """The address family of an IP literal, else ``None``.

    Memoised: every new connection asks, and ``ipaddress`` parses in Python.
    """
    if not host or not (host[0].isdigit() or ":" in host):
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return int(socket.AF_INET6 if ip.version == 6 else socket.AF_INET)


class Resolver:
    """Caches ``runtime.resolve`` results for ``ttl`` seconds."""

    __slots__ = ("_cache", "_inflight", "_runtime", "_ttl")

    def __init__(self, runtime: Runtime, ttl: float = _DEFAULT_TTL) -> None:
        self._runtime = runtime
        self._ttl = ttl
        self._cache: dict[tuple[str, int], tuple[float, Addresses]] = {}
        self._inflight: dict[tuple[str, int], asyncio.Future[Addresses]] = {}

    async def resolve(self, host: str, port: int) -> tuple[Addresses, bool]:
        """Addresses for ``host`` and whether a lookup was performed (for timings)."""
        key = (host, port)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > self._runtime.now():
            return hit[1], False
        if not self._runtime.background:  # one lookup at a time in this thread anyway
            return await self._lookup(host, port), True
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending), True
        future: asyncio.Future[Addresses] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            addresses = await self._lookup(host, port)
            future.set_result(addresses)
            return addresses, True
        except BaseException as exc:
            if not future.done():
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
                    future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[key]

    async def _lookup(self, host: str, port: int) -> Addresses:
        try:
            addresses = await self._runtime.resolve(host, port)
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConnectError(f"cannot resolve host {host!r}: {reason}") from None
        if not addresses:
            raise ConnectError(f"cannot resolve host {host!r}: no addresses")
        self._cache[(host, port)] = (self._runtime.now() + self._ttl, addresses)
        return addresses
