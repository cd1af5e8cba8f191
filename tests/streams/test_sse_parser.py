"""The SSE parser against the WPT EventSource ``format-*`` cases (wpt/eventsource).

Each case is the stream WPT's ``resources/message.py`` serves for the test's
``message=`` (with its default ``\\n\\n`` appended unless ``newline=none``), decoded, and
the events the test asserts, transcribed by hand. Every stream is fed whole, one byte
at a time, and split at every position, since a network read may end anywhere
(including between the CR and LF of a CRLF, or inside the BOM).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

import pytest

from aioduct import ServerSentEvent, SSEError
from aioduct.sse import SSEDecoder

E = ServerSentEvent


def wpt(message: str, newline: bool = True) -> bytes:
    data = unquote_to_bytes(message)
    return data + b"\n\n" if newline else data


# (WPT file, stream, events dispatched before the stream ends)
CASES: list[tuple[str, bytes, list[ServerSentEvent]]] = [
    (
        "format-bom",
        wpt("%EF%BB%BFdata%3A1%0A%0A%EF%BB%BFdata%3A2%0A%0Adata%3A3"),
        [E(data="1"), E(data="3")],
    ),
    (
        "format-bom-2",
        wpt("%EF%BB%BF%EF%BB%BFdata%3A1%0A%0Adata%3A2%0A%0Adata%3A3"),
        [E(data="2"), E(data="3")],
    ),
    (
        "format-comments",
        (
            "data:1\r:\0\n:\r\ndata:2\n:"
            + "x" * 2048
            + "\rdata:3\n:data:fail\r:"
            + "x" * 2048
            + "\ndata:4\n\n"
        ).encode(),
        [E(data="1\n2\n3\n4")],
    ),
    (
        "format-data-before-final-empty-line",
        b"retry:1000\ndata:test1\n\nid:test\ndata:test2",
        [E(data="test1", retry=1000)],
    ),
    (
        "format-field-data",
        wpt("data%3A%0A%0Adata%0Adata%0A%0Adata%3Atest"),
        [E(data=""), E(data="\n"), E(data="test")],
    ),
    (
        "format-field-event",
        wpt("event%3Atest%0Adata%3Ax%0A%0Adata%3Ax"),
        [E(event="test", data="x"), E(data="x")],
    ),
    ("format-field-event-empty", wpt("event%3A%20%0Adata%3Adata"), [E(data="data")]),
    ("format-field-id", b"id: \xe2\x80\xa6\ndata: hello\n\n", [E(data="hello", id="\u2026")]),
    ("format-field-id-null", b"id: x\0x\ndata: hello\n\n", [E(data="hello")]),
    ("format-field-id-null-2", b"id: 1\n\nid: \0\ndata: hello\n\n", [E(data="hello", id="1")]),
    (
        "format-field-parsing",
        b"data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\r"
        b"data:\r\n data:32\ndata:4\n\n",
        [E(data="\0\n 2\n1\n3\n\n4")],
    ),
    (
        "format-field-retry-bogus",
        wpt("retry%3A3000%0Aretry%3A1000x%0Adata%3Ax"),
        [E(data="x", retry=3000)],
    ),
    ("format-field-retry-empty", wpt("retry%0Adata%3Atest"), [E(data="test")]),
    ("format-field-retry", wpt("retry%3A03000%0Adata%3Ax"), [E(data="x", retry=3000)]),
    (
        "format-field-unknown",
        wpt(
            "data%3Atest%0A%20data%0Adata%0Afoobar%3Axxx%0Ajustsometext%0A%3Athisisacommentyay%0Adata%3Atest"
        ),
        [E(data="test\n\ntest")],
    ),
    (
        "format-leading-space",
        wpt("data%3A%09test%0Ddata%3A%20%0Adata%3Atest"),
        [E(data="\ttest\n\ntest")],
    ),
    (
        "format-newlines",
        wpt("data%3Atest%0D%0Adata%0Adata%3Atest%0D%0A%0D", newline=False),
        [E(data="test\n\ntest")],
    ),
    ("format-null-character", wpt("data%3A%00%0A%0A"), [E(data="\0")]),
    ("format-utf-8", wpt("data%3Aok%E2%80%A6"), [E(data="ok\u2026")]),
    # Beyond WPT: the last event ID persists until set again, and an empty id resets it.
    (
        "id-persists",
        b"id: 1\ndata: 1\n\ndata: 2\n\nid\ndata: 3\n\n",
        [E(data="1", id="1"), E(data="2", id="1"), E(data="3")],
    ),
    ("retry-non-ascii-digits", "retry: \u00b2\ndata: x\n\n".encode(), [E(data="x")]),
    ("no-space-strip-twice", b"data:  x\n\n", [E(data=" x")]),
    ("cr-only", b"data: a\r\rdata: b\r\r", [E(data="a"), E(data="b")]),
]


def feed_all(pieces: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    decoder.end()
    return events


@pytest.mark.parametrize(("name", "stream", "expected"), CASES, ids=[c[0] for c in CASES])
def test_wpt_format_case(name: str, stream: bytes, expected: list[ServerSentEvent]) -> None:
    assert feed_all([stream]) == expected
    assert feed_all([stream[i : i + 1] for i in range(len(stream))]) == expected
    if len(stream) < 400:
        for cut in range(1, len(stream)):
            assert feed_all([stream[:cut], stream[cut:]]) == expected, cut


def test_unfinished_event_is_discarded_and_its_id_not_committed() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 1\ndata: one\n\nid: 2\ndata: two") == [E(data="one", id="1")]
    decoder.end()
    assert decoder.last_event_id == "1"
    # The next connection may begin with a BOM again.
    assert decoder.feed(b"\xef\xbb\xbfdata: again\n\n") == [E(data="again", id="1")]


def test_retry_is_kept_on_the_decoder() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: 250\n\n") == []  # no data: nothing dispatched
    assert decoder.retry == 250
    assert decoder.feed(b"retry: 1.5\ndata: x\n\n") == [E(data="x")]
    assert decoder.retry == 250


def test_bounded_line_without_terminator() -> None:
    decoder = SSEDecoder(max_event_size=100)
    decoder.feed(b"data: " + b"x" * 90)
    with pytest.raises(SSEError, match="max_event_size=100"):
        decoder.feed(b"x" * 20)


def test_bounded_event_of_many_lines() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(SSEError, match="event"):
        decoder.feed(b"data: 0123456789\n" * 20)


def test_json_helper() -> None:
    assert E(data='{"a": [1, 2]}').json() == {"a": [1, 2]}


def test_bad_limit() -> None:
    with pytest.raises(ValueError, match="max_event_size"):
        SSEDecoder(max_event_size=0)


def test_long_terminated_line_is_refused() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(SSEError, match="line"):
        decoder.feed(b"data: ok\n\n" + b"data: " + b"x" * 200 + b"\n\n")


def test_lf_only_chunks_decode_as_single_lines_do() -> None:
    """Complete LF-only lines are decoded in one call: invalid UTF-8 still becomes U+FFFD
    within its own line, exactly as when each line arrives on its own."""
    stream = b"data: caf\xc3\nid: \xff1\ndata: \xe2\x80\n\ndata: \xf0\x9f\x98\x80\n\n"
    whole = SSEDecoder().feed(stream)
    decoder, one_by_one = SSEDecoder(), []
    for i in range(len(stream)):
        one_by_one += decoder.feed(stream[i : i + 1])
    assert whole == one_by_one
    assert whole == [E(data="caf\ufffd\n\ufffd", id="\ufffd1"), E(data="\U0001f600", id="\ufffd1")]
