"""Unit tests of the HTTP/1.1 client codec: framing, keep-alive, strictness, serialisation."""

from __future__ import annotations

import itertools

import pytest

from aioduct.errors import LocalProtocolError, RemoteProtocolError
from aioduct.protocol.http11 import (
    MAX_CHUNK_LINE,
    NEED_DATA,
    ClientCodec,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    Response,
)

HOST = [("Host", "example.org")]
OK_HEAD = b"HTTP/1.1 200 OK\r\n"


def pull(codec: ClientCodec) -> list[Event]:
    """Every event available now, stopping at NEED_DATA."""
    events: list[Event] = []
    while (event := codec.next_event()) is not NEED_DATA:
        events.append(event)
        if type(event) is EndOfMessage:
            break
    return events


def exchange(
    *chunks: bytes,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    codec: ClientCodec | None = None,
) -> tuple[ClientCodec, list[Event]]:
    """Send a request, feed ``chunks`` (``b""`` is EOF), return all events."""
    codec = codec or ClientCodec()
    codec.encode_request(method, "/", HOST if headers is None else headers)
    events: list[Event] = []
    for chunk in chunks:
        codec.receive_data(chunk)
        events += pull(codec)
    return codec, events


def body_of(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Data))


def remote_error(*chunks: bytes, method: str = "GET", **kw: int) -> str:
    codec = ClientCodec(**kw)
    codec.encode_request(method, "/", HOST)
    with pytest.raises(RemoteProtocolError) as info:
        for chunk in chunks:
            codec.receive_data(chunk)
            pull(codec)
    assert codec.their_state == "ERROR"
    return str(info.value)


# -- events --------------------------------------------------------------------------------


def test_events_compare_by_value_and_repr_names_fields() -> None:
    assert Response(200, "OK", [("A", "b")], "1.1") == Response(200, "OK", [("A", "b")], "1.1")
    assert Response(200, "OK", [], "1.1") != Response(200, "OK", [], "1.0")
    assert Data(b"x") != EndOfMessage()
    assert EndOfMessage() == EndOfMessage([])
    assert InformationalResponse(100, "Continue", []) != Response(100, "Continue", [], "1.1")
    assert repr(Data(b"x")) == "Data(data=b'x')"
    assert repr(NEED_DATA) == "NEED_DATA"
    assert "status=103" in repr(InformationalResponse(103, "Early Hints", []))


# -- framing -------------------------------------------------------------------------------


def test_content_length_body_in_one_read_is_one_data_event() -> None:
    codec, events = exchange(
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 13\r\n\r\nHello, world!"
    )
    assert events == [
        Response(200, "OK", [("Server", "nginx"), ("Content-Length", "13")], "1.1"),
        Data(b"Hello, world!"),
        EndOfMessage([]),
    ]
    assert codec.reusable
    assert codec.their_state == codec.our_state == "DONE"


def test_body_arriving_alone_is_handed_out_without_copy() -> None:
    body = b"y" * 100_000
    codec, _ = exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    codec.receive_data(body)
    (data, end) = pull(codec)
    assert isinstance(data, Data) and data.data is body
    assert end == EndOfMessage()


def test_content_length_body_across_reads() -> None:
    _, events = exchange(OK_HEAD + b"Content-Length: 10\r\n\r\n0123", b"456", b"789")
    assert [type(e) for e in events] == [Response, Data, Data, Data, EndOfMessage]
    assert body_of(events) == b"0123456789"


def test_zero_content_length_has_no_data_event() -> None:
    _, events = exchange(OK_HEAD + b"Content-Length: 0\r\n\r\n")
    assert [type(e) for e in events] == [Response, EndOfMessage]


