"""What callers pass, as a new user passes it: misspelt keywords, bytes and None headers.

Nothing a caller passes is silently dropped or sent mangled: a keyword the request
methods do not know is a TypeError naming the closest valid one (and the request is not
sent), and header fields go on the wire byte for byte.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import aioduct
from aioduct.testing.server import ScriptServer


@pytest.fixture
def server(script_server: ScriptServer) -> ScriptServer:
    script_server.route_respond("/", body=b"ok")
    return script_server


UNKNOWN = [
    ({"param": {"q": "1"}}, "'param' (did you mean 'params'?)"),
    ({"header": {"X": "1"}}, "'header' (did you mean 'headers'?)"),
    ({"jsn": {"a": 1}}, "'jsn' (did you mean 'json'?)"),
    ({"file": {"f": b"x"}}, "'file' (did you mean 'files'?)"),
    ({"verify": False}, "'verify': verify is a client option; set it on the client"),
    ({"allow_redirects": False}, "'allow_redirects': aioduct calls it follow_redirects="),
]


@pytest.mark.parametrize(("kwargs", "message"), UNKNOWN)
def test_blocking_request_methods_refuse_keywords_they_do_not_know(
    server: ScriptServer, kwargs: dict[str, Any], message: str
) -> None:
    with aioduct.BlockingClient() as client:
        for call in (client.get, client.post, client.delete):
            with pytest.raises(TypeError, match="unexpected keyword argument " + _re(message)):
                call(server.url + "/", **kwargs)
        with (
            pytest.raises(TypeError, match=_re(message)),
            client.stream("GET", server.url + "/", **kwargs),
        ):
            pass
        assert client.get(server.url + "/", params={"q": "1"}).text == "ok"
    assert [r.target for r in server.requests] == ["/?q=1"]  # only the valid request went


@pytest.mark.parametrize(("kwargs", "message"), UNKNOWN[:3])
async def test_async_request_methods_refuse_keywords_they_do_not_know(
    server: ScriptServer, kwargs: dict[str, Any], message: str
) -> None:
    async with aioduct.Client() as client:
        with pytest.raises(TypeError, match=_re(message)):
            await client.get(server.url + "/", **kwargs)
        with pytest.raises(TypeError, match=_re(message)):
            client.build_request("GET", server.url + "/", **kwargs)
    assert server.requests == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: aioduct.ClientConfig(timout=5), "ClientConfig has no option 'timout' (did you"),
        (lambda: aioduct.Http2Config(max_frame=1), "(did you mean 'max_frame_size'?)"),
        (lambda: aioduct.RetryConfig(max_retry=1), "(did you mean 'max_retries'?)"),
        (lambda: aioduct.Client(timout=5), "unknown client option 'timout' (did you"),
    ],
)
def test_configuration_types_suggest_the_option_meant(make: Any, message: str) -> None:
    with pytest.raises(TypeError, match=_re(message)):
        make()


def test_bytes_header_fields_go_on_the_wire_byte_for_byte(server: ScriptServer) -> None:
    with aioduct.BlockingClient(headers={b"X-Default": b"d\xe9"}) as client:
        client.get(server.url + "/", headers={b"X-B": b"v\xe9", "X-S": "s", "X-N": 7})
        client.get(server.url + "/", headers=[(b"X-B", b"1"), (b"X-B", b"2")])
    first, second = server.requests
    fields = dict(first.headers)
    assert fields[b"x-b"] == b"v\xe9" and fields[b"x-s"] == b"s" and fields[b"x-n"] == b"7"
    assert fields[b"x-default"] == b"d\xe9"
    assert [v for n, v in second.headers if n == b"x-b"] == [b"1", b"2"]


def test_a_none_header_value_is_refused_not_sent_as_the_word_none(server: ScriptServer) -> None:
    with aioduct.BlockingClient() as client:
        with pytest.raises(TypeError, match="header 'X-A' has the value None"):
            client.get(server.url + "/", headers={"X-A": None})  # type: ignore[dict-item]
        with pytest.raises(TypeError, match="header 'X-A' has the value None"):
            aioduct.BlockingClient(headers={"X-A": None})
        with pytest.raises(TypeError, match="header 'X-A' has the value None"):
            aioduct.Job(url=server.url, headers={"X-A": None})  # type: ignore[dict-item]
    assert server.requests == []


def test_bytes_with_a_line_break_are_refused_when_sent(server: ScriptServer) -> None:
    with (
        aioduct.BlockingClient() as client,
        pytest.raises(aioduct.LocalProtocolError, match="X-B"),
    ):
        client.get(server.url + "/", headers={b"X-B": b"a\r\nInjected: 1"})
    assert server.requests == []


def _re(text: str) -> str:
    return re.escape(text)
