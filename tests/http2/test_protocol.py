"""The sans-I/O HTTP/2 layer, with bytes pushed in memory between it and an h2 server."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioduct.errors import LocalProtocolError, RemoteProtocolError
from aioduct.protocol.http2 import (
    BDP_PING,
    ConnectionTerminated,
    DataReceived,
    H2Protocol,
    PingAcked,
    ResponseReceived,
    SettingsChanged,
    StreamEnded,
    StreamReset,
    TooManyStreamsError,
    TrailersReceived,
    WindowUpdated,
    _MemoDecoder,
    _MemoEncoder,
)


class Pair:
    """An aioduct client protocol joined to an h2 server connection in memory."""

    def __init__(self, settings: dict[int, int] | None = None, **client_kw: int) -> None:
        self.client = H2Protocol(**client_kw)  # type: ignore[arg-type]
        self.server = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.server.initiate_connection()
        if settings:
            self.server.update_settings(settings)
        self.server_events: list[h2.events.Event] = []
        self.client_events: list[object] = []
        self.pump()

    def pump(self) -> list[object]:
        """Move bytes both ways until quiet; returns the client events of this pump."""
        got: list[object] = []
        while True:
            to_server = self.client.data_to_send()
            if to_server:
                self.server_events += self.server.receive_data(to_server)
            to_client = self.server.data_to_send()
            if to_client:
                got += self.client.receive_data(to_client, now=1.0)
            if not to_server and not to_client:
                self.client_events += got
                return got

    def request(self, path: str = "/", *, body: bool = False) -> int:
        sid = self.client.send_request(
            "POST" if body else "GET",
            "http",
            "example.test",
            path,
            [("Host", "example.test"), ("Connection", "keep-alive"), ("X-A", "1")],
            end_stream=not body,
        )
        self.pump()
        return sid


def test_request_headers_are_h2_shaped() -> None:
    pair = Pair()
    sid = pair.request("/x?y=1")
    received = [e for e in pair.server_events if isinstance(e, h2.events.RequestReceived)]
    assert received and received[0].stream_id == sid
    headers = dict(received[0].headers)  # type: ignore[arg-type]
    assert headers[":authority"] == "example.test" and headers[":path"] == "/x?y=1"
    assert headers["x-a"] == "1"
    assert "host" not in headers and "connection" not in headers  # hop-by-hop dropped


def test_response_events_data_trailers_and_end() -> None:
    pair = Pair()
    sid = pair.request()
    pair.server.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
    pair.server.send_data(sid, b"hello")
    pair.server.send_headers(sid, [("x-checksum", "abc")], end_stream=True)
    events = pair.pump()
    head = next(e for e in events if isinstance(e, ResponseReceived))
    assert head.status == 200 and ("content-type", "text/plain") in head.headers
    data = next(e for e in events if isinstance(e, DataReceived))
    assert data.data == b"hello" and data.flow_length == 5
    trailers = next(e for e in events if isinstance(e, TrailersReceived))
    assert trailers.headers == [("x-checksum", "abc")]
    assert isinstance(events[-1], StreamEnded)


def test_end_stream_is_folded_into_the_last_event() -> None:
    pair = Pair()
    sid = pair.request()
    pair.server.send_headers(sid, [(":status", "204")], end_stream=True)
    head = next(e for e in pair.pump() if isinstance(e, ResponseReceived))
    assert head.end_stream


def test_window_reopens_only_when_acknowledged() -> None:
    pair = Pair(stream_window=65535, connection_window=65535)
    sid = pair.request()
    pair.server.send_headers(sid, [(":status", "200")])
    for _ in range(4):
        pair.server.send_data(sid, b"x" * 16383)
    pair.server.send_data(sid, b"x" * 3)
    pair.pump()
    assert pair.server.local_flow_control_window(sid) == 0
    # The reader has not consumed anything: the server stays blocked.
    pair.pump()
    assert pair.server.local_flow_control_window(sid) == 0
    pair.client.acknowledge(sid, 65535)
    pair.pump()
    assert pair.server.local_flow_control_window(sid) > 0


def test_send_body_stops_at_the_servers_window_and_resumes() -> None:
    pair = Pair({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    sid = pair.request(body=True)
    body = memoryview(b"y" * 2500)
    sent = pair.client.send_body(sid, body, True)
    assert sent == 1000
    pair.pump()
    assert pair.client.send_window(sid) == 0
    received = sum(
        len(e.data or b"") for e in pair.server_events if isinstance(e, h2.events.DataReceived)
    )
    pair.server.acknowledge_received_data(received, sid)
    events = pair.pump()
    assert any(isinstance(e, WindowUpdated) and e.stream_id == sid for e in events)
    sent += pair.client.send_body(sid, body[sent:], True)
    pair.pump()
    pair.server.acknowledge_received_data(1000, sid)
    pair.pump()
    sent += pair.client.send_body(sid, body[sent:], True)
    pair.pump()
    assert sent == 2500
    assert any(isinstance(e, h2.events.StreamEnded) for e in pair.server_events)


def test_settings_are_reported() -> None:
    pair = Pair({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 3})
    assert pair.client.max_concurrent_streams == 3
    assert any(isinstance(e, SettingsChanged) for e in pair.client_events)


def test_reset_and_goaway_events() -> None:
    pair = Pair()
    first = pair.request()
    second = pair.request()
    pair.server.reset_stream(first, h2.errors.ErrorCodes.INTERNAL_ERROR)
    events = pair.pump()
    reset = next(e for e in events if isinstance(e, StreamReset))
    assert reset.stream_id == first and reset.remote and reset.error_code == 2
    pair.server.close_connection(error_code=0, last_stream_id=first)
    goaway = next(e for e in pair.pump() if isinstance(e, ConnectionTerminated))
    assert goaway.last_stream_id == first < second
    assert pair.client.terminated


def test_cancel_resets_only_that_stream() -> None:
    pair = Pair()
    a, b = pair.request(), pair.request()
    pair.client.reset(a)
    pair.pump()
    resets = [e for e in pair.server_events if isinstance(e, h2.events.StreamReset)]
    assert [r.stream_id for r in resets] == [a]
    pair.server.send_headers(b, [(":status", "200")], end_stream=True)
    assert any(isinstance(e, ResponseReceived) and e.stream_id == b for e in pair.pump())


def test_garbage_from_the_server_is_a_clear_protocol_error() -> None:
    client = H2Protocol()
    with pytest.raises(
        RemoteProtocolError, match=r"did not start with HTTP/2 SETTINGS \(an HTTP/1"
    ):
        client.receive_data(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert client.terminated
    pair = Pair()
    with pytest.raises(RemoteProtocolError, match="broke the HTTP/2 protocol"):
        pair.client.receive_data(b"\x00\x00\x01\x07\x00\x00\x00\x00\x01x")  # 1-byte GOAWAY


def test_extended_connect_needs_the_servers_setting() -> None:
    pair = Pair()
    with pytest.raises(RemoteProtocolError, match="SETTINGS_ENABLE_CONNECT_PROTOCOL"):
        pair.client.send_request(
            "CONNECT", "https", "a.test", "/chat", [], end_stream=False, protocol="websocket"
        )
    with pytest.raises(LocalProtocolError, match="CONNECT"):
        pair.client.send_request(
            "GET", "https", "a.test", "/chat", [], end_stream=False, protocol="websocket"
        )
    pair = Pair({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
    sid = pair.client.send_request(
        "CONNECT", "https", "a.test", "/chat", [], end_stream=False, protocol="websocket"
    )
    pair.pump()
    received = next(e for e in pair.server_events if isinstance(e, h2.events.RequestReceived))
    assert received.stream_id == sid
    assert (":protocol", "websocket") in received.headers  # type: ignore[operator]


def test_header_injection_is_refused() -> None:
    pair = Pair()
    with pytest.raises(LocalProtocolError, match="value contains CR"):
        pair.client.send_request("GET", "http", "a", "/", [("x", "a\r\nb")], end_stream=True)


def test_adaptive_window_grows_with_the_bandwidth_delay_product() -> None:
    pair = Pair(stream_window=65535, connection_window=65535, adaptive_window=True)
    sid = pair.request()
    pair.server.send_headers(sid, [(":status", "200")])
    pair.client.maybe_sample_bdp(0.0)
    ping = pair.client.data_to_send()
    pair.client.maybe_sample_bdp(0.0)  # a sample is running: no second PING
    assert not pair.client.data_to_send()
    # 60 000 bytes arrive during the round trip, then the PING's answer.
    for _ in range(4):
        pair.server.send_data(sid, b"z" * 15000)
    pair.client.receive_data(pair.server.data_to_send(), now=0.05)
    pair.server.receive_data(ping)
    events = pair.client.receive_data(pair.server.data_to_send(), now=0.1)
    acks = [e for e in events if isinstance(e, PingAcked)]
    assert acks and acks[0].data == BDP_PING and acks[0].rtt == pytest.approx(0.1)
    assert pair.client.stream_window == 120000
    assert pair.client.connection_window >= 240000


# -- the memoising HPACK coder is exact -------------------------------------------------

_names = st.sampled_from(["content-type", "x-a", "x-b", "date", "set-cookie", "etag"])
_values = st.sampled_from(["text/plain", "1", "2", "a" * 40, "Mon, 01 Jan 2024", ""])
_header_lists = st.lists(st.lists(st.tuples(_names, _values), max_size=6), max_size=25)


@settings(max_examples=30, deadline=None)
@given(_header_lists, st.sampled_from([0, 64, 4096]))
def test_memo_decoder_matches_hpack(blocks: list[list[tuple[str, str]]], table: int) -> None:
    encoder = hpack.Encoder()
    encoder.header_table_size = table
    plain, memo = hpack.Decoder(), _MemoDecoder(65536)
    for fields in blocks * 2:  # repeats exercise the memo
        block = encoder.encode(fields)
        assert list(memo.decode(block, raw=True)) == list(plain.decode(block, raw=True))


@settings(max_examples=30, deadline=None)
@given(_header_lists)
def test_memo_encoder_output_decodes_to_its_input(blocks: list[list[tuple[str, str]]]) -> None:
    memo, decoder = _MemoEncoder(), hpack.Decoder()
    for fields in blocks * 3:
        encoded = [(n.encode(), v.encode()) for n, v in fields]
        assert decoder.decode(memo.encode(encoded)) == fields


# -- framing and stream-state edge cases (aioduct's own framing, against h2's server) -----


def _raw(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes((kind, flags))
        + stream_id.to_bytes(4, "big")
        + payload
    )


def test_bytes_arriving_one_at_a_time_give_the_same_events() -> None:
    pair = Pair()
    sid = pair.request()
    pair.server.send_headers(sid, [(":status", "200"), ("x-a", "1")])
    pair.server.send_data(sid, b"hello", end_stream=True)
    wire = pair.server.data_to_send()
    events: list[object] = []
    for i in range(len(wire)):
        events += pair.client.receive_data(wire[i : i + 1])
    assert [type(e) for e in events] == [ResponseReceived, DataReceived, StreamEnded]
    assert events[1].data == b"hello" and events[1].end_stream  # type: ignore[attr-defined]
    assert not pair.client.stream_is_open(sid)


def test_padding_priority_and_informational_responses() -> None:
    pair = Pair()
    sid = pair.request()
    pair.server.send_headers(sid, [(":status", "103"), ("link", "</a.css>")])
    events = pair.pump()
    # h2's server neither pads HEADERS nor sends priorities: a hand-made frame does both.
    block = pair.server.encoder.encode([(":status", "200")])
    priority = b"\x00\x00\x00\x00\x10"
    wire = _raw(0x1, 0x4 | 0x8 | 0x20, sid, b"\x03" + priority + block + b"\0\0\0")
    events += pair.client.receive_data(wire)
    pair.server.send_data(sid, b"padded", pad_length=20, end_stream=True)
    events += pair.pump()
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["InformationalResponse", "ResponseReceived", "DataReceived", "StreamEnded"]
    assert events[1].status == 200  # type: ignore[attr-defined]
    data = events[2]
    assert data.data == b"padded" and data.flow_length == 6 + 21  # type: ignore[attr-defined]


def test_large_header_blocks_use_continuation_both_ways() -> None:
    pair = Pair()
    big = "v" * 40000
    sid = pair.client.send_request("GET", "http", "a.test", "/", [("x-big", big)], end_stream=True)
    pair.pump()
    received = next(e for e in pair.server_events if isinstance(e, h2.events.RequestReceived))
    assert dict(received.headers)["x-big"] == big  # type: ignore[arg-type]
    pair.server.send_headers(sid, [(":status", "200"), ("x-big", big)], end_stream=True)
    head = next(e for e in pair.pump() if isinstance(e, ResponseReceived))
    assert ("x-big", big) in head.headers


def test_server_settings_move_windows_and_frame_sizes() -> None:
    pair = Pair()
    sid = pair.request(body=True)
    before = pair.client.send_window(sid)
    pair.server.update_settings(
        {
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 200000,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: 65536,
        }
    )
    pair.server.increment_flow_control_window(1 << 20)
    pair.pump()
    assert pair.client.send_window(sid) > before
    sent = pair.client.send_body(sid, memoryview(b"z" * 100000), True)
    pair.pump()
    sizes = [len(e.data) for e in pair.server_events if isinstance(e, h2.events.DataReceived)]
    assert sent == 100000 and sizes[0] == 65536


def test_server_ping_is_answered() -> None:
    pair = Pair()
    pair.server.ping(b"12345678")
    pair.pump()
    acks = [e for e in pair.server_events if isinstance(e, h2.events.PingAckReceived)]
    assert acks and acks[0].ping_data == b"12345678"


def test_frames_on_a_stream_we_reset_are_ignored_but_credited() -> None:
    pair = Pair(stream_window=65535, connection_window=65535)
    sid = pair.request()
    pair.server.send_headers(sid, [(":status", "200")])
    pair.pump()
    pair.client.reset(sid)
    pair.client.data_to_send()
    late = _raw(0x0, 0, sid, b"x" * 12000) * 3
    assert pair.client.receive_data(late) == []
    assert b"\x00\x00\x04\x08" in pair.client.data_to_send()  # a connection WINDOW_UPDATE


def test_stream_errors_reset_only_that_stream() -> None:
    pair = Pair(stream_window=1000)
    a, b = pair.request(), pair.request()
    for sid in (a, b):
        pair.server.send_headers(sid, [(":status", "200")])
    pair.pump()
    # 2000 bytes on a 1000-byte stream window: FLOW_CONTROL_ERROR on that stream only.
    events = pair.client.receive_data(_raw(0x0, 0, a, b"x" * 2000))
    assert [(type(e), e.stream_id, e.error_code, e.remote) for e in events] == [  # type: ignore[attr-defined]
        (StreamReset, a, 3, False)
    ]
    assert b"\x00\x00\x04\x03\x00" + a.to_bytes(4, "big") in pair.client.data_to_send()
    # Trailers without END_STREAM are malformed: PROTOCOL_ERROR, stream b only.
    events = pair.client.receive_data(_raw(0x1, 0x4, b, pair.server.encoder.encode([("x-t", "1")])))
    assert [(type(e), e.error_code) for e in events] == [(StreamReset, 1)]  # type: ignore[attr-defined]
    assert not pair.client.terminated


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (_raw(0x0, 0, 99, b"x"), "idle stream"),
        (_raw(0x1, 0x4, 2, b"\x88"), "idle stream"),
        (_raw(0x5, 0x4, 1, b"\x00\x00\x00\x02"), "PUSH_PROMISE"),
        (_raw(0x8, 0, 0, b"\x00\x00\x00\x00"), "zero WINDOW_UPDATE"),
        (_raw(0x8, 0, 0, b"\x7f\xff\xff\xff"), "past 2\\^31-1"),
        (_raw(0x4, 0, 0, b"\x00\x05\x00\x00\x00\x01"), "MAX_FRAME_SIZE=1"),
        (_raw(0x4, 0, 0, b"\x00\x02\x00\x00\x00\x01"), "ENABLE_PUSH=1"),
        (_raw(0x6, 0, 0, b"1234"), "PING that is not 8 bytes"),
        (_raw(0x9, 0x4, 1, b""), "unexpected CONTINUATION"),
        (b"\x00\x40\x01\x00\x00\x00\x00\x00\x01", "exceeds our MAX_FRAME_SIZE"),
        (_raw(0x1, 0x4, 1, b"\xff\xff\xff\xff"), "bad header block"),
    ],
)
def test_connection_errors_queue_a_goaway(frame: bytes, match: str) -> None:
    pair = Pair()
    pair.client.send_request("GET", "http", "a", "/", [], end_stream=True)
    pair.client.data_to_send()
    with pytest.raises(RemoteProtocolError, match=match):
        pair.client.receive_data(frame)
    assert pair.client.terminated
    goaway = pair.client.data_to_send()
    assert goaway[3] == 0x7


def test_interrupted_header_block_is_a_connection_error() -> None:
    pair = Pair()
    sid = pair.request()
    block = pair.server.encoder.encode([(":status", "200")])
    with pytest.raises(RemoteProtocolError, match="interrupted"):
        pair.client.receive_data(_raw(0x1, 0, sid, block) + _raw(0x6, 0, 0, b"12345678"))


def test_too_many_streams_is_refused_locally() -> None:
    pair = Pair({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    pair.request()
    with pytest.raises(TooManyStreamsError):
        pair.client.send_request("GET", "http", "a", "/", [], end_stream=True)


def test_sensitive_fields_are_never_indexed() -> None:
    pair = Pair()
    for _ in range(2):
        pair.client.send_request(
            "GET", "http", "a", "/", [("authorization", "Bearer x"), ("x-a", "1")], end_stream=True
        )
    wire = pair.client.data_to_send()
    assert wire.count(b"\x10") >= 2 or wire.count(b"\x1f") >= 2  # never-indexed literals
    pair.server_events += pair.server.receive_data(wire)
    requests = [e for e in pair.server_events if isinstance(e, h2.events.RequestReceived)]
    assert all(("authorization", "Bearer x") in r.headers for r in requests)  # type: ignore[operator]
    assert all(
        not isinstance(h, tuple) or h[0] != b"authorization"
        for h in pair.server.decoder.header_table.dynamic_entries
    )


@pytest.mark.parametrize(
    ("method", "length", "body", "ok"),
    [
        ("GET", "5", b"hello", True),
        ("GET", "5", b"hel", False),  # ended short
        ("GET", "2", b"hel", False),  # longer than declared
        ("GET", "x", b"", False),  # not a number
        ("HEAD", "5", b"", True),  # HEAD: no content, whatever the length says
        ("HEAD", None, b"x", False),
    ],
)
def test_body_must_match_content_length(
    method: str, length: str | None, body: bytes, ok: bool
) -> None:
    """RFC 9113 §8.1.1 (h2 did this check for the layer it replaced): a stream error."""
    pair = Pair()
    sid = pair.client.send_request(method, "http", "a", "/", [], end_stream=True)
    pair.pump()
    head = [(":status", "200")] + ([("content-length", length)] if length else [])
    pair.server.send_headers(sid, head)
    pair.server.send_data(sid, body, end_stream=True)
    events = pair.pump()
    resets = [e for e in events if isinstance(e, StreamReset)]
    if ok:
        assert not resets and isinstance(events[-1], StreamEnded)
    else:
        assert resets and resets[0].error_code == 1 and not resets[0].remote
