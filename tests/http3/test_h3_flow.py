"""HTTP/3 receive flow control credited as the reader consumes (issue 13), against
aioquic's server on loopback: a paused reader holds at most one window of data."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import aioduct
from aioduct.testing.h3server import H3Request, H3Server
from aioduct.testing.nginx import TLSMaterial, deterministic_bytes

STREAM_WINDOW = 256 * 1024
CONNECTION_WINDOW = 512 * 1024
SIZE = 20_000_000


@pytest.fixture(autouse=True)
def _each_quic_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    """Crediting as the reader consumes is aioquic's (qh3 credits in its Rust core, which
    has no hook for it): these run on aioquic only, overriding the package's fixture."""
    monkeypatch.setenv("AIODUCT_HTTP3_BACKEND", "aioquic")
    return "aioquic"


@pytest.fixture
def h3(tls_ca: TLSMaterial) -> Iterator[H3Server]:
    with H3Server(tls_ca.files) as srv:
        yield srv


def options(tls_ca: TLSMaterial) -> dict[str, object]:
    windows = aioduct.Http3Config(max_stream_data=STREAM_WINDOW, max_data=CONNECTION_WINDOW)
    return {"http3_prior_knowledge": True, "verify": tls_ca.ca_pem_path, "http3_config": windows}


def held(response: aioduct.Response) -> tuple[int, int]:
    """Bytes waiting unread on this response's exchange, and on its whole connection."""
    exchange = response._body
    assert exchange is not None
    quic = exchange._conn.quic  # type: ignore[attr-defined]
    return sum(len(c) for c, _ in exchange.chunks), quic.held_total  # type: ignore[attr-defined]


async def test_paused_reader_buffers_at_most_one_window(h3: H3Server, tls_ca: TLSMaterial) -> None:
    expected = deterministic_bytes(SIZE)
    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]
        async with client.stream("GET", f"{h3.url}/bytes/{SIZE}") as r:
            received = bytearray()
            pauses = 0
            async for chunk in r.aiter_raw():
                received += chunk
                if len(received) // 2_000_000 > pauses:
                    pauses += 1
                    # The server keeps sending while we do not read; it must stop at
                    # the window instead of filling the client's memory.
                    await asyncio.sleep(0.05)
                on_stream, on_connection = held(r)
                assert on_stream <= STREAM_WINDOW
                assert on_connection <= CONNECTION_WINDOW
            assert pauses >= 9
        assert bytes(received) == expected
        # The connection is still good (and credited) for the next request.
        again = await client.get(f"{h3.url}/bytes/1000000")
    assert again.content == expected[:1_000_000]
    assert h3.connections_accepted == 1


async def test_concurrent_paused_readers_share_the_connection_window(
    h3: H3Server, tls_ca: TLSMaterial
) -> None:
    expected = deterministic_bytes(3_000_000)
    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]

        async def slow_read(i: int) -> bytes:
            async with client.stream("GET", f"{h3.url}/bytes/3000000?i={i}") as r:
                parts = []
                async for chunk in r.aiter_raw():
                    parts.append(chunk)
                    if len(parts) % 200 == 0:
                        await asyncio.sleep(0.01)
                    assert held(r)[1] <= CONNECTION_WINDOW
                return b"".join(parts)

        bodies = await asyncio.gather(*(slow_read(i) for i in range(4)))
    assert bodies == [expected] * 4 and h3.connections_accepted == 1


async def test_abandoned_stream_gives_its_window_back(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]
        async with client.stream("GET", f"{h3.url}/bytes/{SIZE}") as r:
            conn = r._body._conn  # type: ignore[union-attr]
            async for _chunk in r.aiter_raw():
                await asyncio.sleep(0.05)  # let the window fill, then walk away
                break
        assert conn.quic.held_total == 0 and not conn.quic.held
        # Its unread bytes no longer count against the connection: more than one
        # connection window still flows on it.
        r2 = await client.get(f"{h3.url}/bytes/2000000")
    assert r2.content == deterministic_bytes(2_000_000) and h3.connections_accepted == 1


def test_blocking_client_streams_within_the_window(h3: H3Server, tls_ca: TLSMaterial) -> None:
    received = bytearray()
    with (
        aioduct.BlockingClient(**options(tls_ca)) as client,  # type: ignore[arg-type]
        client.stream("GET", f"{h3.url}/bytes/5000000") as r,
    ):
        for chunk in r.iter_raw():
            received += chunk
            assert held(r)[0] <= STREAM_WINDOW
    assert bytes(received) == deterministic_bytes(5_000_000)


def test_local_engine_worker_download_through_small_windows(
    h3: H3Server, tls_ca: TLSMaterial
) -> None:
    with aioduct.LocalEngine(workers=1, **options(tls_ca)) as engine:  # type: ignore[arg-type]
        (result,) = list(engine.map([f"{h3.url}/bytes/5000000"]))
    assert result.error is None and result.body == deterministic_bytes(5_000_000)


async def test_header_block_larger_than_a_small_window(h3: H3Server, tls_ca: TLSMaterial) -> None:
    """A HEADERS frame arrives whole before HTTP/3 decodes it: one larger than the
    stream window must still get in (it is not data the reader could consume)."""

    @h3.route("/big-head")
    async def big_head(req: H3Request) -> None:
        req.respond(200, b"body", [("x-big", "v" * 20_000)])

    tiny = aioduct.Http3Config(max_stream_data=4096, max_data=8192)
    async with aioduct.Client(
        http3_prior_knowledge=True, verify=tls_ca.ca_pem_path, http3_config=tiny
    ) as client:
        r = await client.get(h3.url + "/big-head")
        streamed = await client.get(f"{h3.url}/bytes/300000")
    assert r.headers["x-big"] == "v" * 20_000 and r.content == b"body"
    assert streamed.content == deterministic_bytes(300_000)
