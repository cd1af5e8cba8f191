"""Decompression through real servers, on every in-process driver.

nginx compresses (``/gzip``: on the fly, chunked) and serves a pre-compressed file
(``/gzip-static``: ``gzip_static``, with Content-Length), over HTTP/1.1 and h2c; the
scriptable server sends what nginx will not: br, zstd, both deflates, stacked codings,
bombs, corrupt and truncated streams, a Content-Length that lies. Each case runs on
``Client`` (asyncio and uvloop) and ``BlockingClient``; the local engine's workers run
the same pipeline and are compared with these drivers in tests/local/test_drivers.py.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import aioduct
from aioduct.decompress import ACCEPT_ENCODING
from aioduct.testing.nginx import GZIP_BODY, Nginx
from aioduct.testing.server import Conn, ScriptServer, ServerRequest, build_response

from .bodies import GIB, MIB, bomb, encode, encode_chain

DATA = b"".join(b"%d: a line of a body that compresses well\n" % i for i in range(3000))
DRIVERS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.uvloop), "blocking"]


def run(
    driver: str, main: Callable[[aioduct.Client], Coroutine[Any, Any, Any]], **options: Any
) -> Any:
    """``main(client)`` on an async client on ``driver``'s loop."""

    async def with_client() -> Any:
        async with aioduct.Client(**options) as client:
            return await main(client)

    if driver == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(with_client())


def get(driver: str, url: str, **options: Any) -> aioduct.Response:
    """``GET url`` on ``driver``: the buffered response (body read and decoded)."""
    headers = options.pop("headers", None)
    if driver == "blocking":
        with aioduct.BlockingClient(**options) as client:
            return client.get(url, headers=headers)

    async def main(client: aioduct.Client) -> aioduct.Response:
        return await client.get(url, headers=headers)

    result: aioduct.Response = run(driver, main, **options)
    return result


def streamed(driver: str, url: str, method: str = "iter_bytes", **options: Any) -> bytes:
    """The body of ``GET url`` read while streamed, with ``method`` (``iter_raw``...)."""
    if driver == "blocking":
        with aioduct.BlockingClient(**options) as client, client.stream("GET", url) as r:
            return b"".join(getattr(r, method)())

    async def main(client: aioduct.Client) -> bytes:
        async with client.stream("GET", url) as r:
            return b"".join([chunk async for chunk in getattr(r, "a" + method)()])

    result: bytes = run(driver, main, **options)
    return result


def respond(srv: ScriptServer, path: str, headers: list[tuple[str, str]], body: bytes) -> str:
    srv.route_respond(path, headers=headers, body=body)
    return srv.url + path


# -- nginx --------------------------------------------------------------------------------------


@pytest.mark.nginx
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("path", ["/gzip", "/gzip-static"])
@pytest.mark.parametrize("base", ["http_url", "h2c_url"])
def test_nginx_gzip_is_decoded(nginx: Nginx, driver: str, path: str, base: str) -> None:
    options = {"http2_prior_knowledge": base == "h2c_url"}
    r = get(driver, getattr(nginx, base) + path, **options)
    assert r.headers["content-encoding"] == "gzip"
    assert r.content == GZIP_BODY
    assert r.text == GZIP_BODY.decode()
    assert streamed(driver, getattr(nginx, base) + path, **options) == GZIP_BODY


@pytest.mark.nginx
@pytest.mark.parametrize("driver", DRIVERS)
def test_accept_encoding_is_sent_with_decompress_and_only_then(nginx: Nginx, driver: str) -> None:
    echo = nginx.http_url + "/echo/headers"
    assert f"accept-encoding: {ACCEPT_ENCODING}\n" in get(driver, echo).text
    assert "accept-encoding: \n" in get(driver, echo, decompress=False).text
    # A header of the user's own replaces the default.
    mine = get(driver, echo, headers={"Accept-Encoding": "br"}).text
    assert "accept-encoding: br\n" in mine


@pytest.mark.nginx
@pytest.mark.parametrize("driver", DRIVERS)
def test_decompress_false_returns_the_wire_bytes(nginx: Nginx, driver: str) -> None:
    # Asking for nothing, nginx sends the file as it is...
    plain = get(driver, nginx.http_url + "/gzip-static", decompress=False)
    assert "content-encoding" not in plain.headers and plain.content == GZIP_BODY
    # ...and asking by hand, the gzip bytes come back undecoded.
    r = get(
        driver,
        nginx.http_url + "/gzip-static",
        decompress=False,
        headers={"Accept-Encoding": "gzip"},
    )
    assert r.headers["content-encoding"] == "gzip"
    assert r.content[:2] == b"\x1f\x8b" and len(r.content) == int(r.headers["content-length"])


@pytest.mark.nginx
@pytest.mark.parametrize("driver", DRIVERS)
def test_aiter_raw_gives_the_wire_bytes(nginx: Nginx, driver: str) -> None:
    raw = streamed(driver, nginx.http_url + "/gzip-static", method="iter_raw")
    assert raw[:2] == b"\x1f\x8b" and gzip.decompress(raw) == GZIP_BODY