@pytest.mark.parametrize(
    ("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304), ("HEAD", 404)]
)
def test_responses_without_a_body(method: str, status: int) -> None:
    head = b"HTTP/1.1 %d X\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n"
    head = head.replace(b"Transfer-Encoding: chunked\r\n", b"")
    codec, events = exchange(head % status, method=method)
    assert [type(e) for e in events] == [Response, EndOfMessage]
    assert codec.reusable


def test_chunked_body_coalesces_buffered_chunks_and_ignores_extensions() -> None:
    codec, events = exchange(
        OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
        b'5;name=value\r\nhello\r\n1 \r\n \r\nA;x;y="q"\t\r\n0123456789\r\n0\r\n\r\n'
    )
    assert events[1:] == [Data(b"hello 0123456789"), EndOfMessage([])]
    assert codec.reusable


def test_chunked_body_with_trailers() -> None:
    _, events = exchange(
        OK_HEAD + b"Transfer-Encoding: Chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Sum: 42 \r\nX-Other:\tz\r\n\r\n"
    )
    assert events[-2:] == [Data(b"abc"), EndOfMessage([("X-Sum", "42"), ("X-Other", "z")])]


def test_chunked_body_fed_byte_by_byte() -> None:
    wire = (
        OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n10;e=1\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n"
    )
    codec, events = exchange(*(wire[i : i + 1] for i in range(len(wire))))
    assert body_of(events) == b"hello0123456789abcdef"
    assert events[-1] == EndOfMessage([("T", "1")])
    assert codec.reusable


def test_every_three_way_split_gives_the_same_events() -> None:
    wire = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        + OK_HEAD
        + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    _, whole = exchange(wire)
    for first, second in itertools.combinations(range(1, len(wire)), 2):
        _, events = exchange(wire[:first], wire[first:second], wire[second:])
        assert [type(e) for e in events if type(e) is not Data] == [
            InformationalResponse,
            Response,
            EndOfMessage,
        ]
        assert body_of(events) == body_of(whole) == b"abcde"


def test_body_delimited_by_eof() -> None:
    codec, events = exchange(OK_HEAD + b"Server: x\r\n\r\nsome", b" more", b"")
    assert [type(e) for e in events] == [Response, Data, Data, EndOfMessage]
    assert body_of(events) == b"some more"
    assert not codec.reusable


def test_http10_response() -> None:
    codec, events = exchange(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert isinstance(events[0], Response) and events[0].http_version == "1.0"
    assert [type(e) for e in events] == [Response, Data, EndOfMessage]
    assert not codec.reusable


def test_headers_keep_case_order_and_repeats_and_strip_whitespace() -> None:
    _, events = exchange(
        OK_HEAD + b"Set-Cookie: a=1\r\nX-Empty:\r\nset-cookie:  b=2 \t\r\n"
        b"X-Inner: a \t b\r\nX-Latin: caf\xe9\r\nX-Ctl: a\x01b\x7f\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(events[0], Response)
    assert events[0].headers == [
        ("Set-Cookie", "a=1"),
        ("X-Empty", ""),
        ("set-cookie", "b=2"),
        ("X-Inner", "a \t b"),
        ("X-Latin", "café"),
        ("X-Ctl", "a\x01b\x7f"),
        ("Content-Length", "0"),
    ]


@pytest.mark.parametrize(
    ("status_line", "status", "reason"),
    [
        (b"HTTP/1.1 200 OK", 200, "OK"),
        (b"HTTP/1.1 200", 200, ""),
        (b"HTTP/1.1 200 ", 200, ""),
        (b"HTTP/1.1 404 Not  Found\t", 404, "Not  Found\t"),
        (b"HTTP/1.1 599 \xc9chec", 599, "\xc9chec"),
        (b"HTTP/1.1 999 X", 999, "X"),
    ],
)
def test_status_lines(status_line: bytes, status: int, reason: str) -> None:
    _, events = exchange(status_line + b"\r\nContent-Length: 0\r\n\r\n")
    assert events[0] == Response(status, reason, [("Content-Length", "0")], "1.1")


def test_repeated_equal_content_lengths_are_accepted() -> None:
    _, events = exchange(OK_HEAD + b"Content-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc")
    assert body_of(events) == b"abc"


# -- interim responses and protocol switches -----------------------------------------------


def test_100_continue_then_final_response() -> None:
    _, events = exchange(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
    )
    assert events == [
        InformationalResponse(100, "Continue", []),
        Response(200, "OK", [("Content-Length", "1")], "1.1"),
        Data(b"x"),
        EndOfMessage(),
    ]


def test_103_early_hints_then_final_response() -> None:
    _, events = exchange(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    )
    assert events[:2] == [
        InformationalResponse(103, "Early Hints", [("Link", "</a.css>; rel=preload")]),
        InformationalResponse(102, "Processing", []),
    ]
    assert [type(e) for e in events[2:]] == [Response, EndOfMessage]


def test_101_switching_protocols_keeps_the_new_protocols_bytes() -> None:
    codec, events = exchange(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"\r\n\x81\x05hello",
        headers=[*HOST, ("Upgrade", "websocket"), ("Connection", "Upgrade")],
    )
    assert events == [
        Response(
            101,
            "Switching Protocols",
            [("Upgrade", "websocket"), ("Connection", "Upgrade")],
            "1.1",
        )
    ]
    assert codec.trailing_data == b"\x81\x05hello"
    codec.receive_data(b"more")
    assert codec.next_event() is NEED_DATA
    assert codec.trailing_data == b"\x81\x05hellomore"
    assert codec.their_state == "SWITCHED_PROTOCOL"
    assert not codec.reusable


def test_101_without_an_upgrade_request_is_an_error() -> None:
    message = remote_error(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n")
    assert "did not ask to upgrade" in message


def test_upgrade_request_answered_with_a_normal_response() -> None:
    codec, events = exchange(
        OK_HEAD + b"Content-Length: 2\r\n\r\nok", headers=[*HOST, ("Upgrade", "h2c")]
    )
    assert [type(e) for e in events] == [Response, Data, EndOfMessage]
    assert codec.reusable


def test_connect_2xx_switches_to_the_tunnel() -> None:
    codec, events = exchange(
        b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01", method="CONNECT"
    )
    assert events == [Response(200, "Connection established", [], "1.1")]
    assert codec.trailing_data == b"\x16\x03\x01"
    assert codec.their_state == "SWITCHED_PROTOCOL"


def test_connect_refused_has_a_normal_body() -> None:
    _, events = exchange(
        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\nnope",
        method="CONNECT",
    )
    assert body_of(events) == b"nope"


# -- keep-alive ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "response_connection", "request_connection", "reusable"),
    [
        ("1.1", None, None, True),
        ("1.1", "keep-alive", None, True),
        ("1.1", "close", None, False),
        ("1.1", "Keep-Alive, CLOSE", None, False),
        ("1.1", "closed", None, True),
        ("1.1", None, "close", False),
        ("1.1", None, "keep-alive", True),
        ("1.0", None, None, False),
        ("1.0", "keep-alive", None, False),
    ],
)
def test_reusable_matrix(
    version: str, response_connection: str | None, request_connection: str | None, reusable: bool
) -> None:
    head = f"HTTP/{version} 200 OK\r\nContent-Length: 1\r\n"
    if response_connection:
        head += f"Connection: {response_connection}\r\n"
    headers = [*HOST, ("Connection", request_connection)] if request_connection else HOST
    codec, events = exchange(head.encode() + b"\r\nx", headers=headers)
    assert type(events[-1]) is EndOfMessage
    assert codec.reusable is reusable


def test_not_reusable_before_the_end_of_the_response() -> None:
    codec, _ = exchange(OK_HEAD + b"Content-Length: 5\r\n\r\nab")
    assert not codec.reusable
    with pytest.raises(LocalProtocolError, match="the response is not complete"):
        codec.start_next_cycle()


def test_bytes_after_the_response_make_the_connection_unusable() -> None:
    codec, _ = exchange(OK_HEAD + b"Content-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n")
    assert codec.next_event() is NEED_DATA
    assert not codec.reusable
    with pytest.raises(LocalProtocolError, match="sent 17 bytes after the response"):
        codec.start_next_cycle()


def test_late_bytes_and_eof_after_the_response_make_the_connection_unusable() -> None:
    codec, _ = exchange(OK_HEAD + b"Content-Length: 1\r\n\r\nx")
    assert codec.reusable
    codec.receive_data(b"\r\n")
    assert not codec.reusable
    codec, _ = exchange(OK_HEAD + b"Content-Length: 1\r\n\r\nx", b"")
    assert not codec.reusable
    with pytest.raises(LocalProtocolError, match="the server closed the connection"):
        codec.start_next_cycle()


def test_unfinished_request_body_makes_the_connection_unusable() -> None:
    codec = ClientCodec()
    codec.encode_request("PUT", "/", [*HOST, ("Content-Length", "10"), ("Expect", "100-continue")])
    codec.receive_data(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
    assert [type(e) for e in pull(codec)] == [Response, EndOfMessage]
    assert codec.our_state == "SEND_BODY"
    assert not codec.reusable
    with pytest.raises(LocalProtocolError, match="request body was not sent completely"):
        codec.start_next_cycle()


def test_two_cycles_on_one_codec() -> None:
    codec = ClientCodec()
    for n in range(2):
        assert not codec.response_started
        codec.encode_request("GET", f"/{n}", HOST)
        assert codec.their_state == "SEND_RESPONSE"
        codec.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % n)
        assert codec.response_started
        assert body_of(pull(codec)) == b"%d" % n
        assert codec.reusable
        codec.start_next_cycle()
        assert codec.our_state == codec.their_state == "IDLE"


# -- strictness ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (OK_HEAD + b"X-A: 1\r\n folded\r\n\r\n", "obsolete line folding"),
        (OK_HEAD + b"X-A: 1\r\n\tfolded\r\n\r\n", "obsolete line folding"),
        (OK_HEAD + b"X-A: a\x00b\r\n\r\n", "NUL"),
        (OK_HEAD + b"X-A: a\rb\r\n\r\n", "bare CR"),
        (OK_HEAD + b"X-A: a\nb\r\n\r\n", "bare LF"),
        (OK_HEAD + b"X-A: a\x0bb\r\n\r\n", "vertical tab"),
        (OK_HEAD + b"X-A: a\x0cb\r\n\r\n", "form feed"),
        (b"HTTP/1.1 200 O\x00K\r\n\r\n", "NUL"),
        (OK_HEAD + b"NoColon\r\n\r\n", "without a colon"),
        (OK_HEAD + b"X-A : 1\r\n\r\n", "whitespace between header name and colon"),
        (OK_HEAD + b": 1\r\n\r\n", "empty name"),
        (OK_HEAD + b"X(A): 1\r\n\r\n", "invalid character in header name"),
        (OK_HEAD + b"X-\xe9: 1\r\n\r\n", "invalid character in header name"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "invalid status code"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "invalid status code"),
        (b"HTTP/1.1 200OK\r\n\r\n", "invalid status code"),
        (b"HTTP/1.1 2\xb200 OK\r\n\r\n", "invalid status code"),
        (b"HTTP/1.1 099 Low\r\n\r\n", "out of range"),
        (b"HTTP/2.0 200 OK\r\n\r\n", "unsupported HTTP version 'HTTP/2.0'"),
        (b"HTTP/1.1  200 OK\r\n\r\n", "invalid status code"),
        (b"ICY 200 OK\r\n\r\n", "invalid status line"),
        (b"http/1.1 200 OK\r\n\r\n", "invalid status line"),
        (b"\r\nHTTP/1.1 200 OK\r\n\r\n", "invalid status line"),
        (
            OK_HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "response has both Transfer-Encoding and Content-Length",
        ),
        (
            OK_HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "conflicting Content-Length values '5' and '6'",
        ),
        (OK_HEAD + b"Content-Length: 5, 6\r\n\r\n", "conflicting Content-Length"),
        (OK_HEAD + b"Content-Length: abc\r\n\r\n", "invalid Content-Length"),
        (OK_HEAD + b"Content-Length: -1\r\n\r\n", "invalid Content-Length"),
        (OK_HEAD + b"Content-Length: +5\r\n\r\n", "invalid Content-Length"),
        (OK_HEAD + b"Content-Length: \r\n\r\n", "invalid Content-Length"),
        (OK_HEAD + b"Content-Length: 5,\r\n\r\n", "conflicting Content-Length"),
        (OK_HEAD + b"Content-Length: " + b"1" * 21 + b"\r\n\r\n", "invalid Content-Length"),
        (OK_HEAD + b"Transfer-Encoding: gzip\r\n\r\n", "only 'chunked' is supported"),
        (
            OK_HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
            "Transfer-Encoding 'gzip, chunked'; only 'chunked'",
        ),
        (
            OK_HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "more than one Transfer-Encoding",
        ),
        # framing headers are validated on bodiless and interim responses too (as h11 does)
        (b"HTTP/1.1 204 No Content\r\nContent-Length: x\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: gzip\r\n\r\n", "only 'chunked'"),
    ],
)
def test_malformed_heads_are_refused_with_a_reason(head: bytes, message: str) -> None:
    assert message in remote_error(head)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"zz\r\n", "invalid chunk-size line b'zz'"),
        (b"-5\r\nhello\r\n", "invalid chunk-size line"),
        (b"0x5\r\nhello\r\n", "invalid chunk-size line"),
        (b" 5\r\nhello\r\n", "invalid chunk-size line"),
        (b"5 ;ext\r\nhello\r\n", "invalid chunk-size line"),
        (b"\r\n", "invalid chunk-size line"),
        (b"1" * 17 + b"\r\n", "expected 1 to 16 hex digits"),
        (b"5;a\x00b\r\nhello\r\n", "invalid chunk-size line"),
        (b"5;a\rb\r\nhello\r\n", "invalid chunk-size line"),
        (b"5\nhello\r\n", "invalid chunk-size line"),
        (b"5\r\nhelloX\r\n", "chunk data is not followed by CRLF"),
        (b"5\r\nhello\n0\r\n\r\n", "chunk data is not followed by CRLF"),
        (b"5\r\nhello\rX", "chunk data is not followed by CRLF"),
        (b"5\r\nhelloX", "chunk data is not followed by CRLF"),
        (b"1" * MAX_CHUNK_LINE, f"chunk-size line longer than {MAX_CHUNK_LINE}"),
        (b"0\r\nContent-Length: 5\r\n\r\n", "not allowed in trailers"),
        (b"0\r\nTransfer-Encoding: chunked\r\n\r\n", "not allowed in trailers"),
        (b"0\r\nX: 1\r\n folded\r\n\r\n", "obsolete line folding"),
        (b"0\r\nX: a\x00\r\n\r\n", "trailer section line 1 contains a NUL byte"),
        (b"0\r\n\n", "trailer section has a bare LF"),
        (b"0\r\nX: 1\n\n", "trailer section has a bare LF"),
    ],
)
def test_malformed_chunked_bodies_are_refused_with_a_reason(body: bytes, message: str) -> None:
    assert message in remote_error(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body)


