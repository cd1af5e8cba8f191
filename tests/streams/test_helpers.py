"""r.links, r.problem(), r.trailers, r.elapsed, parse/format_forwarded, and the
httpx-compatible names, on the send engine and the local engine."""

from __future__ import annotations

import datetime
import ipaddress

import pytest

import aioduct
from aioduct.links import parse_link_header
from aioduct.testing.h2server import H2Request, H2Server
from aioduct.testing.server import ScriptServer

CHUNKED_WITH_TRAILERS = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Checksum\r\n"
    b'Link: </page/2>; rel="next", <https://other.example/x>; rel="last"; title="a, b"\r\n'
    b"\r\n5\r\nhello\r\n0\r\nChecksum: abc123\r\nX-Late: 1\r\n\r\n"
)


def trailer_routes(srv: ScriptServer) -> None:
    srv.route_raw("/trailers", CHUNKED_WITH_TRAILERS)
    srv.route_respond("/plain", body=b"plain")
    srv.route_respond(
        "/problem",
        status=403,
        headers=[("Content-Type", "application/problem+json")],
        body=b'{"type": "https://example.com/probs/out-of-credit", "title": "No credit",'
        b' "status": 403, "detail": 7, "balance": 30, "accounts": ["/a/1"]}',
    )


@pytest.mark.parametrize("engine", ["send", "local"])
async def test_trailers_links_problem(script_server: ScriptServer, engine: str) -> None:
    trailer_routes(script_server)
    kwargs = {"workers": 1} if engine == "local" else {}
    async with aioduct.Client(engine=engine, **kwargs) as client:
        r = await client.get(script_server.url + "/trailers")
        assert r.content == b"hello" and r.http_version == "HTTP/1.1"
        assert r.trailers["Checksum"] == "abc123" and r.trailers["x-late"] == "1"
        assert "checksum" not in r.headers  # trailers never pose as header fields
        assert r.links["next"]["url"] == script_server.url + "/page/2"
        assert r.links["last"] == {"url": "https://other.example/x", "rel": "last", "title": "a, b"}
        assert r.is_success and not r.is_redirect and r.problem() is None
        assert isinstance(r.elapsed, datetime.timedelta) and r.elapsed.total_seconds() >= 0
        plain = await client.get(script_server.url + "/plain")
        assert len(plain.trailers) == 0 and plain.links == {}
        p = await client.get(script_server.url + "/problem")
        problem = p.problem()
        assert problem == aioduct.Problem(
            type="https://example.com/probs/out-of-credit",
            title="No credit",
            status=403,
            detail=None,  # a member of the wrong type is ignored (RFC 9457 §3.1)
            extensions={"balance": 30, "accounts": ["/a/1"]},
        )


async def test_streamed_trailers_and_elapsed(script_server: ScriptServer) -> None:
    trailer_routes(script_server)
    async with (
        aioduct.Client() as client,
        client.stream("GET", script_server.url + "/trailers") as r,
    ):
        with pytest.raises(RuntimeError, match="elapsed"):
            r.elapsed  # noqa: B018
        assert len(r.trailers) == 0  # not yet
        assert [c async for c in r.aiter_bytes()] == [b"hello"]
        assert r.trailers["checksum"] == "abc123"
        assert r.elapsed.total_seconds() >= 0
    with (
        aioduct.BlockingClient() as bclient,
        bclient.stream("GET", script_server.url + "/trailers") as br,
    ):
        assert list(br.iter_text()) == ["hello"] and br.trailers["x-late"] == "1"


def test_framing_fields_in_trailers_are_refused(script_server: ScriptServer) -> None:
    """Hop-by-hop/framing fields may not arrive as trailers (RFC 9110 §6.5.1): a trailer
    ``Transfer-Encoding`` or ``Content-Length`` is an attempt to re-frame the message."""
    script_server.route_raw(
        "/smuggle",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\nContent-Length: 5\r\n\r\n",
    )
    with (
        aioduct.BlockingClient() as client,
        pytest.raises(aioduct.RemoteProtocolError, match="trailers"),
    ):
        client.get(script_server.url + "/smuggle")


def test_h2_trailers() -> None:
    with H2Server() as srv:

        @srv.route("/grpc")
        async def grpc(req: H2Request) -> None:
            req.send_headers(200, [("content-type", "application/grpc")])
            await req.send_data(b"msg")
            req.conn.h2.send_headers(req.stream_id, [("grpc-status", "0")], end_stream=True)
            req.conn.flush()

        with aioduct.BlockingClient(http2_prior_knowledge=True) as client:
            r = client.get(srv.url + "/grpc")
            assert (r.http_version, r.content, r.trailers["grpc-status"]) == ("HTTP/2", b"msg", "0")
            with client.stream("GET", srv.url + "/grpc") as s:
                assert s.read() == b"msg" and s.trailers["grpc-status"] == "0"