@pytest.mark.nginx
async def test_wire_bytes_of_a_decoded_body_are_gone_and_it_says_so(nginx: Nginx) -> None:
    async with aioduct.Client() as client:
        r = await client.get(nginx.http_url + "/gzip")
        with pytest.raises(RuntimeError, match=r"wire bytes .* decoded \(gzip\)"):
            [chunk async for chunk in r.aiter_raw()]
        async with client.stream("GET", nginx.http_url + "/gzip") as r:
            await r.aread()
            with pytest.raises(RuntimeError, match="wire bytes"):
                [chunk async for chunk in r.aiter_raw()]
        # Nothing was decoded: aiter_raw is the content.
        r = await client.get(nginx.http_url + "/small")
        assert b"".join([chunk async for chunk in r.aiter_raw()]) == b"Hello, World!"


@pytest.mark.nginx
@pytest.mark.parametrize("driver", DRIVERS)
def test_head_is_never_decoded(nginx: Nginx, driver: str) -> None:
    r = get(driver, nginx.http_url + "/gzip-static", headers={"Accept-Encoding": "gzip"})
    assert r.content == GZIP_BODY
    if driver == "blocking":
        with aioduct.BlockingClient() as client:
            head = client.head(nginx.http_url + "/gzip-static")
    else:

        async def main(client: aioduct.Client) -> aioduct.Response:
            return await client.head(nginx.http_url + "/gzip-static")

        head = run(driver, main)
    assert head.headers["content-encoding"] == "gzip" and head.content == b""


# -- the scriptable server -------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("coding", ["gzip", "deflate", "deflate-raw", "br", "zstd"])
def test_every_coding(script_server: ScriptServer, driver: str, coding: str) -> None:
    name = "deflate" if coding == "deflate-raw" else coding
    url = respond(script_server, "/c", [("Content-Encoding", name)], encode(coding, DATA))
    assert get(driver, url).content == DATA
    assert streamed(driver, url) == DATA
    assert streamed(driver, url, method="iter_raw") == encode(coding, DATA)


@pytest.mark.parametrize("driver", DRIVERS)
def test_stacked_codings_decode_in_order(script_server: ScriptServer, driver: str) -> None:
    one_line = respond(
        script_server,
        "/one",
        [("Content-Encoding", "gzip, br")],
        encode_chain(["gzip", "br"], DATA),
    )
    two_lines = respond(
        script_server,
        "/two",
        [("Content-Encoding", "zstd"), ("Content-Encoding", "deflate")],
        encode_chain(["zstd", "deflate"], DATA),
    )
    for url in (one_line, two_lines):
        assert get(driver, url).content == DATA
        assert streamed(driver, url) == DATA


