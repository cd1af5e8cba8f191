"""A paused reader of a streamed HTTP/3 response holds bounded memory on both QUIC
libraries (issue 13, hostile-input class: a server pushing a large body at a reader
that does not keep up). aioquic credits the server as the reader consumes, so the
server waits at the window; qh3 credits in its Rust core as data arrives, so the
stream fails once it holds more than ``unread_limit`` unread, and is stopped at the
server, while the connection and its other streams carry on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

import aioduct
from aioduct.http3 import unread_limit
from aioduct.testing.h3server import H3Server
from aioduct.testing.nginx import TLSMaterial, deterministic_bytes

from .conftest import options

STREAM_WINDOW = 256 * 1024
CONNECTION_WINDOW = 1024 * 1024
HUGE = 50_000_000
#: Data may overshoot the bound by what one QUIC event delivers (one packet's frame).
SLACK = 64 * 1024


def windows() -> aioduct.Http3Config:
    return aioduct.Http3Config(max_stream_data=STREAM_WINDOW, max_data=CONNECTION_WINDOW)


def unread(response: aioduct.Response) -> tuple[int, int]:
    """Bytes held unread by this response's exchange, and by its whole connection."""
    exchange = response._body
    assert exchange is not None
    quic = exchange._conn.quic  # type: ignore[attr-defined]
    return sum(len(c) for c, _ in exchange.chunks), quic.held_total  # type: ignore[attr-defined]


async def _pause_until(r: aioduct.Response, stop: object, peak: list[int]) -> None:
    """Do not read ``r``; watch what it holds until ``stop()`` (or a bounded wait)."""
    for _ in range(2000):  # at most ~20 s; the server needs far less to overrun
        on_stream, on_connection = unread(r)
        peak[0] = max(peak[0], on_stream)
        peak[1] = max(peak[1], on_connection)
        if stop():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)


async def test_paused_reader_of_a_huge_body_is_bounded(
    h3: H3Server, tls_ca: TLSMaterial, quic_backend: str
) -> None:
    limit = unread_limit(windows())
    async with aioduct.Client(**options(tls_ca, http3_config=windows())) as client:  # type: ignore[arg-type]
        async with client.stream("GET", f"{h3.url}/bytes/{HUGE}") as r:
            exchange = r._body
            assert exchange is not None
            peak = [0, 0]
            if quic_backend == "qh3":
                # Nothing reads: the stream fails once it holds more than the bound.
                await _pause_until(r, lambda: exchange.error is not None, peak)
                assert exchange.error is not None
                # What it held is dropped at once, not when the reader comes back.
                assert unread(r)[0] == 0
                # The other streams of the connection are not affected.
                small = await asyncio.gather(*(client.get(f"{h3.url}/small") for _ in range(5)))
                assert all(s.status == 200 and s.http_version == "HTTP/3" for s in small)
                with pytest.raises(aioduct.ReadError) as caught:
                    async for _chunk in r.aiter_raw():
                        pass
                message = str(caught.value)
                assert f"stream {exchange.stream_id}" in message
                assert "max_stream_data" in message and "backend='aioquic'" in message
                assert "Read the body faster" in message
            else:
                # The server stops at the window, however long the reader pauses.
                conn = exchange._conn  # type: ignore[attr-defined]
                await _pause_until(
                    r, lambda: conn.quic.held.get(exchange.stream_id, 0) >= STREAM_WINDOW // 2, peak
                )
                await asyncio.sleep(0.3)  # a server ignoring the window would overrun now
                small = await client.get(f"{h3.url}/small")
                assert small.status == 200
                received = 0
                async for chunk in r.aiter_raw():
                    received += len(chunk)
                    if received >= 2_000_000:
                        break  # bounded all along; the rest would only take time
                assert exchange.error is None
            assert peak[0] <= limit + SLACK
            assert peak[1] <= 2 * CONNECTION_WINDOW + SLACK
        # The memory is released, and the same connection takes the next request.
        conn = exchange._conn  # type: ignore[attr-defined]
        assert conn.quic.held_total == 0 and not conn.quic.held
        again = await client.get(f"{h3.url}/bytes/1000000")
    assert again.content == deterministic_bytes(1_000_000)
    assert h3.connections_accepted == 1


