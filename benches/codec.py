"""Micro-benchmark: aioduct's HTTP/1.1 ClientCodec against h11, CPU only, no sockets.

Run: ``.venv/bin/python benches/codec.py [--rounds N] [--cycles N]``

A *cycle* is one request/response exchange on a kept-alive connection: serialise the
request, feed the response bytes, pull events up to the end of the message, reset for the
next exchange. Each figure is the best of several rounds of a tight loop, in microseconds
per cycle:

* ``serialise``: a fresh connection object serialising the request, minus the cost of
  creating the connection object (measured by its own loop);
* ``cycle``: the whole exchange on one connection, as a client does it;
* ``parse``: ``cycle - serialise``, i.e. receiving plus parsing plus the reset.

Scenarios:

* ``small``: a GET, and a typical nginx response (status line, 8 headers, 13-byte body)
  arriving in one read.
* ``64k-cl``: the same with a 64 KiB Content-Length body, in one read and in four
  reads (the last three of 16 KiB).
* ``chunked``: a response with eight 1 KiB chunks and one trailer, in one read.
* ``post``: a POST with a 1 KiB body (head and body serialised together) and the small
  response.
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Callable
from time import perf_counter_ns

import h11

from aioduct.protocol.http11 import NEED_DATA, ClientCodec, EndOfMessage

REQUEST_HEADERS = [
    ("Host", "127.0.0.1:8080"),
    ("User-Agent", "aioduct/0.1"),
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
]

NGINX_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.22.1\r\n"
    b"Date: Sun, 23 Nov 2025 09:00:00 GMT\r\n"
    b"Content-Type: text/html\r\n"
    b"Content-Length: %d\r\n"
    b"Last-Modified: Sun, 23 Nov 2025 08:00:00 GMT\r\n"
    b"Connection: keep-alive\r\n"
    b'ETag: "69230a00-d"\r\n'
    b"Accept-Ranges: bytes\r\n"
    b"\r\n"
)
SMALL = NGINX_HEAD % 13 + b"Hello, world!"
BIG_BODY = bytes(range(256)) * 256
BIG = NGINX_HEAD % len(BIG_BODY) + BIG_BODY
BIG_PIECES = [BIG[: len(BIG) - 3 * 16384]] + [
    BIG[i : i + 16384] for i in range(len(BIG) - 3 * 16384, len(BIG), 16384)
]
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 23 Nov 2025 09:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: keep-alive\r\n\r\n"
    + b"".join(b"400\r\n" + bytes([65 + i]) * 1024 + b"\r\n" for i in range(8))
    + b"0\r\nX-Checksum: 1234\r\n\r\n"
)
POST_BODY = b"x" * 1024

Scenario = tuple[str, str, list[tuple[str, str]], bytes | None, list[bytes]]
SCENARIOS: list[Scenario] = [
    ("small", "GET", REQUEST_HEADERS, None, [SMALL]),
    ("64k-cl, 1 read", "GET", REQUEST_HEADERS, None, [BIG]),
    ("64k-cl, 4 reads", "GET", REQUEST_HEADERS, None, BIG_PIECES),
    ("chunked 8x1k", "GET", REQUEST_HEADERS, None, [CHUNKED]),
    ("post 1k", "POST", [*REQUEST_HEADERS, ("Content-Type", "text/plain")], POST_BODY, [SMALL]),
]


def ours_cycles(scenario: Scenario, n: int) -> None:
    _, method, headers, body, pieces = scenario
    codec = ClientCodec()
    for _ in range(n):
        codec.encode_request(method, "/index.html", headers, body)
        for piece in pieces:
            codec.receive_data(piece)
            while (event := codec.next_event()) is not NEED_DATA:
                if type(event) is EndOfMessage:
                    break
        codec.start_next_cycle()


def ours_requests(scenario: Scenario, n: int) -> None:
    _, method, headers, body, _ = scenario
    for _ in range(n):
        ClientCodec().encode_request(method, "/index.html", headers, body)


def ours_construct(scenario: Scenario, n: int) -> None:
    for _ in range(n):
        ClientCodec()


def h11_request(
    conn: h11.Connection, method: str, headers: list[tuple[str, str]], body: bytes | None
) -> bytes:
    if body is not None:
        headers = [*headers, ("Content-Length", str(len(body)))]
    wire = conn.send(h11.Request(method=method, target="/index.html", headers=headers))
    if body is not None:
        wire += conn.send(h11.Data(data=body))
    return wire + conn.send(h11.EndOfMessage())


def h11_cycles(scenario: Scenario, n: int) -> None:
    _, method, headers, body, pieces = scenario
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)
    for _ in range(n):
        h11_request(conn, method, headers, body)
        for piece in pieces:
            conn.receive_data(piece)
            while (event := conn.next_event()) is not h11.NEED_DATA:
                if type(event) is h11.EndOfMessage:
                    break
        conn.start_next_cycle()


def h11_requests(scenario: Scenario, n: int) -> None:
    _, method, headers, body, _ = scenario
    for _ in range(n):
        h11_request(h11.Connection(h11.CLIENT), method, headers, body)


def h11_construct(scenario: Scenario, n: int) -> None:
    for _ in range(n):
        h11.Connection(h11.CLIENT)


Loop = Callable[[Scenario, int], None]


def per_call(loop: Loop, scenario: Scenario, n: int, rounds: int) -> float:
    """Best-of-``rounds`` microseconds per iteration of ``loop``."""
    loop(scenario, max(n // 10, 1))  # warm up memo tables and caches
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        start = perf_counter_ns()
        loop(scenario, n)
        best = min(best, (perf_counter_ns() - start) / n / 1000)
    return best


IMPLEMENTATIONS: dict[str, tuple[Loop, Loop, Loop]] = {
    "aioduct": (ours_cycles, ours_requests, ours_construct),
    "h11": (h11_cycles, h11_requests, h11_construct),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="best of this many rounds")
    parser.add_argument("--cycles", type=int, default=20_000, help="aioduct cycles per round")
    args = parser.parse_args()
    print(f"µs per cycle, best of {args.rounds} rounds")
    print(f"{'scenario':<18}{'':>8}{'serialise':>11}{'parse':>9}{'cycle':>9}")
    for scenario in SCENARIOS:
        totals = {}
        for label, (cycles, requests, construct) in IMPLEMENTATIONS.items():
            n = args.cycles if label == "aioduct" else max(args.cycles // 10, 100)
            total = per_call(cycles, scenario, n, args.rounds)
            serialise = per_call(requests, scenario, n, args.rounds) - per_call(
                construct, scenario, n, args.rounds
            )
            totals[label] = total
            name = scenario[0] if label == "aioduct" else ""
            print(f"{name:<18}{label:>8}{serialise:>11.2f}{total - serialise:>9.2f}{total:>9.2f}")
        print(f"{'':<18}{'h11/ours':>8}{totals['h11'] / totals['aioduct']:>28.1f}x")


if __name__ == "__main__":
    main()