def test_bare_lf_head_is_refused_before_it_is_complete() -> None:
    message = remote_error(b"HTTP/1.1 200 OK\nContent-Length: 0\n")
    assert "response head has a bare LF line ending; only CRLF is accepted" in message
    assert "bare LF" in remote_error(b"\n")


def test_head_size_limit() -> None:
    big = OK_HEAD + b"X-Pad: " + b"a" * 200 + b"\r\n"
    message = remote_error(big, max_head_bytes=100)
    assert message == "response head exceeds max_response_head_bytes=100"
    assert "exceeds max_response_head_bytes=100" in remote_error(big + b"\r\n", max_head_bytes=100)
    _, events = exchange(big + b"\r\n", codec=ClientCodec(max_head_bytes=len(big) + 2))
    assert type(events[0]) is Response


def test_header_count_limit() -> None:
    head = OK_HEAD + b"X: 1\r\n" * 5 + b"\r\n"
    assert "more than max_response_headers=4" in remote_error(head, max_headers=4)
    _, events = exchange(head, b"", codec=ClientCodec(max_headers=5))
    assert isinstance(events[0], Response) and len(events[0].headers) == 5


def test_trailer_limits() -> None:
    head = OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\n"
    assert "trailer section has 3 lines, more than max_response_headers=2" in remote_error(
        head + b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n", max_headers=2
    )
    for trailers in (b"A: " + b"x" * 100, b"A: " + b"x" * 100 + b"\r\n\r\n"):
        message = remote_error(head + trailers, max_head_bytes=80)
        assert message == "trailer section exceeds max_response_head_bytes=80"


