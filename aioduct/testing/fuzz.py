"""A fuzz harness for both client protocol layers: arbitrary server bytes in, three checks.

The differential tests (``tests/protocol``, ``tests/http2``) compare aioduct's codecs with
h11 and h2 on server byte streams those libraries would produce or refuse. This harness
goes further out: it feeds :class:`~aioduct.protocol.http11.ClientCodec` and
:class:`~aioduct.protocol.http2.H2Protocol` what a hostile or broken server could send --
drawn by hypothesis from a grammar of near-valid messages (status lines, framing fields
with every odd spelling, chunked bodies, interim heads, HTTP/2 frames of every type with
HPACK blocks, padding, wrong lengths, floods of one frame repeated thousands of times)
mixed with raw bytes, split at random points -- while the harness drives the client side
as the connection layers do (several requests per connection, flow-control credit,
resets, PINGs). For every case it checks:

1. **only the project's errors**: nothing but :class:`~aioduct.AioductError` escapes
   (an ``IndexError``, ``UnicodeError`` or a dependency's exception is a bug), and a
   codec that raised stays dead;
2. **bounded memory per connection**: the peak memory the case allocated (tracemalloc)
   stays under :data:`MEMORY_BOUND` plus :data:`READ_FACTOR` times the largest single
   read -- never in proportion to how much the server sent in all;
3. **bounded steps per byte**: the Python and C calls made (a profile hook counts them)
   stay under :data:`STEPS_BASE` plus :data:`STEPS_PER_BYTE` per byte received.

``tests/fuzz`` runs a few seconds of it in CI. A long run, by hand, on one core::

    taskset -c 0 .venv/bin/python -m aioduct.testing.fuzz --seconds 600

prints the cases run, the time taken and the largest memory peak and steps-per-byte seen
(``AIODUCT_HPACK=python`` fuzzes the HTTP/2 layer with hpack's decoder instead of jh2's).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import struct
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Final

import hpack
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ..errors import AioductError
from ..protocol.http2 import (
    DataReceived,
    H2Protocol,
    StreamReset,
    TooManyStreamsError,
    WindowUpdated,
)
from ..protocol.http11 import NEED_DATA, ClientCodec, EndOfMessage

__all__ = [
    "MEMORY_BOUND",
    "READ_FACTOR",
    "STEPS_BASE",
    "STEPS_PER_BYTE",
    "Stats",
    "h1_case",
    "h2_case",
    "run_h1",
    "run_h2",
]

#: Peak bytes a case may allocate beyond READ_FACTOR times its largest read: a head
#: buffer (max_head_bytes), one incomplete frame, the HPACK tables and the bounded memos
#: of both codecs, with room to spare -- and no term in the total bytes received.
MEMORY_BOUND: Final = 8 * 1024 * 1024
#: The events of one read: an HTTP/2 read of 10-byte DATA frames gives an event and a
#: bytes object per frame, about 12 times the read (transports read at most 256 KiB).
READ_FACTOR: Final = 16
#: Calls a case may make: a fixed allowance (connection setup, requests) ...
STEPS_BASE: Final = 20_000
#: ... plus this many per byte received.
STEPS_PER_BYTE: Final = 40


@dataclasses.dataclass
class Stats:
    """What the cases of a run did, for the long run's report."""

    cases: int = 0
    bytes: int = 0
    errors: int = 0
    peak_memory: int = 0
    #: Over the cases that received at least 4 KiB.
    max_steps_per_byte: float = 0.0
    seconds: float = 0.0

    def add(self, size: int, failed: bool, peak: int, steps: int) -> None:
        self.cases += 1
        self.bytes += size
        self.errors += failed
        self.peak_memory = max(self.peak_memory, peak)
        if size >= 4096:  # below, the fixed allowance dominates the ratio
            self.max_steps_per_byte = max(self.max_steps_per_byte, steps / size)


#: Per target, across every run in this process.
STATS: Final = {"h1": Stats(), "h2": Stats()}


# -- measuring a case ----------------------------------------------------------------------


