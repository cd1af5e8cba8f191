"""Hostile input to the sans-I/O HTTP/2 protocol: what it refuses to send, what it bounds.

The send side is the second line behind :mod:`aioduct.validation` (RFC 9113 §8.2-8.3):
``send_request`` refuses the issue's exact inputs itself and puts nothing on the wire.
The receive side bounds every accumulation a server controls: a header block spread
over CONTINUATION frames (bytes and frames), interim responses, runs of frames that
carry no response data (PING, SETTINGS, empty DATA, ... floods), the HPACK tables and
the buffer of an incomplete frame. Each bound ends the connection with a GOAWAY naming
ENHANCE_YOUR_CALM and a :class:`RemoteProtocolError` that says which bound it was.
"""

from __future__ import annotations

import struct

import hpack
import pytest

from aioduct.errors import LocalProtocolError, RemoteProtocolError
from aioduct.protocol.http2 import (
    DataReceived,
    H2Protocol,
    InformationalResponse,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0,
    0x1,
    0x2,
    0x3,
    0x4,
    0x6,
    0x7,
    0x8,
    0x9,
)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
ENHANCE_YOUR_CALM = 0xB


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    head = len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big")
    return head + payload


def block(*fields: tuple[str, str]) -> bytes:
    """An HPACK block that leaves no state behind (never-indexed literals, no Huffman)."""
    return hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(n, v) for n, v in fields], False)


STATUS_200 = b"\x88"  # indexed :status 200
STATUS_103 = block((":status", "103"))


def connected(**kw: int) -> H2Protocol:
    """A client past the preface with stream 1 open (a GET awaiting its response)."""
    proto = H2Protocol(**kw)  # type: ignore[arg-type]
    proto.receive_data(frame(SETTINGS, 0, 0))
    proto.send_request("GET", "http", "a.test", "/", [], end_stream=True)
    proto.data_to_send()
    return proto


def goaway_code(proto: H2Protocol) -> int:
    sent = proto.data_to_send()
    at = sent.rfind(b"\x00\x00\x08\x07")  # an 8-byte GOAWAY
    assert at >= 0, sent
    return int(struct.unpack(">L", sent[at + 13 : at + 17])[0])


# -- the send side: the second line --------------------------------------------------------

GOOD = {"method": "GET", "scheme": "http", "authority": "a.test", "path": "/", "headers": []}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"method": "GET\r\nX-Injected: 1"}, "invalid method"),
        ({"method": "GE T"}, "invalid method"),
        ({"method": "GET\x00"}, "invalid method"),
        ({"method": ""}, "invalid method"),
        ({"path": "/?q=a\r\nX-Injected: 1"}, "invalid request target"),
        ({"path": "/a b"}, "invalid request target"),
        ({"path": ""}, "invalid request target"),
        ({"authority": "a.test\r\nX-Injected: 1"}, "invalid authority"),
        ({"scheme": "ht tp"}, "invalid scheme"),
        ({"headers": [("X-A: b", "1")]}, "invalid header name"),
        ({"headers": [("X A", "1")]}, "invalid header name"),
        ({"headers": [("X-A\r\nX-Injected", "1")]}, "invalid header name"),
        ({"headers": [("", "1")]}, "invalid header name"),
        ({"headers": [(":path", "/admin")]}, "invalid header name"),
        ({"headers": [("x", "a\r\nX-Injected: 1")]}, "value contains CR"),
        ({"headers": [("x", "a\x00")]}, "value contains NUL"),
        ({"headers": [("x", " a")]}, "leading or trailing whitespace"),
        ({"headers": [("x", "\u20ac")]}, "not latin-1"),
    ],
)
def test_requests_that_cannot_be_sent_are_refused_and_send_nothing(
    change: dict[str, object], match: str
) -> None:
    proto = H2Protocol()
    proto.receive_data(frame(SETTINGS, 0, 0))
    proto.data_to_send()
    request = {**GOOD, **change}
    with pytest.raises(LocalProtocolError, match=match):
        proto.send_request(end_stream=True, **request)  # type: ignore[arg-type]
    assert proto.data_to_send() == b""
    assert proto.send_request(end_stream=True, **GOOD) == 1  # type: ignore[arg-type]


