"""A request that can never be sent contacts nobody, on every engine and protocol.

The inputs are issue 8's, exactly: methods with CR/LF, a space or NUL; a raw query string
with CR/LF; header names with a colon, a space, CR/LF, empty, and a pseudo-header. Each is
refused when the request (or Job) is built -- before DNS, TCP or TLS -- so the servers
below count no connection until the one good request at the end of each test. Over
HTTP/2 (prior knowledge) they used to be put in the HEADERS frame as they were.

Also here: the rules themselves (URL invariants, config and Job checks), and a property
tying the build-time check to both protocol layers: a request passes it exactly when the
HTTP/1.1 codec and the HTTP/2 protocol would both send it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aioduct
from aioduct import uring
from aioduct.errors import LocalProtocolError
from aioduct.protocol.http2 import H2Protocol
from aioduct.protocol.http11 import ClientCodec
from aioduct.testing.h2server import H2Server
from aioduct.testing.server import ScriptServer
from aioduct.validation import check_fields, check_request

BAD_METHODS = ["GET\r\nX-Injected: 1", "GE T", "GET\x00"]
BAD_NAMES = ["X-A: b", "X A", "X-A\r\nX-Injected", "", ":path"]
BAD_PARAMS = "q=a\r\nX-Injected: 1"

#: (request keywords, the error it must raise) for every input of the issue.
BAD_REQUESTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    *(({"method": m}, LocalProtocolError, "invalid method") for m in BAD_METHODS),
    ({"params": BAD_PARAMS}, aioduct.InvalidURL, "control character in query parameters"),
    *(({"headers": [(n, "1")]}, LocalProtocolError, "invalid header name") for n in BAD_NAMES),
    ({"headers": {"X-Evil": "a\r\nX-Injected: 1"}}, LocalProtocolError, "value contains CR"),
]


# -- the servers nobody may reach ----------------------------------------------------------


@pytest.fixture(params=["1.1", "2"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """``(url, server)``: a ScriptServer (HTTP/1.1) or an H2Server (h2c), both counting
    ``connections_accepted``."""
    if request.param == "1.1":
        with ScriptServer() as srv:
            srv.route_respond("/ok", body=b"ok")
            yield srv.url, srv
    else:
        with H2Server() as h2srv:

            @h2srv.route("/ok")
            async def ok(req: Any) -> None:
                await req.respond(200, b"ok")

            yield h2srv.url, h2srv


def client_options(srv: Any) -> dict[str, Any]:
    return {"http2_prior_knowledge": isinstance(srv, H2Server)}


def call(kw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kw = dict(kw)
    return kw.pop("method", "GET"), kw


async def test_client_refuses_before_connecting(server: tuple[str, Any]) -> None:
    url, srv = server
    async with aioduct.Client(**client_options(srv)) as client:
        for kw, error, match in BAD_REQUESTS:
            method, rest = call(kw)
            with pytest.raises(error, match=match):
                await client.request(method, url + "/ok", **rest)
        assert srv.connections_accepted == 0
        r = await client.get(url + "/ok")
        assert (r.content, r.http_version) == (
            b"ok",
            "HTTP/2" if isinstance(srv, H2Server) else "HTTP/1.1",
        )
    assert srv.connections_accepted == 1


def test_blocking_client_refuses_before_connecting(server: tuple[str, Any]) -> None:
    url, srv = server
    with aioduct.BlockingClient(**client_options(srv)) as client:
        for kw, error, match in BAD_REQUESTS:
            method, rest = call(kw)
            with pytest.raises(error, match=match):
                client.request(method, url + "/ok", **rest)
        assert srv.connections_accepted == 0
        assert client.get(url + "/ok").content == b"ok"
    assert srv.connections_accepted == 1


@pytest.fixture
def local_engine_usable() -> None:
    if (reason := uring.unavailable_reason()) is not None:
        pytest.skip(reason)


@pytest.mark.usefixtures("local_engine_usable")
async def test_local_engine_client_refuses_before_connecting(server: tuple[str, Any]) -> None:
    url, srv = server
    async with aioduct.Client(engine="local", workers=1, **client_options(srv)) as client:
        for kw, error, match in BAD_REQUESTS:
            method, rest = call(kw)
            with pytest.raises(error, match=match):
                await client.request(method, url + "/ok", **rest)
        assert srv.connections_accepted == 0
        assert (await client.get(url + "/ok")).content == b"ok"
    assert srv.connections_accepted == 1


@pytest.mark.usefixtures("local_engine_usable")
def test_local_engine_jobs_are_refused_when_built(server: tuple[str, Any]) -> None:
    url, srv = server
    for method in BAD_METHODS:
        with pytest.raises(LocalProtocolError, match="invalid method"):
            aioduct.Job(url=url + "/ok", method=method)
    for name in BAD_NAMES:
        with pytest.raises(LocalProtocolError, match="invalid header name"):
            aioduct.Job(url=url + "/ok", headers=[(name, "1")])
    with aioduct.LocalEngine(workers=1, **client_options(srv)) as engine:
        for method in BAD_METHODS:
            with pytest.raises(LocalProtocolError, match="invalid method"):
                engine.request(method, url + "/ok")
        assert srv.connections_accepted == 0
        (result,) = engine.map([aioduct.Job(url=url + "/ok")])
        assert result.body == b"ok"
    assert srv.connections_accepted == 1


def test_send_engine_jobs_with_a_bad_url_are_error_results(server: tuple[str, Any]) -> None:
    url, srv = server
    with aioduct.SendEngine(**client_options(srv)) as engine:
        (result,) = engine.map([aioduct.Job(url=url + "/ok\r\nX-Injected: 1")])
    assert result.error is not None and result.error.kind == "InvalidURL"
    assert srv.connections_accepted == 0


async def test_a_prepared_request_changed_after_it_was_built_is_checked_again(
    server: tuple[str, Any],
) -> None:
    url, srv = server
    async with aioduct.Client(**client_options(srv)) as client:
        request = client.build_request("GET", url + "/ok")
        request.headers["X-Late"] = "a\r\nX-Injected: 1"
        with pytest.raises(LocalProtocolError, match="value contains CR"):
            await client.send(request)
        request.method = "GE T"
        with pytest.raises(LocalProtocolError, match="invalid method"):
            await client.send(request)
    assert srv.connections_accepted == 0


# -- the rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: aioduct.URL("http://h/a\x01b"), "control character"),
        (lambda: aioduct.URL("http://h/a\x7fb"), "control character"),
        (lambda: aioduct.URL("http://h/").copy_with(path="/a b"), "invalid request target"),
        (lambda: aioduct.URL("http://h/").copy_with(query="q=\r\n"), "invalid request target"),
        (lambda: aioduct.URL("http://h/").copy_with(host="h\r\nX: y"), "invalid host"),
        (lambda: aioduct.URL("http://h/").copy_with(scheme="ht\r\ntp"), "invalid scheme"),
        (lambda: aioduct.URL("http://h/").with_params("q=\x00"), "control character"),
    ],
)
def test_a_url_cannot_hold_what_would_split_a_request(make: Any, match: str) -> None:
    with pytest.raises(aioduct.InvalidURL, match=match):
        make()


def test_a_raw_query_string_is_quoted_like_a_urls_query() -> None:
    url = aioduct.URL("http://h/p").with_params('q=a b&r="é"')
    assert url.target == "/p?q=a%20b&r=%22%C3%A9%22"


@pytest.mark.parametrize("name", BAD_NAMES)
def test_config_headers_are_checked_when_the_config_is_built(name: str) -> None:
    with pytest.raises(ValueError, match="invalid headers option: invalid header name"):
        aioduct.ClientConfig(headers=[(name, "1")])
    with pytest.raises(ValueError, match="value contains LF"):
        aioduct.Client(headers={"X-A": "1\nX-Injected: 1"})


def test_an_invalid_protocol_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="invalid protocol"):
        aioduct.Request("CONNECT", "https://h/", protocol="web socket")


def test_values_are_checked_as_the_codecs_check_them() -> None:
    for value, match in [
        ("a\r\nb", "contains CR"),
        ("a\nb", "contains LF"),
        ("a\x00b", "contains NUL"),
        ("a\x0bb", "vertical tab"),
        ("a\x0cb", "form feed"),
        (" a", "leading or trailing whitespace"),
        ("a\t", "leading or trailing whitespace"),
        ("\u20ac", "not latin-1"),
    ]:
        with pytest.raises(LocalProtocolError, match=match):
            check_fields([("X-A", value)])
    check_fields([("X-A", "a\tb é \x01"), ("X-B", "")])  # what h11 accepts
    with pytest.raises(TypeError, match="must be a str"):
        check_fields([("X-A", 1)])  # type: ignore[list-item]


# -- one rule set: the build-time check agrees with both protocol layers -------------------

#: Characters that matter to some rule, and some that matter to none.
_CHARS = "aZ09-_!~ \t:\r\n\x00\x0b\x0c\x01\x7fé€"
_SPECIAL = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te"}
NAMES = st.text(_CHARS, max_size=6).filter(lambda n: n.lower() not in _SPECIAL)
VALUES = st.text(_CHARS, max_size=6)
METHODS = st.one_of(st.sampled_from(["GET", "POST", "M-SEARCH"]), st.text(_CHARS, max_size=6))


def _accepts(send: Any) -> bool:
    try:
        send()
    except LocalProtocolError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(METHODS, NAMES, VALUES)
def test_a_request_passes_exactly_when_both_protocols_would_send_it(
    method: str, name: str, value: str
) -> None:
    fields = [(name, value)]
    built = _accepts(lambda: check_request(method, fields))
    h1 = _accepts(lambda: ClientCodec().encode_request(method, "/", [("Host", "h"), *fields]))
    h2 = H2Protocol()
    h2_ok = _accepts(lambda: h2.send_request(method, "http", "h", "/", fields, end_stream=True))
    assert built == h1 == h2_ok, (method, name, value)
