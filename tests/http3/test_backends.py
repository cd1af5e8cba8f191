"""What differs between the QUIC libraries (aioduct.quic) and is adapted: each test here
runs on aioquic and on qh3 (tests/http3/conftest.py)."""

from __future__ import annotations

import asyncio

import pytest

import aioduct
from aioduct.http3 import HTTP3Connection
from aioduct.testing.h3server import H3Request, H3Server
from aioduct.testing.nginx import TLSMaterial

from .conftest import options


def h3_connections(client: aioduct.Client) -> list[HTTP3Connection]:
    pool = client._engine.pool  # type: ignore[union-attr]
    assert pool is not None
    return [c for c in pool.shared_connections() if isinstance(c, HTTP3Connection)]


async def test_the_chosen_library_runs(
    h3: H3Server, tls_ca: TLSMaterial, quic_backend: str
) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:
        assert (await client.get(h3.url + "/small")).status == 200
        (conn,) = h3_connections(client)
        assert conn.lib.name == quic_backend
        assert conn.max_streams == 128  # the server's limit, read from each library


async def test_an_explicit_backend_wins_over_the_environment(
    h3: H3Server, tls_ca: TLSMaterial, quic_backend: str
) -> None:
    other = "qh3" if quic_backend == "aioquic" else "aioquic"
    config = aioduct.Http3Config(backend=other)
    async with aioduct.Client(**options(tls_ca, http3_config=config)) as client:
        r = await client.get(h3.url + "/small")
        (conn,) = h3_connections(client)
    assert r.content == b"Hello, World!" and conn.lib.name == other


async def test_interim_heads_and_trailers(h3: H3Server, tls_ca: TLSMaterial) -> None:
    @h3.route("/interim")
    async def interim(req: H3Request) -> None:
        req.send_headers(103, [("link", "</style.css>; rel=preload")])
        req.send_headers(200, [("trailer", "x-checksum")])
        req.send_data(b"body")
        req.conn.h3_connection().send_headers(
            req.stream_id, [(b"x-checksum", b"abc")], end_stream=True
        )
        req.conn.transmit()

    @h3.route("/flood")
    async def flood(req: H3Request) -> None:
        for _ in range(101):
            req.send_headers(103)
        req.send_headers(200, end=True)

    async with aioduct.Client(**options(tls_ca)) as client:
        r = await client.get(h3.url + "/interim")
        with pytest.raises(aioduct.RemoteProtocolError, match="interim"):
            await client.get(h3.url + "/flood")
        after = await client.get(h3.url + "/small")
    assert (r.status, r.content, r.trailers.get("x-checksum")) == (200, b"body", "abc")
    assert after.content == b"Hello, World!" and h3.connections_accepted == 1


async def test_a_response_without_status_fails_and_the_next_request_works(
    h3: H3Server, tls_ca: TLSMaterial
) -> None:
    @h3.route("/nostatus")
    async def nostatus(req: H3Request) -> None:
        req.conn.h3_connection().send_headers(req.stream_id, [(b"x-a", b"b")], end_stream=True)
        req.conn.transmit()

    async with aioduct.Client(**options(tls_ca)) as client:
        # aioquic hands the head over and aioduct refuses it (a stream error); qh3's
        # HTTP/3 layer refuses it itself and closes the connection (H3_MESSAGE_ERROR).
        with pytest.raises(aioduct.RemoteProtocolError, match=r"status|H3_MESSAGE_ERROR"):
            await client.get(h3.url + "/nostatus")
        r = await client.get(h3.url + "/small")
    assert r.content == b"Hello, World!"


async def test_the_servers_stream_limit_is_kept(tls_ca: TLSMaterial) -> None:
    # This server grants 3 request streams per connection and never raises its
    # MAX_STREAMS: a 4th request must go to a new connection, not beyond the credit
    # (aioquic would hold it back until the idle timeout; qh3 would raise ValueError).
    with H3Server(tls_ca.files, max_streams=3) as h3:
        async with aioduct.Client(**options(tls_ca)) as client:
            responses = await asyncio.gather(
                *(client.get(f"{h3.url}/slow/50?i={i}") for i in range(10))
            )
            more = [await client.get(h3.url + "/small") for _ in range(5)]
            limits = [c.max_streams for c in h3_connections(client)]
    assert {r.content for r in responses} == {b"slow"}
    assert {r.content for r in more} == {b"Hello, World!"}
    assert h3.max_open_streams_seen <= 3 and set(limits) <= {3}
    assert h3.connections_accepted >= 5  # 15 requests, at most 3 per connection


async def test_abandoned_download_resets_only_its_stream(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:
        async with client.stream("GET", h3.url + "/bytes/5000000") as streamed:
            async for _chunk in streamed.aiter_bytes():
                break  # leave with most of the body unread: STOP_SENDING
        r = await client.get(h3.url + "/bytes/100000")
        (conn,) = h3_connections(client)
        assert not conn.h3.stream_is_open(0) and conn.in_use == 0
    assert len(r.content) == 100_000 and h3.connections_accepted == 1


async def test_upload_cut_short_by_an_early_response(h3: H3Server, tls_ca: TLSMaterial) -> None:
    @h3.route("/early")
    async def early(req: H3Request) -> None:
        req.respond(413, b"too big")

    async def body() -> object:
        for _ in range(50):
            yield b"x" * 100_000
            await asyncio.sleep(0.01)

    async with aioduct.Client(**options(tls_ca)) as client:
        r = await client.post(h3.url + "/early", content=body())  # type: ignore[arg-type]
        again = await client.get(h3.url + "/small")
    assert (r.status, r.content, again.status) == (413, b"too big", 200)
    assert h3.connections_accepted == 1


async def test_the_server_may_not_push(h3: H3Server, tls_ca: TLSMaterial) -> None:
    from aioquic.h3.exceptions import NoAvailablePushIDError

    refused: list[bool] = []

    @h3.route("/push")
    async def push(req: H3Request) -> None:
        await asyncio.sleep(0.05)  # the client's control stream has surely arrived
        try:
            fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"x")]
            fields.append((b":path", b"/pushed"))
            req.conn.h3_connection().send_push_promise(req.stream_id, fields)
        except NoAvailablePushIDError:
            refused.append(True)
        req.respond(200, b"no push")

    async with aioduct.Client(**options(tls_ca)) as client:
        r = await client.get(h3.url + "/push")
    assert r.content == b"no push" and refused == [True]  # no MAX_PUSH_ID was sent
