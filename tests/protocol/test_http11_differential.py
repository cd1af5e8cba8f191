"""Differential tests: the HTTP/1.1 codec against h11, the reference implementation.

Receiving: for a request method and a response byte stream -- generated from parts
(interim responses, random headers in random case, Content-Length, chunked, EOF-delimited
and bodiless framing, chunk extensions, trailers), then optionally mutated (byte flips,
inserted CR/LF/NUL/SP/HTAB and friends, deletions, extra or conflicting framing headers,
truncation) -- split at random points and ended with EOF, the property is: either our
codec raises RemoteProtocolError, or h11 accepts the stream too and both produce the same
normalised events. Refusing is always allowed; accepting what h11 rejects is a bug. On
unmutated streams the outcomes must match exactly (both accept, or both refuse). The same
property is also checked exhaustively over every one-byte edit of a few representative
responses.

Sending: our request bytes, parsed by an h11 server connection, give back the method,
target, headers, body and trailers we were asked to send; and we refuse a method, target
or header exactly when h11 does.

Deliberate differences (we refuse, h11 accepts), which the mutation property tolerates
and ``test_deliberate_refusals_are_accepted_by_h11`` pins down: bare LF line endings;
obsolete line folding; a response with both Transfer-Encoding and Content-Length;
status-line versions other than HTTP/1.0 and HTTP/1.1; chunk sizes over 16 hex digits;
control characters in chunk extensions; Content-Length or Transfer-Encoding in trailers.
Bytes after a complete response make our connection non-reusable where h11 keeps them for
the next cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st

from aioduct.errors import LocalProtocolError, RemoteProtocolError
from aioduct.protocol.http11 import (
    NEED_DATA,
    ClientCodec,
    Data,
    EndOfMessage,
    InformationalResponse,
    Response,
)

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHAR = "".join(chr(c) for c in range(0x21, 0x7F))
OBS_TEXT = "".join(chr(c) for c in range(0x80, 0x100))
# Control characters h11 tolerates inside values (everything but NUL, HTAB, LF, VT, FF, CR).
TOLERATED_CTL = "".join(chr(c) for c in (*range(0x01, 0x09), *range(0x0E, 0x20), 0x7F))
MANAGED = {"content-length", "transfer-encoding", "connection", "upgrade", "host", "expect"}

Fields = list[tuple[str, str]]
Normalised = list[tuple[object, ...]]


def random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.swapcase() if flip else c for c, flip in zip(text, flips, strict=True))


names = st.one_of(
    st.text(TCHAR, min_size=1, max_size=10),
    st.sampled_from(["Server", "Date", "Content-Type", "Set-Cookie", "Vary", "ETag", "Link"]),
).filter(lambda name: name.lower() not in MANAGED)
values = st.text(VCHAR + OBS_TEXT + TOLERATED_CTL + " \t", max_size=16)
ows = st.sampled_from(["", "", " ", "  ", "\t", " \t "])


@st.composite
def field_lines(draw: st.DrawFn) -> tuple[str, str, str]:
    """(name, value, the wire form of the line including CRLF)."""
    name = random_case(draw, draw(names))
    value = draw(values)
    return name, value, f"{name}:{draw(ows)}{value}{draw(ows)}\r\n"


def reason_phrase(draw: st.DrawFn, default: str) -> str:
    reason = draw(
        st.one_of(
            st.just(default),
            st.text(VCHAR + OBS_TEXT + " \t", max_size=12),
            st.just("<none>"),
        )
    )
    return "" if reason == "<none>" else " " + reason


@dataclass
class Case:
    method: str
    request_headers: Fields
    wire: bytes
    extra: bytes = b""
    cuts: list[int] = field(default_factory=list)

    @property
    def target(self) -> str:
        return "example.org:443" if self.method == "CONNECT" else "/"

    def chunks(self) -> list[bytes]:
        wire = self.wire + self.extra
        points = sorted({min(cut, len(wire)) for cut in self.cuts})
        pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
        return [piece for piece in pieces if piece]  # b"" would mean EOF


@st.composite
def chunked_payload(draw: st.DrawFn, body: bytes) -> bytes:
    out = bytearray()
    position = 0
    while position < len(body):
        size = draw(st.integers(1, max(1, len(body) - position)))
        digits = draw(st.sampled_from(["%x", "%X", "%04x"])) % size
        extension = draw(st.sampled_from(["", ";a=b", ';name="q v"', ";x;y", "; x\t"]))
        out += f"{digits}{extension}{draw(st.sampled_from(['', ' ', chr(9)]))}\r\n".encode()
        out += body[position : position + size] + b"\r\n"
        position += size
    out += draw(st.sampled_from([b"0", b"00", b"0;end"])) + b"\r\n"
    for _, _, line in draw(st.lists(field_lines(), max_size=3)):
        out += line.encode("latin-1")
    return bytes(out + b"\r\n")


@st.composite
def well_formed(draw: st.DrawFn) -> Case:
    method = draw(st.sampled_from(["GET", "GET", "HEAD", "POST", "CONNECT", "OPTIONS"]))
    request_headers: Fields = [("Host", "example.org")]
    upgrade = method == "GET" and draw(st.booleans())
    if upgrade:
        request_headers += [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    elif draw(st.integers(0, 4)) == 0:
        request_headers.append(("Connection", "close"))
    wire = bytearray()
    for _ in range(draw(st.integers(0, 2))):
        status = draw(st.sampled_from([100, 102, 103, 199]))
        wire += f"HTTP/1.1 {status}{reason_phrase(draw, 'Continue')}\r\n".encode("latin-1")
        for _, _, line in draw(st.lists(field_lines(), max_size=2)):
            wire += line.encode("latin-1")
        wire += b"\r\n"
    status = draw(
        st.one_of(
            st.sampled_from([200, 201, 204, 206, 301, 304, 404, 500, 101 if upgrade else 200]),
            st.integers(200, 999),
        )
    )
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    lines = [line for _, _, line in draw(st.lists(field_lines(), max_size=6))]
    if draw(st.integers(0, 3)) == 0:
        lines.append(f"Connection: {draw(st.sampled_from(['close', 'keep-alive', 'Close']))}\r\n")
    framing = draw(st.sampled_from(["length", "chunked", "eof", "none"]))
    body = draw(st.binary(max_size=120))
    if framing == "length":
        lines.insert(draw(st.integers(0, len(lines))), f"Content-Length: {len(body)}\r\n")
    elif framing == "chunked":
        te = random_case(draw, "Transfer-Encoding") + ": " + random_case(draw, "chunked")
        lines.insert(draw(st.integers(0, len(lines))), te + "\r\n")
    bodiless = (
        method == "HEAD"
        or status in (101, 204, 304)
        or (method == "CONNECT" and status < 300)
        or framing == "none"
    )
    if bodiless:
        payload = b""
    elif framing == "chunked":
        payload = draw(chunked_payload(body))
    else:
        payload = body
    wire += f"HTTP/{version} {status}{reason_phrase(draw, 'OK')}\r\n".encode("latin-1")
    wire += "".join(lines).encode("latin-1") + b"\r\n" + payload
    extra = draw(st.sampled_from([b"", b"", b"", b"HTTP/1.1 200 OK\r\n", b"\r\n"]))
    if framing == "eof" and not bodiless:
        extra = b""  # would be body bytes, not extra ones
    cuts = draw(st.lists(st.integers(1, len(wire) + len(extra)), max_size=5))
    return Case(method, request_headers, bytes(wire), extra, cuts)


SNIPPETS = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b"\r\n ",
    b"\r\n\r\n",
    b";",
    b"\x0b",
    b"\x0c",
    b"0",
    b"f",
    b"\x7f",
    b"\xff",
]
FRAMING_LINES = [
    b"Content-Length: 0\r\n",
    b"Content-Length: 3\r\n",
    b"Content-Length: 3, 3\r\n",
    b"Content-Length: 3, 4\r\n",
    b"Content-Length: 03\r\n",
    b"Content-Length: +3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"Transfer-Encoding: chunked, chunked\r\n",
    b"Connection: close\r\n",
    b" folded\r\n",
]


@st.composite
def mutated(draw: st.DrawFn) -> Case:
    case = draw(well_formed())
    wire = bytearray(case.wire + case.extra)
    # Positions and choices come from a seeded Random: uniform over the stream, where
    # hypothesis's own integers would favour the first few bytes (the status line).
    rnd = draw(st.randoms(use_true_random=True))
    for _ in range(rnd.choice([1, 1, 1, 2, 3])):
        at = rnd.randrange(len(wire) + 1)
        kind = rnd.choice(["flip", "flip", "insert", "insert", "delete", "framing"])
        if kind == "flip" and at < len(wire):
            wire[at] = rnd.choice([*b"\r\n\x00 \t:;0aA", rnd.randrange(256)])
        elif kind == "insert":
            wire[at:at] = rnd.choice(SNIPPETS)
        elif kind == "delete":
            del wire[at : at + rnd.randint(1, 3)]
        else:
            line_end = wire.find(b"\r\n")
            if line_end >= 0:
                wire[line_end + 2 : line_end + 2] = rnd.choice(FRAMING_LINES)
    if rnd.random() < 0.1:
        del wire[rnd.randrange(len(wire) + 1) :]
    cuts = [rnd.randint(1, max(1, len(wire))) for _ in range(rnd.randrange(6))]
    return Case(case.method, case.request_headers, bytes(wire), b"", cuts)


# -- running both implementations -----------------------------------------------------------


@dataclass
class Outcome:
    events: Normalised
    complete: bool = False  # reached the end of the response (or switched protocols)
    error: str | None = None
    reusable: bool | None = None  # at the end of the response, if EOF had not arrived yet
    trailing: bytes | None = None  # after a protocol switch


def merge_data(events: Normalised) -> Normalised:
    merged: Normalised = []
    for event in events:
        if event[0] == "data" and merged and merged[-1][0] == "data":
            merged[-1] = ("data", merged[-1][1] + event[1])  # type: ignore[operator]
        elif event != ("data", b""):
            merged.append(event)
    return merged


def like_h11(fields: Fields) -> Fields:
    """Our fields as h11 presents them: lower-case names, one Content-Length, TE lowered."""
    out: Fields = []
    seen_length = False
    for name, value in fields:
        lower = name.lower()
        if lower == "content-length":
            if not seen_length:
                out.append((lower, {item.strip() for item in value.split(",")}.pop()))
            seen_length = True
        else:
            out.append((lower, value.lower() if lower == "transfer-encoding" else value))
    return out


def run_ours(case: Case) -> Outcome:
    codec = ClientCodec()
    codec.encode_request(case.method, case.target, case.request_headers)
    events: Normalised = []
    outcome = Outcome(events)
    try:
        for chunk in [*case.chunks(), b""]:
            codec.receive_data(chunk)
            while (event := codec.next_event()) is not NEED_DATA:
                if type(event) is InformationalResponse:
                    events.append(("info", event.status, event.reason, like_h11(event.headers)))
                elif type(event) is Response:
                    headers = like_h11(event.headers)
                    events.append(("head", event.status, event.reason, headers, event.http_version))
                    if codec.their_state == "SWITCHED_PROTOCOL":
                        outcome.trailing = codec.trailing_data
                        break
                elif type(event) is Data:
                    events.append(("data", event.data))
                else:
                    assert type(event) is EndOfMessage
                    events.append(("end", like_h11(event.trailers)))
                    outcome.reusable = codec.reusable if chunk else None
                    break
            else:
                continue
            outcome.complete = True
            break
    except RemoteProtocolError as exc:
        outcome.error = str(exc)
    outcome.events = merge_data(events)
    return outcome


def h11_fields(headers: object) -> Fields:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]  # type: ignore[attr-defined]


def run_h11(case: Case) -> Outcome:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)
    conn.send(h11.Request(method=case.method, target=case.target, headers=case.request_headers))
    conn.send(h11.EndOfMessage())
    events: Normalised = []
    outcome = Outcome(events)
    try:
        for chunk in [*case.chunks(), b""]:
            conn.receive_data(chunk)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    break
                if type(event) is h11.ConnectionClosed:
                    break
                if isinstance(event, h11.InformationalResponse | h11.Response):
                    reason = event.reason.decode("latin-1")
                    headers = h11_fields(event.headers)
                    if type(event) is h11.InformationalResponse and event.status_code != 101:
                        events.append(("info", event.status_code, reason, headers))
                    else:
                        version = event.http_version.decode()
                        events.append(("head", event.status_code, reason, headers, version))
                    if conn.their_state is h11.SWITCHED_PROTOCOL:
                        outcome.trailing = conn.trailing_data[0]
                        break
                elif type(event) is h11.Data:
                    events.append(("data", bytes(event.data)))
                else:
                    assert type(event) is h11.EndOfMessage
                    events.append(("end", h11_fields(event.headers)))
                    done = conn.our_state is h11.DONE and conn.their_state is h11.DONE
                    outcome.reusable = done if chunk else None
                    break
            if conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.SWITCHED_PROTOCOL):
                outcome.complete = True
                break
    except h11.RemoteProtocolError as exc:
        outcome.error = str(exc)
    outcome.events = merge_data(events)
    return outcome


# -- properties -------------------------------------------------------------------------------


@SETTINGS
@given(well_formed())
def test_well_formed_responses_match_h11(case: Case) -> None:
    ours, theirs = run_ours(case), run_h11(case)
    label("refused by both" if ours.error else f"accepted, {len(ours.events)} events")
    assert (ours.error is None) == (theirs.error is None), (ours.error, theirs.error)
    if ours.error is None:
        assert ours.complete and theirs.complete
        assert ours.events == theirs.events
        assert ours.trailing == theirs.trailing
        if not case.extra and ours.reusable is not None:
            assert ours.reusable == theirs.reusable


@SETTINGS
@given(mutated())
def test_mutated_responses_are_refused_or_read_as_h11_reads_them(case: Case) -> None:
    ours = run_ours(case)
    label("refused" if ours.error else "accepted")
    if ours.error is not None:
        return  # refusing is always allowed
    theirs = run_h11(case)
    assert theirs.error is None, f"we accepted what h11 refuses: {theirs.error}"
    assert ours.complete and theirs.complete
    assert ours.events == theirs.events
    assert ours.trailing == theirs.trailing


REPRESENTATIVE = [
    b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\nX-A:  b c \r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;e=1\r\nhello\r\n1 \r\n!\r\n0\r\nT: 1\r\n\r\n",
    b"HTTP/1.0 404\r\nConnection: close\r\n\r\nbody until EOF",
]
EDIT_BYTES = b"\r\n\x00 \t:;0a\x0b\x0c\x7f\x80\xff"


def test_every_single_byte_edit_of_representative_responses() -> None:
    """Exhaustive neighbourhood: every substitution, insertion and deletion of one byte,
    each stream fed whole and split around the edit."""
    accepted = 0
    for wire in REPRESENTATIVE:
        edits = [(i, wire[:i] + wire[i + 1 :]) for i in range(len(wire))]
        for i in range(len(wire) + 1):
            for byte in EDIT_BYTES:
                edits.append((i, wire[:i] + bytes([byte]) + wire[i:]))
                if i < len(wire):
                    edits.append((i, wire[:i] + bytes([byte]) + wire[i + 1 :]))
        for i, edited in edits:
            case = Case("GET", [("Host", "example.org")], edited, cuts=[i, i + 1 + i % 3])
            ours = run_ours(case)
            if ours.error is None:
                accepted += 1
                theirs = run_h11(case)
                assert theirs.error is None, (edited, theirs.error)
                assert ours.events == theirs.events, edited
    assert accepted > 1000  # the neighbourhood is not all refusals


def test_deliberate_refusals_are_accepted_by_h11() -> None:
    """The documented differences: h11 reads each of these, we refuse them."""
    ok = b"HTTP/1.1 200 OK\r\n"
    chunked = ok + b"Transfer-Encoding: chunked\r\n\r\n"
    for wire in [
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        ok + b"X: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        ok + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n",
        chunked + b"00000000000000000\r\n\r\n",
        chunked + b"0;a\x01\r\n\r\n",
        chunked + b"0\r\nContent-Length: 3\r\n\r\n",
    ]:
        case = Case("GET", [("Host", "example.org")], wire)
        assert run_ours(case).error is not None, wire
        theirs = run_h11(case)
        assert theirs.error is None and theirs.complete, (wire, theirs)


# -- serialisation ------------------------------------------------------------------------------

send_names = st.one_of(
    names,
    st.text(TCHAR + " :\r\n\x00é", min_size=0, max_size=6),
)
send_values = st.one_of(
    values,
    st.text(VCHAR + OBS_TEXT + TOLERATED_CTL + " \t\r\n\x00\x0b\x0c€", max_size=8),
)


@SETTINGS
@given(
    method=st.one_of(st.sampled_from(["GET", "POST", "PUT", "PATCH"]), st.text(TCHAR, min_size=1)),
    target=st.text(VCHAR, min_size=1, max_size=20),
    fields=st.lists(st.tuples(send_names, send_values), max_size=6),
    mode=st.sampled_from(["none", "body", "length", "chunked"]),
    body=st.binary(max_size=64),
    cuts=st.lists(st.integers(0, 64), max_size=3),
    trailers=st.lists(st.tuples(names, values), max_size=2),
)
def test_requests_parse_back_through_an_h11_server(
    method: str,
    target: str,
    fields: Fields,
    mode: str,
    body: bytes,
    cuts: list[int],
    trailers: Fields,
) -> None:
    trailers = [(name, value.strip(" \t")) for name, value in trailers]
    fields = [(n, v) for n, v in fields if n.lower() not in MANAGED]
    headers = [("Host", "example.org"), *fields]
    if mode == "length":
        headers.append(("Content-Length", str(len(body))))
    h11_refuses = False
    try:
        h11.Request(
            method=method,
            target=target,
            headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        )
    except (h11.LocalProtocolError, UnicodeEncodeError):
        h11_refuses = True
    codec = ClientCodec()
    try:
        wire = codec.encode_request(
            method, target, headers, body if mode == "body" else None, chunked=mode == "chunked"
        )
    except LocalProtocolError:
        assert h11_refuses
        label("refused by both")
        return
    assert not h11_refuses
    label(f"sent, {mode}")
    if mode in ("length", "chunked"):
        points = sorted({min(cut, len(body)) for cut in cuts})
        for a, b in zip([0, *points], [*points, len(body)], strict=True):
            wire += codec.encode_data(body[a:b])
        wire += codec.encode_end(trailers if mode == "chunked" else None)
    assert codec.our_state == "DONE"

    server = h11.Connection(h11.SERVER)
    server.receive_data(wire)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert request.method == method.encode()
    assert request.target == target.encode()
    expected = [(n.lower(), v) for n, v in headers]
    if mode == "body":
        expected.append(("content-length", str(len(body))))
    elif mode == "chunked":
        expected.append(("transfer-encoding", "chunked"))
    assert h11_fields(request.headers) == expected
    received = b""
    while type(piece := server.next_event()) is h11.Data:
        received += piece.data
    assert isinstance(piece, h11.EndOfMessage)
    assert received == (body if mode != "none" else b"")
    sent_trailers = [(n.lower(), v) for n, v in trailers] if mode == "chunked" else []
    assert h11_fields(piece.headers) == sent_trailers
    # Nothing left over. h11 pauses after a request that proposes a protocol switch
    # (CONNECT, Upgrade) until the server answers it, instead of asking for more data.
    assert server.next_event() in (h11.NEED_DATA, h11.PAUSED)
    assert server.trailing_data == (b"", False)
