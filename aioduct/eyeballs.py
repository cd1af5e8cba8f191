"""Happy eyeballs (RFC 8305): connect to whichever of a host's addresses answers first.

A host with IPv6 and IPv4 addresses may have one family broken (a blackholed route, a
firewall dropping SYNs): trying the addresses one by one waits a whole connect timeout
for each dead one. Instead the addresses are ordered IPv6 first, families interleaved
(§4), and a new attempt starts ``delay`` seconds after the previous one began, or at
once when one fails (§5); the first connection to succeed wins and every other attempt
is cancelled and its socket closed.

How the race runs depends on the runtime:

* with background tasks (asyncio, uvloop, io_uring): one task per attempt;
* on the blocking runtime (no loop, no tasks): non-blocking sockets in one
  ``selectors`` wait, in the calling thread (:func:`race_sockets`);
* on any other runtime without tasks: one address at a time, each given ``delay``
  as its connect timeout before the next is tried (the last one gets the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import selectors
import socket
import time
from collections.abc import Awaitable, Callable
from itertools import zip_longest
from typing import Any, cast

from .errors import ConnectError
from .runtimes import Expired, Runtime, Stream

__all__ = ["connect", "format_address", "interleave", "race_sockets"]

#: ``(family, ip, port)``
Target = tuple[int, str, int]


def interleave(targets: list[Target]) -> list[Target]:
    """IPv6 first, then the families alternating (RFC 8305 §4), each family's order kept."""
    if len(targets) < 2:
        return targets
    v6 = [t for t in targets if t[0] == socket.AF_INET6]
    rest = [t for t in targets if t[0] != socket.AF_INET6]
    if not v6 or not rest:
        return targets
    out: list[Target] = []
    for a, b in zip_longest(v6, rest):
        if a is not None:
            out.append(a)
        if b is not None:
            out.append(b)
    return out


