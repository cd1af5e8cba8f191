"""Interim (1xx) responses are bounded per request by the HTTP/1.1 codec.

A server answering ``100 Continue`` forever kept a request (and a CPU core) busy for good:
each interim head was skipped, bytes kept arriving, so no read timeout fired (CPython's
CVE-2021-3737). The codec counts them (at most 100, as CPython, Ruby and fasthttp) and
bounds their bytes together by ``max_head_bytes``.
"""

from __future__ import annotations

import pytest

from aioduct.errors import RemoteProtocolError
from aioduct.protocol.http11 import (
    ClientCodec,
    EndOfMessage,
    InformationalResponse,
    Response,
)
from aioduct.protocol.rules import MAX_INFORMATIONAL_RESPONSES

from .test_http11 import pull

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def started(**kw: int) -> ClientCodec:
    codec = ClientCodec(**kw)
    codec.encode_request("GET", "/", [("Host", "a.test")])
    return codec


def test_a_hundred_interim_responses_are_accepted() -> None:
    assert MAX_INFORMATIONAL_RESPONSES == 100
    codec = started()
    codec.receive_data(CONTINUE * 100 + OK)
    got = pull(codec)
    assert [type(e) for e in got] == [InformationalResponse] * 100 + [Response, EndOfMessage]


def test_the_hundred_and_first_is_a_protocol_error() -> None:
    codec = started()
    codec.receive_data(CONTINUE * 40_000)  # ~1 MB of them, all at once
    with pytest.raises(RemoteProtocolError, match="more than 100 informational"):
        pull(codec)
    with pytest.raises(RemoteProtocolError, match="unusable after an earlier error"):
        codec.next_event()


def test_interim_responses_arriving_one_read_each_are_counted() -> None:
    codec = started(max_informational=3)
    for _ in range(3):
        codec.receive_data(b"HTTP/1.1 102 Processing\r\n\r\n")
        assert [type(e) for e in pull(codec)] == [InformationalResponse]
    codec.receive_data(b"HTTP/1.1 102 Processing\r\n\r\n")
    with pytest.raises(RemoteProtocolError, match="more than 3 informational"):
        codec.next_event()


def test_their_bytes_are_bounded_together_by_max_head_bytes() -> None:
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: <" + b"x" * 3000 + b">\r\n\r\n"
    codec = started(max_head_bytes=16384)
    codec.receive_data(hint * 5 + OK)
    assert [type(e) for e in pull(codec)][-2:] == [Response, EndOfMessage]
    codec = started(max_head_bytes=16384)
    codec.receive_data(hint * 6)
    with pytest.raises(RemoteProtocolError, match="exceed max_response_head_bytes=16384 together"):
        pull(codec)


def test_the_count_starts_again_with_each_request() -> None:
    codec = started()
    for _ in range(3):
        codec.receive_data(CONTINUE * 80 + OK)
        assert len(pull(codec)) == 82
        codec.start_next_cycle()
        codec.encode_request("GET", "/", [("Host", "a.test")])


def test_switching_protocols_is_not_an_interim_response() -> None:
    codec = ClientCodec(max_informational=1)
    codec.encode_request("GET", "/", [("Host", "a.test"), ("Upgrade", "websocket")])
    codec.receive_data(CONTINUE + b"HTTP/1.1 101 Switching Protocols\r\n\r\nraw")
    got = pull(codec)
    assert [type(e) for e in got] == [InformationalResponse, Response]
    assert codec.trailing_data == b"raw"