def test_invalid_extended_connect_protocol_is_refused() -> None:
    proto = H2Protocol()
    proto.receive_data(frame(SETTINGS, 0, 0, struct.pack(">HL", 0x8, 1)))
    with pytest.raises(LocalProtocolError, match="invalid :protocol"):
        proto.send_request(
            "CONNECT", "https", "a.test", "/", [], end_stream=False, protocol="web socket"
        )


def test_pseudo_headers_come_first_and_once() -> None:
    proto = H2Protocol()
    proto.receive_data(frame(SETTINGS, 0, 0))
    proto.data_to_send()
    proto.send_request(
        "GET", "http", "a.test", "/x", [("X-A", "1"), ("Host", "b")], end_stream=True
    )
    wire = proto.data_to_send()
    fields = hpack.Decoder().decode(wire[9:])
    names = [name for name, _ in fields]
    assert names == [":method", ":scheme", ":authority", ":path", "x-a"]


# -- malformed response fields -------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        [(":status", "200"), ("", "empty name")],
        [(":status", "200"), ("X-Upper", "1")],
        [(":status", "200"), ("x a", "1")],
        [(":status", "200"), ("x-a\r\nx-injected", "1")],
        [(":status", "200"), (":path", "/")],
        [("x-a", "1"), (":status", "200")],
        [(":status", "200"), (":status", "204")],
        [(":status", "200"), ("x-a", "1\r\nx-injected: 1")],
        [(":status", "200"), ("x-a", "1\x00")],
    ],
)
def test_malformed_response_fields_reset_only_their_stream(fields: list[tuple[str, str]]) -> None:
    proto = connected()
    proto.send_request("GET", "http", "a.test", "/2", [], end_stream=True)
    server = hpack.Encoder()  # indexes what it sends: both blocks share its table
    bad = frame(HEADERS, END_HEADERS | END_STREAM, 1, server.encode(fields))
    good = frame(
        HEADERS, END_HEADERS | END_STREAM, 3, server.encode([(":status", "200"), ("x-ok", "1")])
    )
    events = proto.receive_data(bad + good)
    reset = events[0]
    assert isinstance(reset, StreamReset) and (reset.stream_id, reset.error_code) == (1, 0x1)
    head = events[1]
    assert isinstance(head, ResponseReceived) and head.headers == [("x-ok", "1")]


# -- CONTINUATION --------------------------------------------------------------------------


def test_continuation_bytes_are_bounded_by_max_header_list_size() -> None:
    proto = connected(max_header_list_size=4096)
    flood = frame(HEADERS, 0, 1, STATUS_200) + frame(CONTINUATION, 0, 1, b"\x00" * 2000) * 3
    with pytest.raises(RemoteProtocolError, match=r"past 4096 bytes \(max_header_list_size\)"):
        proto.receive_data(flood)
    assert goaway_code(proto) == ENHANCE_YOUR_CALM


def test_continuation_frames_are_counted_even_when_empty() -> None:
    proto = connected()
    flood = frame(HEADERS, 0, 1, STATUS_200) + frame(CONTINUATION, 0, 1) * 10_000
    with pytest.raises(RemoteProtocolError, match="more than 8 CONTINUATION frames"):
        proto.receive_data(flood)
    assert goaway_code(proto) == ENHANCE_YOUR_CALM


def test_the_continuation_allowance_follows_the_header_list_size() -> None:
    # 1 MiB of header list in 16 KiB frames needs 64 frames: 80 (a quarter more) pass.
    proto = connected(max_header_list_size=1 << 20)
    data = frame(HEADERS, 0, 1, STATUS_200) + frame(CONTINUATION, 0, 1) * 79
    events = proto.receive_data(data + frame(CONTINUATION, END_HEADERS | END_STREAM, 1))
    assert any(isinstance(e, ResponseReceived) for e in events)
    proto = connected(max_header_list_size=1 << 20)
    with pytest.raises(RemoteProtocolError, match="more than 80 CONTINUATION"):
        proto.receive_data(frame(HEADERS, 0, 1, STATUS_200) + frame(CONTINUATION, 0, 1) * 81)