@pytest.mark.parametrize("driver", DRIVERS)
def test_too_many_codings_are_refused(script_server: ScriptServer, driver: str) -> None:
    five = ["gzip", "deflate", "br", "zstd", "gzip"]
    ok = respond(
        script_server, "/5", [("Content-Encoding", ", ".join(five))], encode_chain(five, DATA)
    )
    assert get(driver, ok).content == DATA
    six = [*five, "deflate"]
    url = respond(
        script_server, "/6", [("Content-Encoding", ", ".join(six))], encode_chain(six, DATA)
    )
    with pytest.raises(aioduct.DecodeError, match="6 > 5") as caught:
        get(driver, url)
    assert caught.value.url == url
    lines = respond(script_server, "/lines", [("Content-Encoding", "gzip")] * 6, b"")
    with pytest.raises(aioduct.DecodeError, match="6 > 5"):
        get(driver, lines)


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_unknown_coding_leaves_the_body_as_sent(
    script_server: ScriptServer, driver: str
) -> None:
    url = respond(script_server, "/u", [("Content-Encoding", "gzip, snappy")], b"opaque")
    r = get(driver, url)
    assert r.content == b"opaque" and r.headers["content-encoding"] == "gzip, snappy"


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_corrupt_and_truncated_streams_are_decode_errors(
    script_server: ScriptServer, driver: str, coding: str
) -> None:
    url = respond(script_server, "/bad", [("Content-Encoding", coding)], b"\x1f\x8b\x08 not really")
    with pytest.raises(aioduct.DecodeError, match=f"{coding} body") as caught:
        get(driver, url)
    assert caught.value.url == url
    body = encode(coding, DATA)
    cut = respond(script_server, "/cut", [("Content-Encoding", coding)], body[: len(body) // 2])
    with pytest.raises(aioduct.DecodeError, match=f"{coding} body"):
        get(driver, cut)
    with pytest.raises(aioduct.DecodeError, match=f"{coding} body"):
        streamed(driver, cut)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_lying_content_length_cuts_the_stream(script_server: ScriptServer, driver: str) -> None:
    # Content-Length shorter than the gzip stream: the framing ends the body, the stream
    # has not ended -- a decode error, not a silently short body.
    body = encode("gzip", DATA)
    script_server.route_raw(
        "/lie",
        build_response(
            200, [("Content-Encoding", "gzip"), ("Content-Length", str(len(body) - 10))], body
        ),
        close=True,
    )
    with pytest.raises(aioduct.DecodeError, match="gzip body is truncated"):
        get(driver, script_server.url + "/lie")


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("status", [204, 304])
def test_bodyless_statuses_are_never_decoded(
    script_server: ScriptServer, driver: str, status: int
) -> None:
    url = respond(script_server, "/none", [("Content-Encoding", "gzip")], b"")
    script_server.route_respond("/none", status, [("Content-Encoding", "gzip")])
    r = get(driver, url)
    assert r.status == status and r.content == b""


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_empty_encoded_body_is_empty(script_server: ScriptServer, driver: str) -> None:
    url = respond(script_server, "/empty", [("Content-Encoding", "gzip")], b"")
    assert get(driver, url).content == b""


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_a_bomb_is_refused_at_max_body_size(
    script_server: ScriptServer, driver: str, coding: str
) -> None:
    body = bomb(coding, 2 * GIB)  # at most 2 MB on the wire
    url = respond(script_server, "/bomb", [("Content-Encoding", coding)], body)
    with pytest.raises(aioduct.BodyTooLarge, match=f"decoded .* max_body_size={4 * MIB}"):
        get(driver, url, max_body_size=4 * MIB)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_redirect_body_is_not_decoded(script_server: ScriptServer, driver: str) -> None:
    # urllib3 CVE-2026-21441: a bomb behind a 302 was decoded while the redirect drained.
    body = bomb("gzip", GIB)
    script_server.route_respond(
        "/302", 302, [("Location", "/ok"), ("Content-Encoding", "gzip")], body
    )
    script_server.route_respond("/ok", body=b"fine")
    r = get(driver, script_server.url + "/302", max_body_size=4 * MIB)
    assert r.content == b"fine"
    assert r.history[0].status == 302 and r.history[0].content == body


def _bomb_route(srv: ScriptServer, path: str, coding: str, body: bytes) -> None:
    """Send ``body`` in 64 KiB writes: the server's own buffers stay small (it runs in
    this process, and tracemalloc counts it too)."""
    head = build_response(200, [("Content-Encoding", coding), ("Content-Length", str(len(body)))])

    async def send(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head)
        view = memoryview(body)
        try:
            for start in range(0, len(body), 65536):
                await conn.send(bytes(view[start : start + 65536]))
        except ConnectionError:
            pass  # the client gave up: that is the point
        conn.close()

    srv.add_route(path, send)


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_memory_stays_bounded_while_a_bomb_is_refused(
    script_server: ScriptServer, coding: str
) -> None:
    """A 10 GiB bomb (10 MB of gzip, 2 MB of br, 330 KB of zstd) read buffered and
    streamed: peak Python memory stays under 16 MiB. (tracemalloc sees Python objects,
    which is where every decoder's output lands.)"""
    big = bomb(coding, 10 * GIB)
    _bomb_route(script_server, "/bomb", coding, big)
    url = script_server.url + "/bomb"

    def buffered() -> None:
        with (
            aioduct.BlockingClient(max_body_size=4 * MIB) as client,
            pytest.raises(aioduct.BodyTooLarge),
        ):
            client.get(url)

    def streaming() -> None:
        with aioduct.BlockingClient() as client, client.stream("GET", url) as r:
            seen = 0
            for chunk in r.iter_bytes(256):  # urllib3 CVE-2025-66471: read(256) of a bomb
                assert len(chunk) == 256
                seen += len(chunk)
                if seen >= 16 * MIB:
                    break

    async def read_limited(client: aioduct.Client) -> None:
        async with client.stream("GET", url) as r:
            await r.aread(max_size=4 * MIB)

    def streaming_read() -> None:
        with pytest.raises(aioduct.BodyTooLarge, match="decoded"):
            run("asyncio", read_limited)

    for case in (buffered, streaming, streaming_read):
        gc.collect()
        tracemalloc.start()
        try:
            case()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # The wire body read (buffered: up to 4 MiB, max_body_size bounds it too), the
        # decoded body up to the limit (4 MiB), one decoder step (1 MiB, zstd 4.1 MiB).
        assert peak < 16 * MIB, (case.__name__, peak)


@pytest.mark.nginx
def test_the_docs_example_runs(nginx: Nginx, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "decompression.md").read_text()
    start = text.index("import aioduct")
    code = text[start : text.index("```", start)]
    code = code.replace("https://www.example.org/", nginx.http_url + "/gzip-static")
    exec(compile(code, "docs/decompression.md", "exec"), {})
    wire = len(gzip.compress(GZIP_BODY, mtime=0))  # the file gzip_static serves
    assert capsys.readouterr().out == f"gzip {len(GZIP_BODY)}\n{wire} bytes on the wire\n"
