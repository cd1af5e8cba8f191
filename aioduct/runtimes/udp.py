"""Connected UDP sockets for QUIC, read in bursts: the receive path of HTTP/3.

A bulk HTTP/3 download is ~750 datagrams per MiB, so what each costs on the way in
matters. An asyncio datagram endpoint calls back into Python once per datagram and
(on uvloop) formats the sender's address as text for each. Here the socket is
watched with ``add_reader`` and drained in one callback: repeated ``recv`` until the
kernel has nothing more, no address (the socket is connected), one Python call per
burst.

On Linux the socket also asks for UDP generic receive offload (``UDP_GRO``): when
the sender coalesced datagrams with segmentation offload (quic-go, Caddy's QUIC,
does on Linux), the kernel hands a whole run of same-size datagrams over in one
``recvmsg`` with their size in a control message, and :func:`drain` splits it.

Both the event-loop driver (:class:`LoopDatagrams`) and the blocking driver read
through :func:`drain`; loops without ``add_reader`` (the io_uring proactor) keep the
datagram endpoint.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Final

from . import Expired

__all__ = ["DatagramQueue", "LoopDatagrams", "drain", "open_socket"]

#: Linux's UDP socket options (``<linux/udp.h>``; Python 3.11's socket module has
#: neither name).
_SOL_UDP: Final = 17
_UDP_GRO: Final = 104
#: Largest UDP payload: one coalesced (GRO) buffer is at most this.
_MAX_RECV: Final = 65535
_CMSG_SPACE: Final = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
#: Reads per wake-up before the loop gets its turn back (a flood cannot starve it).
_MAX_READS: Final = 256
#: :func:`drain`'s GRO states: the sender coalesces; datagrams to see before giving up.
GRO_ON: Final = -1
GRO_TRIAL: Final = 256


def open_socket(ip: str, port: int, local_address: str | None) -> tuple[socket.socket, int]:
    """A non-blocking UDP socket connected to ``ip:port``, and its GRO state for
    :func:`drain` (``GRO_TRIAL`` on Linux when the kernel has UDP_GRO, else ``0``)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if local_address:
            sock.bind((local_address, 0))
        sock.connect((ip, port))
    except BaseException:
        sock.close()
        raise
    gro = 0
    if sys.platform == "linux" and _CMSG_SPACE:
        try:
            sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
            gro = GRO_TRIAL
        except OSError:  # a kernel before 5.0: one datagram per read
            pass
    return sock, gro


def drain(sock: socket.socket, out: list[bytes], gro: int) -> int:
    """Append every datagram waiting on ``sock`` to ``out`` (a GRO buffer split into
    its datagrams); return the GRO state for the next call. Raises the socket's error
    (ICMP unreachable and the like).

    ``gro``: ``0`` off (plain ``recv``, the cheapest read); ``GRO_ON`` the sender
    coalesces; a positive count is a trial: that many more datagrams may arrive
    uncoalesced before GRO is switched off (``recvmsg`` costs more than ``recv``, and
    a sender without segmentation offload never coalesces).
    """
    if not gro:
        recv = sock.recv
        append = out.append
        for _ in range(_MAX_READS):
            try:
                append(recv(_MAX_RECV))
            except (BlockingIOError, InterruptedError):
                break
        return 0
    recvmsg = sock.recvmsg
    state = gro
    for _ in range(_MAX_READS):
        try:
            data, ancillary, _flags, _addr = recvmsg(_MAX_RECV, _CMSG_SPACE)
        except (BlockingIOError, InterruptedError):
            break
        size = 0
        for level, kind, value in ancillary:
            if level == _SOL_UDP and kind == _UDP_GRO:
                size = int.from_bytes(value[:4], sys.byteorder)
        if size and len(data) > size:
            out.extend([data[i : i + size] for i in range(0, len(data), size)])
            state = GRO_ON
        else:
            out.append(data)
            if state > 0:
                state -= 1
    if state == 0:
        # No coalesced buffer in the trial: off (this call read all that was queued
        # with recvmsg, so nothing coalesced is left for a plain recv to misread).
        try:
            sock.setsockopt(_SOL_UDP, _UDP_GRO, 0)
        except OSError:
            return gro  # keep reading with recvmsg
    return state


class DatagramQueue:
    """What an event loop's :class:`~aioduct.runtimes.Datagrams` keeps between the loop
    and its reader: the datagrams received, the reader's waiter, a pending socket error
    (ICMP), and whether the socket closed."""

    __slots__ = ("_closed", "_error", "_queue", "_waiter")

    def __init__(self) -> None:
        self._queue: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._error: OSError | None = None
        self._closed = False

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _check_open(self) -> None:
        """Nothing is queued: raise the socket's pending error, or that it closed."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._closed:
            raise ConnectionResetError("the UDP socket is closed")


class LoopDatagrams(DatagramQueue):
    """A connected UDP socket on an event loop with ``add_reader`` (asyncio's selector
    loops, uvloop) as :class:`~aioduct.runtimes.Datagrams`.

    QUIC's timer moves with almost every packet (the idle timer later, loss detection
    with each send), and the reader waits until it on every ``recv``: the loop timer
    is therefore armed lazily, only when the deadline moves earlier than the armed
    one; one that fires before the current deadline re-arms for it.
    """

    __slots__ = ("_alarm", "_alarm_at", "_deadline", "_expired", "_gro", "_loop", "_peer", "_sock")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, gro: int, peer: tuple[str, int]
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._gro = gro
        self._peer = peer
        self._deadline: float | None = None
        self._expired = False
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at = 0.0
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        queue = self._queue
        had = len(queue)
        try:
            self._gro = drain(self._sock, queue, self._gro)
        except OSError as exc:  # ICMP port unreachable and the like, on the connected socket
            self._error = exc
            self.wake()
            return
        if not had and queue:
            self.wake()

    def _on_alarm(self) -> None:
        at, self._alarm = self._alarm_at, None
        deadline = self._deadline
        if self._waiter is None or deadline is None:
            return
        if at >= deadline:
            self._expired = True
            self.wake()
        else:  # armed for an earlier deadline that has since moved later
            self._alarm = self._loop.call_at(deadline, self._on_alarm)
            self._alarm_at = deadline

    def send(self, data: bytes) -> None:
        if self._closed:
            raise self._error or ConnectionResetError("the UDP socket is closed")
        try:
            self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            pass  # the kernel's queue is full: dropped, as a network would; QUIC resends

    async def recv(self, deadline: float | None) -> list[bytes]:
        if not self._queue:
            self._check_open()
            loop = self._loop
            if deadline is not None:
                if deadline <= loop.time():
                    # Due now: still give the loop one turn (a flush it has queued may
                    # be what the timer waits for, and datagrams may be waiting).
                    await asyncio.sleep(0)
                    if not self._queue:
                        raise Expired()
                    queue, self._queue = self._queue, []
                    return queue
                alarm = self._alarm
                if alarm is None or deadline < self._alarm_at:
                    if alarm is not None:
                        alarm.cancel()
                    self._alarm = loop.call_at(deadline, self._on_alarm)
                    self._alarm_at = deadline
            self._deadline = deadline
            self._expired = False
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
                self._deadline = None
            if self._expired and not self._queue:
                self._expired = False
                raise Expired()
        queue, self._queue = self._queue, []
        return queue

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        try:
            self._loop.remove_reader(self._sock.fileno())
        except (ValueError, OSError):
            pass
        self._sock.close()
        self.wake()

    @property
    def peer_address(self) -> tuple[str, int]:
        return self._peer