def test_a_large_block_in_full_frames_is_accepted() -> None:
    fields = [(":status", "200"), *((f"x-{i}", "v" * 1000) for i in range(60))]
    payload = block(*fields)
    assert 16384 * 3 < len(payload) < 65536 - 2000
    pieces = [payload[at : at + 16384] for at in range(0, len(payload), 16384)]
    data = frame(HEADERS, 0, 1, pieces[0])
    for i, piece in enumerate(pieces[1:], 2):
        data += frame(CONTINUATION, END_HEADERS if i == len(pieces) else 0, 1, piece)
    events = connected().receive_data(data)
    head = next(e for e in events if isinstance(e, ResponseReceived))
    assert len(head.headers) == 60


# -- interim responses ---------------------------------------------------------------------


def test_a_hundred_interim_responses_are_accepted_the_next_is_a_flood() -> None:
    proto = connected()
    interim = frame(HEADERS, END_HEADERS, 1, STATUS_103)
    events = proto.receive_data(
        interim * 100 + frame(HEADERS, END_HEADERS | END_STREAM, 1, STATUS_200)
    )
    assert sum(isinstance(e, InformationalResponse) for e in events) == 100
    assert isinstance(events[-1], StreamEnded)
    proto = connected()
    with pytest.raises(RemoteProtocolError, match="more than 100 informational"):
        proto.receive_data(interim * 10_000)
    assert goaway_code(proto) == ENHANCE_YOUR_CALM


def test_interim_header_bytes_are_bounded_together() -> None:
    proto = connected(max_header_list_size=8192)
    hint = frame(HEADERS, END_HEADERS, 1, block((":status", "103"), ("link", "x" * 1000)))
    with pytest.raises(RemoteProtocolError, match=r"exceed 8192 bytes \(max_header_list_size\)"):
        proto.receive_data(hint * 9)


def test_the_interim_count_is_per_stream() -> None:
    proto = connected()
    proto.send_request("GET", "http", "a.test", "/2", [], end_stream=True)
    interim = frame(HEADERS, END_HEADERS, 1, STATUS_103) * 60
    interim += frame(HEADERS, END_HEADERS, 3, STATUS_103) * 60
    assert len(proto.receive_data(interim)) == 120


# -- runs of frames that carry no response data --------------------------------------------

UNPRODUCTIVE = {
    "PING": frame(PING, 0, 0, b"12345678"),
    "PING ACK": frame(PING, ACK, 0, b"12345678"),
    "SETTINGS": frame(SETTINGS, 0, 0, struct.pack(">HL", 0x3, 100)),
    "SETTINGS ACK": frame(SETTINGS, ACK, 0),
    "PRIORITY": frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00\x10"),
    "WINDOW_UPDATE": frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", 1)),
    "unknown type": frame(0xFA, 0, 0, b"junk"),
    "RST_STREAM for a closed stream": frame(RST_STREAM, 0, 1, struct.pack(">L", 8)),
}


@pytest.mark.parametrize("kind", list(UNPRODUCTIVE))
def test_floods_of_frames_without_response_data_end_the_connection(kind: str) -> None:
    proto = H2Protocol(max_unproductive_frames=16)
    proto.receive_data(frame(SETTINGS, 0, 0))
    proto.send_request("GET", "http", "a.test", "/", [], end_stream=True)
    proto.receive_data(frame(HEADERS, END_HEADERS | END_STREAM, 1, STATUS_200))
    proto.data_to_send()
    proto.receive_data(UNPRODUCTIVE[kind] * 16)  # up to the limit: fine
    with pytest.raises(RemoteProtocolError, match="more than 16 frames in a row"):
        proto.receive_data(UNPRODUCTIVE[kind])
    assert goaway_code(proto) == ENHANCE_YOUR_CALM


def test_empty_data_frames_on_a_live_stream_are_a_flood() -> None:
    proto = connected(max_unproductive_frames=16)
    proto.receive_data(frame(HEADERS, END_HEADERS, 1, STATUS_200))
    with pytest.raises(RemoteProtocolError, match="frames in a row"):
        proto.receive_data(frame(DATA, 0, 1) * 1000)


def test_the_default_allows_ten_thousand() -> None:
    proto = connected()
    proto.receive_data(frame(HEADERS, END_HEADERS, 1, STATUS_200))
    proto.receive_data(frame(PING, 0, 0, b"12345678") * 9_999)
    with pytest.raises(RemoteProtocolError, match="more than 10000 frames in a row"):
        proto.receive_data(frame(DATA, 0, 1) * 2)