async def test_streams_of_one_connection_bound_together(
    h3: H3Server, tls_ca: TLSMaterial, quic_backend: str
) -> None:
    """Several paused readers, each within its stream's bound: on qh3 the connection's
    bound (``2 * max_data``) fails the stream that holds the most and the connection
    carries on; on aioquic the connection window holds the server back (and, as on
    HTTP/2, paused readers that hold all of it stall the connection's other streams)."""
    config = aioduct.Http3Config(max_stream_data=STREAM_WINDOW, max_data=64 * 1024)
    async with (
        aioduct.Client(**options(tls_ca, http3_config=config)) as client,  # type: ignore[arg-type]
        AsyncExitStack() as stack,
    ):
        streams = [
            await stack.enter_async_context(client.stream("GET", f"{h3.url}/bytes/{HUGE}?i={i}"))
            for i in range(3)
        ]
        exchanges = [r._body for r in streams]
        conn = exchanges[0]._conn  # type: ignore[union-attr]
        peak = [0, 0]
        if quic_backend == "qh3":
            await _pause_until(
                streams[0],
                lambda: any(e.error is not None for e in exchanges),
                peak,  # type: ignore[union-attr]
            )
            failed = [e for e in exchanges if e is not None and e.error is not None]
            # (the survivors keep filling: a second may fail before we look)
            assert failed and all("Http3Config.max_data" in str(e.error) for e in failed)
            assert conn.quic.held_total <= 2 * config.max_data + SLACK
        else:
            await _pause_until(
                streams[0], lambda: conn.quic.held_total >= config.max_data // 2, peak
            )
            await asyncio.sleep(0.3)  # a server ignoring the window would overrun now
            assert conn.quic.held_total <= config.max_data + SLACK
            assert all(e.error is None for e in exchanges)  # type: ignore[union-attr]
            return  # (the paused readers hold the connection window: nothing else flows)
        small = await client.get(f"{h3.url}/small")
        assert small.status == 200 and h3.connections_accepted == 1


def _tripping_config(quic_backend: str) -> tuple[aioduct.Http3Config, int]:
    """A config and a body size held whole just under the connection's bound (qh3);
    on aioquic the connection window would hold a second stream back: a large one."""
    max_data = 64 * 1024 if quic_backend == "qh3" else CONNECTION_WINDOW
    config = aioduct.Http3Config(max_stream_data=STREAM_WINDOW, max_data=max_data)
    return config, 2 * 64 * 1024 - 50


async def _held_whole(big: aioduct.Response) -> None:
    exchange = big._body
    assert exchange is not None
    for _ in range(500):  # the whole big body arrives, unread
        if exchange.ended or exchange.error is not None:  # type: ignore[attr-defined]
            return
        await asyncio.sleep(0.01)


async def _read(r: aioduct.Response) -> bytes:
    got = b""
    async for chunk in r.aiter_raw():
        got += chunk
    return got


@asynccontextmanager
async def _tripped(
    h3: H3Server, tls_ca: TLSMaterial, quic_backend: str
) -> AsyncIterator[tuple[aioduct.Response, bytes, int]]:
    """A big stream held whole, then a small one read to its end, whose last data trips
    the connection's bound: yields the big stream, the small one's body, the big size."""
    config, big_size = _tripping_config(quic_backend)
    async with (
        aioduct.Client(**options(tls_ca, http3_config=config, read_timeout=5)) as client,  # type: ignore[arg-type]
        client.stream("GET", f"{h3.url}/bytes/{big_size}") as big,
    ):
        await _held_whole(big)
        async with client.stream("GET", f"{h3.url}/bytes/100") as small:
            small_body = await _read(small)
        yield big, small_body, big_size


async def test_a_stream_tripping_the_connection_bound_for_another_still_ends(
    h3: H3Server, tls_ca: TLSMaterial, quic_backend: str
) -> None:
    """The connection's bound trips on a small stream's last data, but the stream
    failed is the one holding the most: the small stream must still see its end (its
    event was cut short after the overflow: no end, no wake, its reader waited until
    the read timeout)."""
    async with _tripped(h3, tls_ca, quic_backend) as (_, small_body, _):
        assert small_body == deterministic_bytes(100)


async def test_a_complete_stream_cut_off_by_the_bound_is_not_read_as_complete(
    h3: H3Server, tls_ca: TLSMaterial, quic_backend: str
) -> None:
    """The stream the connection's bound fails may have received its whole body
    already: what it held is dropped, so its reader must get the error, never a
    shorter body that ends cleanly (the ended stream kept no error: silent truncation)."""
    async with _tripped(h3, tls_ca, quic_backend) as (big, _, big_size):
        try:
            body = await _read(big)
        except aioduct.ReadError as exc:
            assert "Http3Config.max_data" in str(exc)
        else:
            assert body == deterministic_bytes(big_size)