def test_the_codec_is_dead_after_an_error() -> None:
    codec = ClientCodec()
    codec.encode_request("GET", "/", HOST)
    codec.receive_data(b"HTTP/1.1 200 OK\r\nBad-Header : x\r\n\r\n")
    with pytest.raises(RemoteProtocolError, match="whitespace between header name and colon"):
        codec.next_event()
    for call in (
        codec.next_event,
        lambda: codec.receive_data(b"x"),
        lambda: codec.encode_data(b"x"),
        codec.encode_end,
        codec.start_next_cycle,
    ):
        with pytest.raises(RemoteProtocolError, match="unusable after an earlier error"):
            call()
    assert codec.our_state == codec.their_state == "ERROR"


def test_a_local_error_kills_the_codec_with_local_errors() -> None:
    codec = ClientCodec()
    with pytest.raises(LocalProtocolError):
        codec.encode_request("GET", "/", [("Host", "a\r\nb")])
    with pytest.raises(LocalProtocolError, match="unusable after an earlier error"):
        codec.encode_request("GET", "/", HOST)
    with pytest.raises(LocalProtocolError, match="unusable"):
        codec.next_event()


# -- EOF -----------------------------------------------------------------------------------


def test_eof_before_any_byte_says_no_response_was_sent() -> None:
    codec = ClientCodec()
    codec.encode_request("GET", "/", HOST)
    assert codec.next_event() is NEED_DATA
    codec.receive_data(b"")
    assert not codec.response_started
    with pytest.raises(
        RemoteProtocolError, match=r"^server closed the connection without sending a response$"
    ):
        codec.next_event()


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Le", "after 27 bytes of an incomplete response head"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "after an informational (1xx) response"),
        (OK_HEAD + b"Content-Length: 100\r\n\r\n" + b"x" * 12, "after 12 of 100 body bytes"),
        (OK_HEAD + b"Content-Length: 100\r\n\r\n", "after 0 of 100 body bytes"),
        (
            OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nab",
            "inside a chunked body after 7 body bytes",
        ),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello", "inside a chunked body"),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "inside a chunked"),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n", "trailer section"),
    ],
)
def test_eof_inside_a_message_names_how_much_arrived(wire: bytes, message: str) -> None:
    assert message in remote_error(wire, b"")