def test_encoding_is_settable(script_server: ScriptServer) -> None:
    script_server.route_respond("/latin", body="caf\u00e9".encode("latin-1"))
    with aioduct.BlockingClient() as client:
        r = client.get(script_server.url + "/latin")
        assert r.encoding == "utf-8" and r.text == "caf\ufffd"
        r.encoding = "latin-1"
        assert r.text == "caf\u00e9"


# -- Link parsing ----------------------------------------------------------------------------


def test_link_header_edge_cases() -> None:
    value = "<a>; rel=\"next prev\"; title*=UTF-8'de'n%c3%a4chst, junk, <b>;rel=up;rel=ignored, <c>"
    assert parse_link_header(value) == [
        {"url": "a", "rel": "next prev", "title*": "UTF-8'de'n%c3%a4chst"},
        {"url": "b", "rel": "up"},
        {"url": "c"},
    ]
    assert parse_link_header('<x>; title="quoted \\" comma, here"') == [
        {"url": "x", "title": 'quoted " comma, here'}
    ]
    assert parse_link_header("") == [] and parse_link_header("<unterminated") == []


# -- Forwarded (RFC 7239) --------------------------------------------------------------------


def test_format_forwarded() -> None:
    f = aioduct.format_forwarded
    assert f(for_="192.0.2.60", proto="http", by="203.0.113.43") == (
        "for=192.0.2.60;proto=http;by=203.0.113.43"
    )
    assert f({"for": "2001:db8:cafe::17"}) == 'for="[2001:db8:cafe::17]"'
    assert f({"for": ipaddress.ip_address("::1")}) == 'for="[::1]"'
    assert f({"for": "[2001:db8:cafe::17]:4711"}) == 'for="[2001:db8:cafe::17]:4711"'
    assert f({"for": "192.0.2.43:47011"}) == 'for="192.0.2.43:47011"'
    assert f({"for": "unknown"}, {"for": "_hidden", "by": "_SEVKISEK"}) == (
        "for=unknown, for=_hidden;by=_SEVKISEK"
    )
    assert f(host="example.com", proto=None) == "host=example.com"


def test_forwarded_spoofing_is_contained() -> None:
    """A client-supplied value cannot forge a hop or a parameter, nor inject a line."""
    forged = aioduct.format_forwarded(host='evil.example, for=127.0.0.1;proto="https"')
    assert aioduct.parse_forwarded(forged) == [
        {"host": 'evil.example, for=127.0.0.1;proto="https"'}
    ]
    for bad in ("a\r\nX-Admin: 1", "a\nb", "nul\0"):
        with pytest.raises(ValueError, match="control characters"):
            aioduct.format_forwarded(host=bad)
    with pytest.raises(ValueError, match="parameter name"):
        aioduct.format_forwarded({"for;proto": "x"})
    # Repeated parameters in one element are a forgery sign: refused, not last-wins.
    with pytest.raises(ValueError, match="repeated"):
        aioduct.parse_forwarded("for=1.2.3.4;for=127.0.0.1")


def test_parse_forwarded() -> None:
    parse = aioduct.parse_forwarded
    assert parse('for="_gazonk"') == [{"for": "_gazonk"}]
    assert parse('For="[2001:db8:cafe::17]:4711"') == [{"for": "[2001:db8:cafe::17]:4711"}]
    assert parse("for=192.0.2.60;proto=http;by=203.0.113.43") == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}
    ]
    assert parse(["for=192.0.2.43, for=198.51.100.17", "for=unknown"]) == [
        {"for": "192.0.2.43"},
        {"for": "198.51.100.17"},
        {"for": "unknown"},
    ]
    assert parse('for="a\\"b"') == [{"for": 'a"b'}]
    for bad in ("for", "for=", "for=a b", 'for="open', ";for=a", "for=a;;by=b"):
        with pytest.raises(ValueError):
            parse(bad)


def test_problem_requires_its_media_type(script_server: ScriptServer) -> None:
    script_server.route_respond(
        "/json", status=400, headers=[("Content-Type", "application/json")], body=b'{"title": "x"}'
    )
    script_server.route_respond(
        "/bad", status=400, headers=[("Content-Type", "application/problem+json")], body=b"[1]"
    )
    with aioduct.BlockingClient() as client:
        assert client.get(script_server.url + "/json").problem() is None
        with pytest.raises(aioduct.DecodeError, match="problem details"):
            client.get(script_server.url + "/bad").problem()


async def test_results_carry_http_version_and_trailers(script_server: ScriptServer) -> None:
    trailer_routes(script_server)
    with aioduct.LocalEngine(workers=1) as engine:
        [result] = list(engine.map([aioduct.Job(url=script_server.url + "/trailers")]))
    assert result.http_version == "HTTP/1.1"
    assert dict(result.trailers) == {"Checksum": "abc123", "X-Late": "1"}