def format_address(ip: str, port: int) -> str:
    """``ip:port``, with brackets around an IPv6 address (as in a URL)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


async def connect(
    runtime: Runtime,
    targets: list[Target],
    *,
    delay: float | None,
    deadline: float | None,
    local_address: str | None = None,
    keepalive: float | None = None,
    host: str = "",
) -> tuple[Stream, Target]:
    """A stream connected to the first of ``targets`` to answer, and which one it was.

    Raises :class:`ConnectError` listing each address's failure, or
    :class:`~aioduct.runtimes.Expired` when ``deadline`` passes first.
    """
    ordered = interleave(targets)

    def open_one(target: Target, until: float | None = deadline) -> Awaitable[Stream]:
        return runtime.open_tcp(
            target[1],
            target[2],
            deadline=until,
            local_address=local_address,
            keepalive=keepalive,
        )

    errors: list[str] = []
    if len(ordered) > 1 and delay is not None:
        if runtime.background:
            won = await _race_tasks(ordered, delay, open_one, errors)
        else:
            adopt = getattr(runtime, "adopt_socket", None)
            if adopt is not None:
                found = race_sockets(
                    ordered, delay=delay, deadline=deadline, local_address=local_address
                )
                errors.extend(found[2])
                won = None
                if found[0] is not None:
                    assert found[1] is not None
                    won = adopt(found[0], keepalive=keepalive), found[1]
            else:
                won = await _one_by_one(runtime, ordered, delay, deadline, open_one, errors)
    else:
        won = await _one_by_one(runtime, ordered, None, deadline, open_one, errors)
    if won is None:
        name = host or format_address(ordered[0][1], ordered[0][2])
        raise ConnectError(f"cannot connect to {name} ({'; '.join(errors)})")
    return won


def _describe(target: Target, exc: BaseException) -> str:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"{format_address(target[1], target[2])}: {reason}"


async def _one_by_one(
    runtime: Runtime,
    targets: list[Target],
    delay: float | None,
    deadline: float | None,
    open_one: Callable[[Target, float | None], Awaitable[Stream]],
    errors: list[str],
) -> tuple[Stream, Target] | None:
    """Each address in turn; with ``delay``, each but the last gets that long."""
    for index, target in enumerate(targets):
        until = deadline
        last = index == len(targets) - 1
        if delay is not None and not last:
            own = runtime.now() + delay
            until = own if deadline is None or own < deadline else deadline
        try:
            return await open_one(target, until), target
        except Expired:
            if until is deadline:
                raise
            errors.append(f"{format_address(target[1], target[2])}: no answer in {delay} s")
        except OSError as exc:
            errors.append(_describe(target, exc))
    return None


async def _race_tasks(
    targets: list[Target],
    delay: float,
    open_one: Callable[[Target], Awaitable[Stream]],
    errors: list[str],
) -> tuple[Stream, Target] | None:
    """The race with a task per attempt (runtimes with background tasks)."""
    queue = list(targets)
    running: dict[asyncio.Future[Stream], Target] = {}
    try:
        while True:
            if queue:
                target = queue.pop(0)
                running[asyncio.ensure_future(open_one(target))] = target
            if not running:
                return None
            done, _ = await asyncio.wait(
                running, timeout=delay if queue else None, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                target = running.pop(task)
                exc = task.exception()
                if exc is None:
                    return task.result(), target
                if not isinstance(exc, OSError):
                    raise exc  # Expired (the deadline): every attempt shares it
                errors.append(_describe(target, exc))
            # A failure or the delay: the loop starts the next attempt now.
    finally:
        if running:
            for task in running:
                task.cancel()
            results = await asyncio.gather(*running, return_exceptions=True)
            for result in results:
                if not isinstance(result, BaseException):
                    result.close()  # connected after the winner: not needed


def race_sockets(
    targets: list[Target],
    *,
    delay: float,
    deadline: float | None,
    local_address: str | None = None,
) -> tuple[socket.socket | None, Target | None, list[str]]:
    """The race on non-blocking sockets in one ``selectors`` wait, in this thread.

    Returns the connected socket (switched back to blocking) and its target, or
    ``(None, None, errors)`` when every address failed. Raises
    :class:`~aioduct.runtimes.Expired` when ``deadline`` (``time.monotonic()``) passes.
    """
    selector = selectors.DefaultSelector()
    attempts: dict[socket.socket, Target] = {}
    errors: list[str] = []
    queue = list(targets)
    next_at = time.monotonic()
    winner: socket.socket | None = None
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise Expired()
            if queue and (not attempts or now >= next_at):
                target = queue.pop(0)
                sock = _start_connect(target, local_address, errors)
                if sock is None:
                    next_at = now  # failed at once: the next one now
                    continue
                attempts[sock] = target
                selector.register(sock, selectors.EVENT_WRITE)
                next_at = now + delay
                continue
            if not attempts:
                return None, None, errors
            wait = max(0.0, next_at - now) if queue else None
            if deadline is not None:
                left = deadline - now
                wait = left if wait is None else min(wait, left)
            for key, _events in selector.select(wait):
                sock = cast(socket.socket, key.fileobj)
                selector.unregister(sock)
                target = attempts.pop(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:
                    sock.setblocking(True)
                    winner = sock
                    return sock, target, errors
                errors.append(f"{format_address(target[1], target[2])}: {os.strerror(code)}")
                sock.close()
                next_at = time.monotonic()
    finally:
        for sock in attempts:
            if sock is not winner:
                with contextlib.suppress(OSError):
                    sock.close()
        selector.close()


def _start_connect(target: Target, local_address: str | None, errors: list[str]) -> Any:
    """A socket with a connect in progress; ``None`` if it failed at once (noted)."""
    family, ip, port = target
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if local_address:
            sock.bind((local_address, 0))
        code = sock.connect_ex((ip, port))
    except OSError as exc:
        sock.close()
        errors.append(_describe(target, exc))
        return None
    if code not in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
        sock.close()
        errors.append(f"{format_address(ip, port)}: {os.strerror(code)}")
        return None
    return sock
