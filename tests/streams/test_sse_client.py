"""client.sse() against a real loopback server that drops the stream, on both clients."""

from __future__ import annotations

import pytest

import aioduct
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"


def dropping_server(srv: ScriptServer) -> list[str | None]:
    """1st connection: two events, then the connection drops mid-event (chunked, unfinished).
    2nd: resumes after Last-Event-ID, ends cleanly. 3rd: 204, which stops the source."""
    seen: list[str | None] = []

    @srv.route("/events")
    async def events(conn: Conn, req: ServerRequest) -> None:
        seen.append(req.header("last-event-id"))
        assert req.header("accept") == "text/event-stream"
        assert req.header("cache-control") == "no-store"
        n = len(seen)
        if n == 1:
            body = b"retry: 10\n\n: hi\n\nid: 1\ndata: one\n\nid: 2\ndata: two\n\ndata: lost"
            await conn.send(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
            await conn.send(b"%x\r\n%s\r\n" % (len(body), body))
            conn.close()
        elif n == 2:
            body = b"id: 3\nevent: tick\ndata: three\n\n"
            await conn.send(HEAD + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        else:
            await conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")

    return seen


EXPECTED = [("message", "one", "1"), ("message", "two", "2"), ("tick", "three", "3")]


async def test_reconnects_with_last_event_id(script_server: ScriptServer) -> None:
    seen = dropping_server(script_server)
    async with aioduct.Client() as client, client.sse(script_server.url + "/events") as source:
        got = [(ev.event, ev.data, ev.id) async for ev in source]
        assert source.reconnects == 2
    assert got == EXPECTED
    assert seen == [None, "2", "3"]


def test_blocking_reconnects_with_last_event_id(script_server: ScriptServer) -> None:
    seen = dropping_server(script_server)
    with aioduct.BlockingClient() as client, client.sse(script_server.url + "/events") as source:
        got = [(ev.event, ev.data, ev.id) for ev in source]
    assert got == EXPECTED
    assert seen == [None, "2", "3"]


async def test_reconnect_false_raises_the_drop(script_server: ScriptServer) -> None:
    dropping_server(script_server)
    got: list[str] = []
    async with (
        aioduct.Client() as client,
        client.sse(script_server.url + "/events", reconnect=False) as source,
    ):
        with pytest.raises(aioduct.RemoteProtocolError):
            async for ev in source:
                got.append(ev.data)  # noqa: PERF401 (kept up to the error)
    assert got == ["one", "two"]


async def test_max_reconnects(script_server: ScriptServer) -> None:
    @script_server.route("/flaky")
    async def flaky(conn: Conn, req: ServerRequest) -> None:
        body = b"retry: 0\ndata: x\n\n"
        await conn.send(HEAD + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    async with (
        aioduct.Client() as client,
        client.sse(script_server.url + "/flaky", max_reconnects=3) as source,
    ):
        got = [ev.data async for ev in source]
    assert got == ["x"] * 4
    assert len(script_server.requests) == 4


async def test_not_an_event_stream(script_server: ScriptServer) -> None:
    script_server.route_respond("/html", body=b"<html>", headers=[("Content-Type", "text/html")])
    async with aioduct.Client() as client:
        with pytest.raises(aioduct.SSEError, match="text/html"):
            async with client.sse(script_server.url + "/html"):
                pass
        async with client.stream("GET", script_server.url + "/html") as r:
            with pytest.raises(aioduct.SSEError, match="does not serve Server-Sent Events"):
                async for _ in r.aiter_sse():
                    pass


async def test_error_status_fails_without_reconnecting(script_server: ScriptServer) -> None:
    script_server.route_respond("/gone", status=410, body=b"gone")
    async with aioduct.Client() as client:
        with pytest.raises(aioduct.StatusError, match="410"):
            async with client.sse(script_server.url + "/gone"):
                pass
    assert len(script_server.requests) == 1


async def test_hostile_endless_line_is_bounded(script_server: ScriptServer) -> None:
    @script_server.route("/endless")
    async def endless(conn: Conn, req: ServerRequest) -> None:
        await conn.send(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"data: " + b"x" * 65536
        for _ in range(64):
            await conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.close()

    async with (
        aioduct.Client() as client,
        client.sse(script_server.url + "/endless", max_event_size=100_000) as source,
    ):
        with pytest.raises(aioduct.SSEError, match="max_event_size=100000"):
            async for _ in source:
                pass


async def test_aiter_sse_on_an_open_response(script_server: ScriptServer) -> None:
    body = b'\xef\xbb\xbfdata: a\r\n\r\nevent: b\r\ndata: {"n": 1}\r\n\r\n'
    script_server.route_respond(
        "/open", body=body, headers=[("Content-Type", "text/event-stream; charset=utf-8")]
    )
    async with aioduct.Client() as client, client.stream("GET", script_server.url + "/open") as r:
        events = [ev async for ev in r.aiter_sse()]
    assert [(e.event, e.data) for e in events] == [("message", "a"), ("b", '{"n": 1}')]
    assert events[1].json() == {"n": 1}
    with (
        aioduct.BlockingClient() as bclient,
        bclient.stream("GET", script_server.url + "/open") as br,
    ):
        assert [e.data for e in br.iter_sse()] == ["a", '{"n": 1}']


async def test_local_engine_is_refused() -> None:
    client = aioduct.Client(engine="local", workers=1)
    try:
        with pytest.raises(TypeError, match="send engine"):
            async with client.sse("http://127.0.0.1:9/"):
                pass
    finally:
        await client.aclose()


def test_sse_over_h2c() -> None:
    from aioduct.testing.h2server import H2Request, H2Server

    with H2Server() as srv:

        @srv.route("/events")
        async def events(req: H2Request) -> None:
            req.send_headers(200, [("content-type", "text/event-stream")])
            await req.send_data(b"data: a\r")  # the CRLF split across DATA frames
            await req.send_data(b"\n\r\ndata: b\n\n", end_stream=True)

        with (
            aioduct.BlockingClient(http2_prior_knowledge=True) as client,
            client.sse(srv.url + "/events", max_reconnects=0) as source,
        ):
            assert [ev.data for ev in source] == ["a", "b"]
            assert source.reconnects == 0


def test_blocking_local_engine_refuses_sse() -> None:
    with (
        aioduct.BlockingClient(engine="local", workers=1) as client,
        pytest.raises(TypeError, match="send engine"),
        client.sse("http://127.0.0.1:9/"),
    ):
        pass


@pytest.mark.parametrize(
    "content_type",
    ["text/event-stream;", "TEXT/Event-Stream; charset=windows-1252"],  # WPT format-mime-*
)
def test_media_type_parameters_and_case(script_server: ScriptServer, content_type: str) -> None:
    script_server.route_respond(
        "/mime", headers=[("Content-Type", content_type)], body="data: ok\u2026\n\n".encode()
    )
    with (
        aioduct.BlockingClient() as client,
        client.sse(script_server.url + "/mime", reconnect=False) as source,
    ):
        assert [ev.data for ev in source] == ["ok\u2026"]  # always UTF-8