def test_response_data_and_our_requests_start_a_new_count() -> None:
    proto = connected(max_unproductive_frames=16)
    proto.receive_data(frame(HEADERS, END_HEADERS, 1, STATUS_200))
    pings = frame(PING, 0, 0, b"12345678") * 15
    for _ in range(10):
        events = proto.receive_data(pings + frame(DATA, 0, 1, b"x"))
        assert isinstance(events[-1], DataReceived)
        proto.receive_data(pings)
        proto.send_request("GET", "http", "a.test", "/", [], end_stream=True)
    proto.receive_data(frame(DATA, END_STREAM, 1))


def test_data_on_a_reset_stream_is_not_progress() -> None:
    proto = connected(max_unproductive_frames=16)
    proto.receive_data(frame(HEADERS, END_HEADERS, 1, STATUS_200))
    proto.reset(1)
    with pytest.raises(RemoteProtocolError, match="frames in a row"):
        proto.receive_data(frame(DATA, 0, 1, b"x" * 100) * 17)


# -- flow control and HPACK state ----------------------------------------------------------


def test_window_update_overflow_is_refused() -> None:
    proto = connected()
    big = frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", 2**31 - 1))
    with pytest.raises(RemoteProtocolError, match="past 2"):
        proto.receive_data(big)


def test_the_encoder_table_stays_small_whatever_the_server_allows() -> None:
    proto = H2Protocol()
    proto.receive_data(frame(SETTINGS, 0, 0, struct.pack(">HL", 0x1, 2**32 - 1)))
    for i in range(200):
        proto.send_request(
            "GET", "http", "a.test", f"/{i}", [("x-n", str(i) * 50)], end_stream=True
        )
    assert proto._encoder.header_table_size == 4096
    table = getattr(proto._encoder, "header_table", None)
    if table is not None:  # hpack's encoder shows its table; jh2's does not
        assert table._current_size <= 4096 and table.dynamic_entries


def test_a_table_size_update_beyond_our_setting_is_refused() -> None:
    # 001xxxxx: a dynamic table size update to 65536, more than the 4096 we advertise.
    update = bytes([0x3F]) + bytes([0xE1, 0xFF, 0x03])
    with pytest.raises(RemoteProtocolError, match="COMPRESSION_ERROR"):
        connected().receive_data(frame(HEADERS, END_HEADERS, 1, update + STATUS_200))


def test_trailers_are_bounded_by_max_header_list_size() -> None:
    proto = connected(max_header_list_size=2048)
    proto.receive_data(frame(HEADERS, END_HEADERS, 1, STATUS_200))
    trailers = block(("x-checksum", "x" * 4000))
    with pytest.raises(RemoteProtocolError, match="max_header_list_size"):
        proto.receive_data(frame(HEADERS, END_HEADERS | END_STREAM, 1, trailers))


def test_an_incomplete_frame_is_joined_once_not_per_read() -> None:
    proto = connected(max_frame_size=1 << 22)
    proto.receive_data(frame(HEADERS, END_HEADERS, 1, STATUS_200))
    data = frame(DATA, END_STREAM, 1, b"x" * (1 << 21))
    pieces = [data[at : at + 4096] for at in range(0, len(data), 4096)]
    for piece in pieces[:-1]:
        assert proto.receive_data(piece) == []
    assert len(proto._inbuf) == len(pieces) - 1  # kept as read, nothing joined yet
    events = proto.receive_data(pieces[-1])
    assert [type(e) for e in events] == [DataReceived, StreamEnded]
    assert len(events[0].data) == 1 << 21  # type: ignore[union-attr]


def test_a_settings_frame_repeating_the_window_applies_its_last_value() -> None:
    proto = connected()
    for path in ("/2", "/3"):
        proto.send_request("POST", "http", "a.test", path, [], end_stream=False)
    entries = b"".join(struct.pack(">HL", 0x4, 1000 + i) for i in range(2000))
    proto.receive_data(frame(SETTINGS, 0, 0, entries))
    assert proto.send_window(3) == proto.send_window(5) == min(65535, 2999)