def test_eof_inside_head_with_one_byte_sets_response_started() -> None:
    codec, events = exchange(b"H")
    assert events == [] and codec.response_started


def test_data_after_eof_is_a_local_error() -> None:
    codec = ClientCodec()
    codec.encode_request("GET", "/", HOST)
    codec.receive_data(b"")
    codec.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after the EOF"):
        codec.receive_data(b"x")


def test_next_event_before_a_request_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="before encode_request"):
        ClientCodec().next_event()


def test_mutable_input_buffers_are_copied() -> None:
    codec = ClientCodec()
    codec.encode_request("GET", "/", HOST)
    buffer = bytearray(OK_HEAD + b"Content-Length: 3\r\n\r\nabc")
    codec.receive_data(memoryview(buffer)[:20])
    codec.receive_data(buffer[20:])
    buffer[:] = b"x" * len(buffer)
    events = pull(codec)
    assert body_of(events) == b"abc"
    assert all(type(e.data) is bytes for e in events if isinstance(e, Data))


# -- serialisation -------------------------------------------------------------------------


def test_get_request_bytes() -> None:
    codec = ClientCodec()
    wire = codec.encode_request(
        "GET", "/a/b?c=d&e", [("Host", "example.org"), ("user-agent", "t/1"), ("X-Empty", "")]
    )
    assert wire == (
        b"GET /a/b?c=d&e HTTP/1.1\r\nHost: example.org\r\nuser-agent: t/1\r\nX-Empty: \r\n\r\n"
    )
    assert codec.our_state == "DONE"
    assert codec.encode_end() == b""
    assert codec.encode_data(b"") == b""


def test_post_request_bytes_add_content_length_and_body() -> None:
    codec = ClientCodec()
    wire = codec.encode_request("POST", "/submit", [*HOST, ("X-V", "caf\xe9")], b"a=1")
    assert wire == (
        b"POST /submit HTTP/1.1\r\nHost: example.org\r\nX-V: caf\xe9\r\n"
        b"Content-Length: 3\r\n\r\na=1"
    )


def test_body_with_matching_content_length_and_empty_body() -> None:
    wire = ClientCodec().encode_request("PUT", "/", [*HOST, ("content-length", "2")], b"hi")
    assert wire.endswith(b"content-length: 2\r\n\r\nhi")
    assert (
        ClientCodec().encode_request("POST", "/", HOST, b"").endswith(b"Content-Length: 0\r\n\r\n")
    )