class _Steps:
    """A profile hook counting Python and C calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call" or event == "c_call":
            self.count += 1


def _measure(target: str, chunks: list[bytes], drive: Callable[[], None]) -> None:
    """Run ``drive`` under the three checks (see the module docstring)."""
    size = sum(map(len, chunks))
    largest = max(map(len, chunks), default=0)
    steps = _Steps()
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    failed = False
    sys.setprofile(steps)
    try:
        drive()
    except AioductError:
        failed = True
    finally:
        sys.setprofile(None)
        peak = tracemalloc.get_traced_memory()[1] - base
        if not tracing:
            tracemalloc.stop()
    STATS[target].add(size, failed, peak, steps.count)
    assert peak <= MEMORY_BOUND + READ_FACTOR * largest, (
        f"{target}: {peak} bytes at peak for {size} bytes received (largest read {largest})"
    )
    assert steps.count <= STEPS_BASE + STEPS_PER_BYTE * size, (
        f"{target}: {steps.count} calls for {size} bytes received"
    )


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# -- HTTP/1.1: a grammar of near-valid responses -------------------------------------------

Fields = list[tuple[str, str]]
H1Request = tuple[str, Fields, bytes | None]
H1Case = tuple[dict[str, int], list[H1Request], list[bytes], bool]
H2Case = tuple[dict[str, Any], int, list[bytes], list[int]]

#: Mostly values a server would send, sometimes any bytes at all.
_VALUE = st.one_of(
    st.text("".join(map(chr, range(0x20, 0x7F))) + "\t\xe9", max_size=20).map(
        lambda text: text.encode("latin-1")
    ),
    st.binary(max_size=20),
)
_CRLF = st.sampled_from([b"\r\n"] * 60 + [b"\n", b"\r", b"", b"\r\r\n"])
_STATUS_LINE = st.one_of(
    st.sampled_from(
        [b"HTTP/1.1 200 OK", b"HTTP/1.1 204 No Content", b"HTTP/1.0 200 OK", b"HTTP/1.1 304 "]
    ),
    st.builds(
        lambda version, code, reason: version + b" " + code + reason,
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1x", b""]),
        st.one_of(
            st.integers(0, 999).map(lambda n: str(n).encode()),
            st.sampled_from([b"20", b"2000", b"+20", b" 200", b"2\x000", "٢٠٠".encode()]),
        ),
        st.one_of(st.just(b" OK"), st.just(b""), _VALUE.map(lambda r: b" " + r)),
    ),
)
_LENGTHS = [b"0", b"5", b"+5", b" 5 ", b"05", b"1_0", b"-1", b"5, 5", b"5,6", b"0x5", b"\xd9\xa5"]
_FIELD = st.one_of(
    st.tuples(st.just(b"Content-Length"), st.sampled_from([*_LENGTHS, b"9" * 30])),
    st.tuples(
        st.just(b"Transfer-Encoding"),
        st.sampled_from([b"chunked", b"Chunked", b"gzip, chunked", b"chunked, gzip", b"identity"]),
    ),
    st.tuples(st.just(b"Connection"), st.sampled_from([b"close", b"keep-alive", b"Upgrade"])),
    st.tuples(st.sampled_from([b"Upgrade", b"Set-Cookie", b"X-A", b"Link"]), _VALUE),
    st.tuples(st.sampled_from([b"X-B", b"Date", b"Server"]), st.sampled_from([b"1", b"a b"])),
    st.tuples(st.binary(max_size=8), _VALUE),
)
_SEPARATOR = st.sampled_from([b": "] * 20 + [b":", b" : ", b":\t", b""])


@st.composite
def _head(draw: st.DrawFn, status: Any = _STATUS_LINE) -> bytes:
    parts = [draw(status), draw(_CRLF)]
    for name, value in draw(st.lists(_FIELD, max_size=6)):
        parts += [name, draw(_SEPARATOR), value, draw(_CRLF)]
    parts.append(draw(_CRLF))
    return b"".join(parts)


@st.composite
def _chunked(draw: st.DrawFn) -> bytes:
    parts = []
    for data in draw(st.lists(st.binary(max_size=40), max_size=4)):
        size = draw(
            st.sampled_from([b"%x" % len(data), b"%X" % len(data), b"0x%x" % len(data), b"ff" * 9])
        )
        ext = draw(st.sampled_from([b"", b";a=b", b";\x00", b" "]))
        parts += [size, ext, draw(_CRLF), data, draw(_CRLF)]
    parts += [b"0", draw(_CRLF)]
    for name, value in draw(st.lists(_FIELD, max_size=2)):
        parts += [name, b": ", value, draw(_CRLF)]
    parts.append(draw(_CRLF))
    return b"".join(parts)


_INTERIM = st.builds(
    lambda code, head, n: head.replace(b"HTTP/1.1 200 OK", b"HTTP/1.1 " + code, 1) * n,
    st.sampled_from([b"100 Continue", b"103 Early Hints", b"102 Processing", b"101 Switching"]),
    _head(st.just(b"HTTP/1.1 200 OK")),
    st.integers(1, 300),
)
_RESPONSE = st.builds(
    lambda head, body: head + body,
    _head(),
    st.one_of(st.binary(max_size=64), _chunked()),
)
_H1_STREAM = st.lists(
    st.one_of(_RESPONSE, _RESPONSE, _INTERIM, st.binary(max_size=64)), min_size=1, max_size=6
).map(b"".join)
_REQUEST: st.SearchStrategy[H1Request] = st.sampled_from(
    [
        ("GET", [], None),
        ("HEAD", [], None),
        ("POST", [], b"body"),
        ("GET", [("Upgrade", "websocket"), ("Connection", "Upgrade")], None),
        ("CONNECT", [], None),
    ]
)


@st.composite
def h1_case(draw: st.DrawFn) -> H1Case:
    """(codec limits, requests for up to three cycles, the server's reads, read bodies whole)."""
    limits = {
        "max_head_bytes": draw(st.sampled_from([1024, 4096, 65536])),
        "max_headers": draw(st.sampled_from([8, 100])),
    }
    requests = draw(st.lists(_REQUEST, min_size=1, max_size=3))
    data = draw(_H1_STREAM)
    chunks = _split(data, draw(st.lists(st.integers(0, 1 << 20), max_size=12)))
    return limits, requests, chunks, draw(st.booleans())


def run_h1(
    limits: dict[str, int], requests: list[H1Request], chunks: list[bytes], whole: bool
) -> None:
    """One client connection receiving ``chunks``, as the connection layers drive it."""

    def drive() -> None:
        codec = ClientCodec(**limits)
        pending = iter(requests)
        method, extra, body = next(pending)
        codec.encode_request(method, "/", [("Host", "a.test"), *extra], body)
        reads: Iterator[bytes] = iter([*chunks, b""])
        try:
            while True:
                if whole and codec.read_complete_body() is not None:
                    event: Any = EndOfMessage()
                else:
                    event = codec.next_event()
                if event is NEED_DATA:
                    data = next(reads, None)
                    if data is None or codec.their_state == "SWITCHED_PROTOCOL":
                        return
                    codec.receive_data(data)
                elif type(event) is EndOfMessage:
                    follow = next(pending, None)
                    if follow is None or not codec.reusable:
                        return
                    codec.start_next_cycle()
                    method, extra, body = follow
                    codec.encode_request(method, "/", [("Host", "a.test"), *extra], body)
        except AioductError:
            try:  # a codec that raised stays dead
                codec.next_event()
            except AioductError:
                raise
            raise AssertionError("the codec went on after an error") from None

    _measure("h1", chunks, drive)


# -- HTTP/2: frames of every type ----------------------------------------------------------

_ENCODER_FIELDS = st.lists(
    st.tuples(
        st.sampled_from([":status", "content-length", "x-a", ":path", "te", "Upper", ""]),
        st.sampled_from(
            ["200", "100", "103", "204", "304", "2000", "abc", "5", "+5", "", "x" * 300]
        ),
    ),
    max_size=5,
)


def _hpack_block(fields: list[tuple[str, str]], huffman: bool, table_update: int | None) -> bytes:
    encoder = hpack.Encoder()
    if table_update is not None:
        encoder.header_table_size = table_update
    return bytes(encoder.encode(fields, huffman))


_BLOCK = st.one_of(
    st.builds(
        _hpack_block,
        _ENCODER_FIELDS,
        st.booleans(),
        st.none() | st.sampled_from([0, 4096, 65536]),
    ),
    st.binary(max_size=40),
)
_STREAM_ID = st.sampled_from([0, 1, 1, 1, 3, 5, 2, 7, 2**31 - 1])


@st.composite
def _frame(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([0, 0, 1, 1, 2, 3, 4, 4, 5, 6, 7, 8, 8, 9, 9, 0x10]))
    flags = draw(st.sampled_from([0, 0x1, 0x4, 0x5, 0x8, 0x9, 0x20, 0x25, 0xFF]))
    if kind in (1, 9, 5):
        payload = draw(_BLOCK)
        if kind == 5:
            payload = b"\x00\x00\x00\x02" + payload
    elif kind == 4:
        values = st.sampled_from([0, 1, 100, 16384, 65535, 2**24, 2**31, 2**32 - 1])
        pairs = draw(st.lists(st.tuples(st.integers(0, 9), values), max_size=4))
        payload = b"".join(struct.pack(">HL", k, v) for k, v in pairs)
    elif kind == 8:
        payload = struct.pack(">L", draw(st.sampled_from([0, 1, 1000, 2**31 - 1, 2**32 - 1])))
    elif kind == 6:
        payload = draw(st.sampled_from([b"12345678", b"aioductK", b"aioductB", b"1234"]))
    elif kind in (3, 7):
        payload = struct.pack(">LL", draw(_STREAM_ID), draw(st.integers(0, 14)))[
            : 4 if kind == 3 else 8
        ] + draw(st.binary(max_size=4))
    else:
        payload = draw(st.binary(max_size=64))
    if flags & 0x8 and draw(st.booleans()):
        payload = bytes([draw(st.integers(0, 80))]) + payload
    length = len(payload)
    if draw(st.integers(0, 20)) == 0:
        length = draw(st.integers(0, 2**24 - 1))  # a length that lies
    head = length.to_bytes(3, "big") + bytes((kind, flags)) + draw(_STREAM_ID).to_bytes(4, "big")
    return (head + payload) * draw(st.sampled_from([1] * 20 + [50, 2000, 20_000]))


_SETTINGS_FIRST = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_STREAM = st.builds(
    lambda first, frames, junk: first + b"".join(frames) + junk,
    st.sampled_from([_SETTINGS_FIRST] * 8 + [b"", b"HTTP/1.1 200 OK\r\n\r\n"]),
    st.lists(_frame(), max_size=10),
    st.sampled_from([b""] * 5 + [b"\x00\x00\x05\x00"]),
)


@st.composite
def h2_case(draw: st.DrawFn) -> H2Case:
    """(protocol options, requests opened first, the server's reads, actions per read)."""
    options = {
        "max_frame_size": draw(st.sampled_from([16384, 65536])),
        "max_header_list_size": draw(st.sampled_from([1024, 65536])),
        "stream_window": draw(st.sampled_from([65535, 2 * 1024 * 1024])),
        "adaptive_window": draw(st.booleans()),
    }
    data = draw(_H2_STREAM)
    chunks = _split(data, draw(st.lists(st.integers(0, 1 << 22), max_size=12)))
    actions = draw(st.lists(st.integers(0, 9), min_size=len(chunks), max_size=len(chunks)))
    return options, draw(st.integers(1, 3)), chunks, actions


def run_h2(options: dict[str, Any], opened: int, chunks: list[bytes], actions: list[int]) -> None:
    """One client connection receiving ``chunks``, driven as HTTP2Connection drives it."""

    def drive() -> None:
        proto = H2Protocol(**options)
        proto.data_to_send()
        streams: list[int] = []
        uploads: dict[int, bytes] = {}

        def request(body: bool) -> None:
            try:
                sid = proto.send_request(
                    "POST" if body else "GET", "http", "a.test", "/", [], end_stream=not body
                )
            except (TooManyStreamsError, AioductError):
                return  # the server's stream limit, or a connection that ended
            streams.append(sid)
            if body:
                uploads[sid] = b"x" * 70_000

        for i in range(opened):
            request(body=i == 1)
        for sid, rest in list(uploads.items()):
            uploads[sid] = rest[proto.send_body(sid, memoryview(rest), True) :]
        for now, (chunk, action) in enumerate(zip(chunks, actions, strict=False)):
            for event in proto.receive_data(chunk, now=now * 0.01):
                if isinstance(event, DataReceived):
                    proto.acknowledge(event.stream_id, event.flow_length)
                elif isinstance(event, WindowUpdated):
                    for sid, rest in list(uploads.items()):
                        uploads[sid] = rest[proto.send_body(sid, memoryview(rest), True) :]
                elif isinstance(event, StreamReset):
                    uploads.pop(event.stream_id, None)
            if action == 0 and streams:
                proto.reset(streams[-1])
            elif action == 1:
                request(body=False)
            elif action == 2:
                proto.ping()
            elif action == 3:
                proto.maybe_sample_bdp(now * 0.01)
            proto.data_to_send()

    _measure("h2", chunks, drive)


# -- running -------------------------------------------------------------------------------


#: The hypothesis settings of a CI run: random examples, nothing remembered or shrunk
#: but failures, no deadline (the profile hook makes cases slow).
def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )


def fuzz_h1(examples: int) -> None:
    given(h1_case())(fuzz_settings(examples)(lambda case: run_h1(*case)))()


def fuzz_h2(examples: int) -> None:
    given(h2_case())(fuzz_settings(examples)(lambda case: run_h2(*case)))()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="time per target")
    parser.add_argument("--batch", type=int, default=500, help="examples per hypothesis run")
    parser.add_argument("--target", choices=["h1", "h2", "both"], default="both")
    args = parser.parse_args(argv)
    targets = {"h1": fuzz_h1, "h2": fuzz_h2}
    names = list(targets) if args.target == "both" else [args.target]
    for name in names:
        started = time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            targets[name](args.batch)
        stats = STATS[name]
        stats.seconds = time.perf_counter() - started
        print(
            f"{name}: {stats.cases} cases in {stats.seconds:.0f} s, {stats.bytes} bytes "
            f"received, {stats.errors} refused with a protocol error, peak memory per case "
            f"{stats.peak_memory / 1024:.0f} KiB, at most {stats.max_steps_per_byte:.1f} "
            "calls per byte received",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
