"""aioduct.runtimes.udp: HTTP/3's UDP sockets read in bursts, on real loopback sockets.

A sender with segmentation offload (``UDP_SEGMENT``, as quic-go uses) reaches a GRO
socket as one coalesced buffer, which must come out as the datagrams that were sent;
a sender without it turns GRO off after the trial; the event-loop socket's lazily
armed timer still expires each wait at its own deadline.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from aioduct.runtimes import Expired
from aioduct.runtimes.blocking import BlockingRuntime
from aioduct.runtimes.udp import GRO_ON, GRO_TRIAL, LoopDatagrams, drain, open_socket

_UDP_SEGMENT = 103

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="UDP GRO/GSO are Linux's")


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def _pair(peer: socket.socket) -> tuple[socket.socket, int]:
    sock, gro = open_socket("127.0.0.1", peer.getsockname()[1], None)
    peer.connect(sock.getsockname())
    return sock, gro


def _wait_readable(sock: socket.socket) -> None:
    import select

    select.select([sock], [], [], 5)
    time.sleep(0.01)  # the rest of a burst


def test_coalesced_buffer_comes_out_as_the_datagrams_sent(peer: socket.socket) -> None:
    sock, gro = _pair(peer)
    with sock:
        assert gro == GRO_TRIAL
        peer.setsockopt(socket.IPPROTO_UDP, _UDP_SEGMENT, 1000)
        payload = bytes(range(256)) * 20  # 5120 bytes: five 1000-byte segments and 120
        peer.send(payload)
        _wait_readable(sock)
        out: list[bytes] = []
        state = drain(sock, out, gro)
    assert [len(d) for d in out] == [1000] * 5 + [120]
    assert b"".join(out) == payload
    assert state == GRO_ON  # the sender coalesces: GRO stays on


def test_gro_is_switched_off_when_the_sender_never_coalesces(peer: socket.socket) -> None:
    sock, gro = _pair(peer)
    with sock:
        sent = [i.to_bytes(2, "big") * 600 for i in range(GRO_TRIAL + 10)]
        out: list[bytes] = []
        state = gro
        for i in range(0, len(sent), 50):  # within the socket's receive buffer
            for datagram in sent[i : i + 50]:
                peer.send(datagram)
            _wait_readable(sock)
            state = drain(sock, out, state)
        assert state == 0
        assert sock.getsockopt(socket.IPPROTO_UDP, 104) == 0  # UDP_GRO off
        peer.send(b"after")  # now read with plain recv
        _wait_readable(sock)
        state = drain(sock, out, state)
    assert out == [*sent, b"after"]


async def test_loop_socket_expires_each_wait_at_its_deadline(peer: socket.socket) -> None:
    await _expiry(peer)


@pytest.mark.uvloop
async def test_loop_socket_expires_each_wait_at_its_deadline_on_uvloop(
    peer: socket.socket,
) -> None:
    await _expiry(peer)


async def _expiry(peer: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    sock, gro = _pair(peer)
    udp = LoopDatagrams(loop, sock, gro, ("127.0.0.1", peer.getsockname()[1]))
    try:
        # A wait that data ends early leaves its loop timer armed...
        peer.send(b"early")
        assert await udp.recv(loop.time() + 0.05) == [b"early"]
        # ...and a later deadline keeps it: it fires early, re-arms, and the wait
        # still ends at its own deadline, not before.
        start = loop.time()
        with pytest.raises(Expired):
            await udp.recv(start + 0.15)
        assert loop.time() >= start + 0.15 - 0.002  # (uvloop's clock has 1 ms steps)
        # A nearer deadline than the armed one re-arms it earlier.
        await asyncio.sleep(0)
        far = asyncio.ensure_future(udp.recv(loop.time() + 30))
        await asyncio.sleep(0.01)
        udp.wake()
        assert await far == []
        start = loop.time()
        with pytest.raises(Expired):
            await asyncio.wait_for(udp.recv(start + 0.05), 5)
        # A deadline already due gives the loop one turn, then expires.
        with pytest.raises(Expired):
            await udp.recv(loop.time() - 1)
        peer.send(b"ping")
        assert await udp.recv(loop.time() + 5) == [b"ping"]
        # wake() ends a wait with nothing; close() ends the socket.
        waiter = asyncio.ensure_future(udp.recv(None))
        await asyncio.sleep(0.01)
        udp.wake()
        assert await waiter == []
    finally:
        udp.close()
    with pytest.raises(ConnectionResetError):
        await udp.recv(None)


async def test_loop_socket_reports_an_unreachable_port() -> None:
    loop = asyncio.get_running_loop()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: ICMP port unreachable
    sock, gro = open_socket("127.0.0.1", port, None)
    udp = LoopDatagrams(loop, sock, gro, ("127.0.0.1", port))
    try:
        udp.send(b"hello?")
        with pytest.raises(ConnectionRefusedError):
            for _ in range(3):  # the error may come with an empty wake first
                await udp.recv(loop.time() + 5)
    finally:
        udp.close()


async def test_blocking_socket_reads_a_coalesced_burst(peer: socket.socket) -> None:
    udp = await BlockingRuntime().open_udp("127.0.0.1", peer.getsockname()[1])
    try:
        peer.connect(udp._sock.getsockname())
        peer.setsockopt(socket.IPPROTO_UDP, _UDP_SEGMENT, 700)
        peer.send(b"x" * 2000)
        received = await udp.recv(time.monotonic() + 5)
        while sum(map(len, received)) < 2000:
            received += await udp.recv(time.monotonic() + 5)
    finally:
        udp.close()
    assert [len(d) for d in received] == [700, 700, 600]