def test_absolute_form_target_for_proxies() -> None:
    wire = ClientCodec().encode_request("GET", "http://example.org:8080/x?y", HOST)
    assert wire.startswith(b"GET http://example.org:8080/x?y HTTP/1.1\r\n")


def test_chunked_streaming() -> None:
    codec = ClientCodec()
    head = codec.encode_request("POST", "/up", HOST, chunked=True)
    assert head.endswith(b"Host: example.org\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert codec.our_state == "SEND_BODY"
    assert codec.encode_data(b"hello") == b"5\r\nhello\r\n"
    assert codec.encode_data(b"") == b""
    assert codec.encode_data(b"x" * 300) == b"12c\r\n" + b"x" * 300 + b"\r\n"
    assert codec.encode_end([("X-Sum", "1")]) == b"0\r\nX-Sum: 1\r\n\r\n"
    assert codec.our_state == "DONE"
    assert codec.encode_end() == b""


def test_chunked_streaming_without_trailers() -> None:
    codec = ClientCodec()
    codec.encode_request("POST", "/up", HOST, chunked=True)
    assert codec.encode_end() == b"0\r\n\r\n"


def test_content_length_streaming_counts_bytes() -> None:
    codec = ClientCodec()
    head = codec.encode_request("PUT", "/", [*HOST, ("Content-Length", "5")])
    assert head.endswith(b"Content-Length: 5\r\n\r\n")
    piece = b"abc"
    assert codec.encode_data(piece) is piece
    assert codec.encode_data(b"de") == b"de"
    assert codec.encode_end() == b""
    assert codec.our_state == "DONE"


def test_content_length_streaming_too_much() -> None:
    codec = ClientCodec()
    codec.encode_request("PUT", "/", [*HOST, ("Content-Length", "5")])
    codec.encode_data(b"abc")
    with pytest.raises(LocalProtocolError, match="Content-Length is 5 but 6 bytes were given"):
        codec.encode_data(b"def")


def test_content_length_streaming_too_little() -> None:
    codec = ClientCodec()
    codec.encode_request("PUT", "/", [*HOST, ("Content-Length", "5")])
    codec.encode_data(b"abc")
    with pytest.raises(LocalProtocolError, match="after 3 of the 5 bytes promised"):
        codec.encode_end()


@pytest.mark.parametrize(
    ("method", "target", "headers", "kwargs", "message"),
    [
        ("GET", "/", [("Host", "a\r\nX-Injected: 1")], {}, "'Host' value contains CR"),
        ("GET", "/", [*HOST, ("X", "a\nb")], {}, "'X' value contains LF"),
        ("GET", "/", [*HOST, ("X", "a\x00b")], {}, "'X' value contains NUL"),
        ("GET", "/", [*HOST, ("X", "a\x0bb")], {}, "vertical tab"),
        ("GET", "/", [*HOST, ("X", " a")], {}, "leading or trailing whitespace"),
        ("GET", "/", [*HOST, ("X", "a\t")], {}, "leading or trailing whitespace"),
        ("GET", "/", [*HOST, ("E", ""), ("X", "\u20ac")], {}, "'X' value '€' is not latin-1"),
        ("GET", "/", [*HOST, ("X Y", "1")], {}, "invalid header name 'X Y'"),
        ("GET", "/", [*HOST, ("X:", "1")], {}, "invalid header name"),
        ("GET", "/", [*HOST, ("", "1")], {}, "invalid header name"),
        ("GET", "/", [*HOST, ("X\r\n", "1")], {}, "invalid header name"),
        ("G T", "/", HOST, {}, "invalid method 'G T'"),
        ("GET\r\n", "/", HOST, {}, "invalid method"),
        ("", "/", HOST, {}, "invalid method"),
        ("GET", "/a b", HOST, {}, "invalid request target '/a b'"),
        ("GET", "/a\r\nb", HOST, {}, "invalid request target"),
        ("GET", "", HOST, {}, "invalid request target"),
        ("GET", "/caf\xe9", HOST, {}, "invalid request target"),
        ("GET", "/", [], {}, "needs a Host header"),
        ("GET", "/", [*HOST, ("host", "b")], {}, "one Host header, not 2"),
        ("GET", "/", [*HOST, ("Transfer-Encoding", "chunked")], {}, "pass chunked=True"),
        ("GET", "/", [*HOST, ("Content-Length", "x")], {}, "non-negative integer"),
        ("GET", "/", [*HOST, ("Content-Length", "-1")], {}, "non-negative integer"),
        (
            "GET",
            "/",
            [*HOST, ("Content-Length", "1"), ("Content-Length", "1")],
            {},
            "more than one Content-Length",
        ),
        (
            "POST",
            "/",
            [*HOST, ("Content-Length", "3")],
            {"body": b"toolong"},
            "Content-Length header says 3 bytes but the body has 7",
        ),
        ("POST", "/", HOST, {"body": b"x", "chunked": True}, "pass body=None"),
        (
            "POST",
            "/",
            [*HOST, ("Content-Length", "3")],
            {"chunked": True},
            "conflicts with a Content-Length",
        ),
    ],
)
def test_invalid_requests_are_refused_with_a_reason(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    kwargs: dict[str, bytes | bool],
    message: str,
) -> None:
    codec = ClientCodec()
    with pytest.raises(LocalProtocolError) as info:
        codec.encode_request(method, target, headers, **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert codec.our_state == "ERROR"


def test_request_misuse_is_refused() -> None:
    codec = ClientCodec()
    codec.encode_request("GET", "/", HOST)
    with pytest.raises(LocalProtocolError, match="already in progress"):
        codec.encode_request("GET", "/", HOST)
    codec = ClientCodec()
    codec.encode_request("GET", "/", HOST)
    with pytest.raises(LocalProtocolError, match="no request body is being streamed"):
        codec.encode_data(b"x")
    codec = ClientCodec()
    codec.encode_request("GET", "/", HOST)
    with pytest.raises(LocalProtocolError, match="trailers can only be sent with chunked"):
        codec.encode_end([("X", "1")])
    with pytest.raises(LocalProtocolError, match="before encode_request"):
        ClientCodec().encode_end()
    codec = ClientCodec()
    codec.encode_request("POST", "/", HOST, chunked=True)
    with pytest.raises(LocalProtocolError, match="not allowed in trailers"):
        codec.encode_end([("Content-Length", "1")])
    codec = ClientCodec()
    codec.encode_request("POST", "/", HOST, chunked=True)
    with pytest.raises(LocalProtocolError, match="'X' value contains LF"):
        codec.encode_end([("X", "\n")])


def test_request_connection_close_is_recorded() -> None:
    codec, _ = exchange(
        OK_HEAD + b"Content-Length: 0\r\n\r\n", headers=[*HOST, ("Connection", "Close")]
    )
    assert not codec.reusable
    with pytest.raises(LocalProtocolError, match="the request has Connection: close"):
        codec.start_next_cycle()


def test_repr_shows_states() -> None:
    codec = ClientCodec()
    assert repr(codec) == "<ClientCodec our_state=IDLE their_state=IDLE>"


# -- memoised parsing and rendering --------------------------------------------------------------


def test_memoised_field_lines_parse_like_fresh_ones() -> None:
    from aioduct.protocol import http11

    head = b"HTTP/1.1 200 OK\r\nX-Same:  spaced value \t\r\nContent-Length: 2\r\n\r\nok"
    first = exchange(head)[1]
    assert "X-Same:  spaced value \t" in http11._FIELD_LINES
    second = exchange(head)[1]
    assert first == second
    assert first[0] == Response(
        200, "OK", [("X-Same", "spaced value"), ("Content-Length", "2")], "1.1"
    )
    # A line seen as valid before does not make an invalid head valid.
    with pytest.raises(RemoteProtocolError, match="bare LF"):
        exchange(b"HTTP/1.1 200 OK\r\nX-Same:  spaced value \t\nContent-Length: 2\r\n\r\nok")


def test_field_line_memo_is_bounded() -> None:
    from aioduct.protocol import http11

    for i in range(http11._FIELD_MEMO_SIZE + 10):
        exchange(b"HTTP/1.1 204 No Content\r\nX-N: %d\r\n\r\n" % i)
        assert len(http11._FIELD_LINES) <= http11._FIELD_MEMO_SIZE
    long_line = "X-Long: " + "a" * http11._FIELD_MEMO_LINE
    exchange(b"HTTP/1.1 204 No Content\r\n" + long_line.encode() + b"\r\n\r\n")
    assert long_line not in http11._FIELD_LINES


def test_memoised_field_block_keeps_per_request_framing() -> None:
    from aioduct.protocol import http11

    headers = [("Host", "example.org"), ("X-Memo", "1")]
    heads = []
    for body in (b"abc", b"defgh", None):
        codec = ClientCodec()
        heads.append(codec.encode_request("POST", "/p", headers, body))
    assert heads == [
        b"POST /p HTTP/1.1\r\nHost: example.org\r\nX-Memo: 1\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /p HTTP/1.1\r\nHost: example.org\r\nX-Memo: 1\r\nContent-Length: 5\r\n\r\ndefgh",
        b"POST /p HTTP/1.1\r\nHost: example.org\r\nX-Memo: 1\r\n\r\n",
    ]
    assert tuple(headers) in http11._FIELD_BLOCKS
    chunked = ClientCodec().encode_request("POST", "/p", headers, chunked=True)
    assert chunked.endswith(b"X-Memo: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    # A memoised block is still checked against the body and the target, every time.
    with pytest.raises(LocalProtocolError, match="conflicts"):
        ClientCodec().encode_request(
            "POST", "/p", [*headers, ("Content-Length", "1")], chunked=True
        )
    with pytest.raises(LocalProtocolError, match="request target"):
        ClientCodec().encode_request("POST", "/p q", headers)


def test_invalid_headers_are_refused_every_time_and_never_memoised() -> None:
    from aioduct.protocol import http11

    bad = [("Host", "example.org"), ("X-Bad", "a\r\nInjected: 1")]
    for _ in range(2):
        with pytest.raises(LocalProtocolError, match="X-Bad"):
            ClientCodec().encode_request("GET", "/", bad)
    assert tuple(bad) not in http11._FIELD_BLOCKS
    two_hosts = [("Host", "a"), ("Host", "b")]
    for _ in range(2):
        with pytest.raises(LocalProtocolError, match="one Host header, not 2"):
            ClientCodec().encode_request("GET", "/", two_hosts)


def test_field_block_memo_accepts_unhashable_pairs_and_is_bounded() -> None:
    from aioduct.protocol import http11

    as_lists = [["Host", "example.org"]]
    head = ClientCodec().encode_request("GET", "/", as_lists)  # type: ignore[arg-type]
    assert head == b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"
    for i in range(http11._BLOCK_MEMO_SIZE + 10):
        ClientCodec().encode_request("GET", "/", [("Host", f"h{i}.example")])
        assert len(http11._FIELD_BLOCKS) <= http11._BLOCK_MEMO_SIZE


def test_forbidden_bytes_are_found_in_memoised_heads_too() -> None:
    clean = b"HTTP/1.1 200 OK\r\nServer: memo\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n"
    exchange(clean)
    exchange(clean)  # every line is memoised now
    for bad, label in ((b"X-A: 1\x00", "NUL"), (b"X-A: 1\rX", "bare CR"), (b"X-A: \x0c", "form")):
        with pytest.raises(RemoteProtocolError, match=f"response head line 3 contains .*{label}"):
            exchange(clean.replace(b"X-A: 1", bad))
    with pytest.raises(RemoteProtocolError, match="response head line 1 contains a NUL"):
        exchange(clean.replace(b"200 OK", b"200 O\x00K"))


def test_memoised_framing_still_refuses_conflicts_and_is_bounded() -> None:
    from aioduct.protocol import http11

    for _ in range(2):
        with pytest.raises(RemoteProtocolError, match="conflicting Content-Length"):
            exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        with pytest.raises(RemoteProtocolError, match="both Transfer-Encoding and Content-Length"):
            exchange(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n")
        events = exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")[1]
        assert events[1:] == [Data(b"ok"), EndOfMessage()]
    for i in range(http11._FRAMING_MEMO_SIZE + 10):
        exchange(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % i)
        assert len(http11._FRAMINGS) <= http11._FRAMING_MEMO_SIZE


# -- read_complete_body ----------------------------------------------------------------------


def started(method: str = "GET") -> ClientCodec:
    codec = ClientCodec()
    codec.encode_request(method, "/", HOST)
    return codec


def test_read_complete_body_takes_a_buffered_body_and_ends_the_message() -> None:
    codec = started()
    codec.receive_data(OK_HEAD + b"Content-Length: 5\r\n\r\nhello")
    assert type(codec.next_event()) is Response
    assert codec.read_complete_body() == b"hello"
    assert codec.next_event() is NEED_DATA and codec.their_state == "DONE"
    assert codec.reusable
    codec.start_next_cycle()
    codec.encode_request("GET", "/", HOST)
    codec.receive_data(OK_HEAD + b"Content-Length: 2\r\n\r\nok")
    assert codec.next_event() == Response(200, "OK", [("Content-Length", "2")], "1.1")
    assert codec.read_complete_body() == b"ok"


def test_read_complete_body_leaves_fragmented_bodies_to_events() -> None:
    codec = started()
    codec.receive_data(OK_HEAD + b"Content-Length: 10\r\n\r\n01")
    codec.next_event()
    assert codec.read_complete_body() is None  # nothing consumed
    assert codec.next_event() == Data(b"01")
    for piece in (b"234", b"5", b"6789"):
        assert codec.read_complete_body() is None
        codec.receive_data(piece)
        if piece == b"6789":
            assert codec.read_complete_body() == b"6789"  # the rest arrived in one piece
        else:
            assert codec.next_event() == Data(piece)
    assert codec.reusable


def test_read_complete_body_of_bodiless_and_other_framings() -> None:
    head = started("HEAD")
    head.receive_data(OK_HEAD + b"Content-Length: 5\r\n\r\n")
    head.next_event()
    assert head.read_complete_body() == b"" and head.reusable
    chunked = started()
    chunked.receive_data(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    chunked.next_event()
    assert chunked.read_complete_body() is None
    assert pull(chunked) == [Data(b"ok"), EndOfMessage()]
    until_eof = started()
    until_eof.receive_data(OK_HEAD + b"\r\nabc")
    until_eof.next_event()
    assert until_eof.read_complete_body() is None
    before_head = started()
    assert before_head.read_complete_body() is None


def test_read_complete_body_with_bytes_after_the_body_leaves_it_unreusable() -> None:
    codec = started()
    codec.receive_data(OK_HEAD + b"Content-Length: 2\r\n\r\nokEXTRA")
    codec.next_event()
    assert codec.read_complete_body() == b"ok"
    assert not codec.reusable and codec.trailing_data == b"EXTRA"


def test_read_complete_body_on_a_dead_codec_defers_to_next_event() -> None:
    codec = started()
    codec.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        codec.next_event()
    assert codec.read_complete_body() is None
    with pytest.raises(RemoteProtocolError, match="unusable"):
        codec.next_event()
