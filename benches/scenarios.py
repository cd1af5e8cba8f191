"""The benchmark scenarios and the per-run `Target` a client subprocess measures.

A `Scenario` is what the runner knows (a path, a shape); a `Target` is what a worker needs:
the absolute URL plus the reference answer the parent fetched once with the standard library,
so every client is checked against the same bytes rather than against its own idea of them.
`Origins` are where the bench nginx serves the locations: one origin per transport (plain
HTTP/1.1, h2c, TLS HTTP/1.1, TLS h2), each with its mirrors.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import json
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from benches.streams import SSE_PATH, UPLOAD_PATH, reference_events

Decode = Literal["bytes", "text", "json"]
Kind = Literal["request", "sse", "multipart", "upload_stream", "body_stream", "download"]
"""What a fetch does: one plain request (``request``), or a streams-and-formats shape
(benches.streams): read a Server-Sent Events stream, POST a multipart form, POST a
generator (chunked), read a body chunk by chunk, or download a file to disk."""
Transport = Literal["http", "h2c", "https", "https_h2", "h3", "caddy_h2"]

#: The pre-compressed file of the gzip scenario (nginx ``gzip_static``; see benches.runner).
GZIP_STATIC_PATH = "/static/data.json"
#: The 100 MB download, written at bench time into nginx's files (never committed).
BIG_FILE_PATH = "/bytes/100m"
BIG_FILE_SIZE = 100 << 20


@dataclass(frozen=True)
class Scenario:
    """One row group of the report: a request shape against one nginx location."""

    name: str
    path: str
    decode: Decode = "bytes"
    method: str = "GET"
    body_size: int = 0
    concurrency: int = 1
    keepalive: bool = True
    http2: bool = False
    """HTTP/2: h2c with prior knowledge against nginx's cleartext HTTP/2 listener, or with
    `tls`, h2 chosen by ALPN on the TLS listener that offers it."""
    tls: bool = False
    """https against a TLS 1.3 listener (HTTP/1.1 only, unless `http2`); the client
    verifies nginx's certificate against the run's CA file."""
    gzip: bool = False
    """Sent with ``Accept-Encoding: gzip``; nginx serves a pre-compressed file
    (``gzip_static``) and the client must return the decoded body."""
    one_at_a_time: bool = False
    """Bulk engines too send each request only after the previous answer (``request()``,
    not a queue of jobs): the round-trip latency a blocking caller sees."""
    proxy: str = ""
    """Through a local proxy: ``"http"`` (tinyproxy, a CONNECT tunnel per connection) or
    ``"socks5"`` (microsocks, the proxy resolves the name)."""
    h3: bool = False
    """HTTP/3 (QUIC, prior knowledge) against Caddy: nginx 1.22 has no QUIC."""
    caddy: bool = False
    """Against Caddy rather than nginx (with `tls` and `http2`: the h2 baseline of the
    HTTP/3 scenarios, same server, same files)."""
    kind: Kind = "request"
    chunks: int = 0
    """``download``: aioduct's ``download(chunks=N)``; 0 is one GET streamed to the file."""
    min_warmup: float = 0.0
    """A warm-up at least this long, so the first fetch's full check (hashing 100 MB)
    is over before the measured window opens."""
    min_duration: float = 0.0
    """A measured window at least this long: a 100 MB download takes 0.1-0.8 s, and a
    window of a handful of them would be mostly quantization."""

    @property
    def transport(self) -> Transport:
        if self.h3:
            return "h3"
        if self.caddy:
            return "caddy_h2"
        if self.tls:
            return "https_h2" if self.http2 else "https"
        return "h2c" if self.http2 else "http"

    @property
    def group(self) -> str:
        """The report's grouping: one summary table (and geomean) per group."""
        if self.gzip:
            return "content-encoding"
        if self.kind != "request":
            return "streams and formats"
        if self.proxy:
            return "proxy"
        return {
            "http": "HTTP/1.1",
            "h2c": "HTTP/2 (h2c)",
            "https": "TLS",
            "https_h2": "TLS",
            "h3": "HTTP/3 and h2 (Caddy)",
            "caddy_h2": "HTTP/3 and h2 (Caddy)",
        }[self.transport]

    @property
    def title(self) -> str:
        shape = "sequential" if self.concurrency == 1 else f"{self.concurrency} in flight"
        if self.one_at_a_time:
            shape += ", one request at a time (latency)"
        over = {
            "http": "",
            "h2c": "h2c",
            "https": "TLS 1.3 HTTP/1.1",
            "https_h2": "TLS 1.3 h2 (ALPN)",
            "h3": "HTTP/3 (QUIC) to Caddy",
            "caddy_h2": "TLS 1.3 h2 (ALPN) to Caddy",
        }[self.transport]
        if over and (self.http2 or self.h3) and self.concurrency > 1:
            shape += f" over one {over} connection"
        elif over:
            shape += f", {over}"
        if not self.keepalive:
            shape += ", new connection per request"
        if self.proxy:
            shape += {"http": ", through tinyproxy (CONNECT)", "socks5": ", through SOCKS5"}[
                self.proxy
            ]
        body = f" {self.body_size // 1024} KiB" if self.body_size else ""
        read = {"bytes": "read bytes", "text": "decode text", "json": "decode JSON"}[self.decode]
        if self.gzip:
            read = "gzip-encoded, return decoded bytes"
        if self.kind != "request":
            read = {
                "sse": "parse 100 Server-Sent Events",
                "multipart": "a multipart form with this file and a text field",
                "upload_stream": "from a generator (unknown length: chunked)",
                "body_stream": "read through the streaming API chunk by chunk",
                "download": f"to a file with download(chunks={self.chunks}) (aioduct), "
                "one stream (others)"
                if self.chunks
                else "to a file, one stream",
            }[self.kind]
        return f"{self.method}{body} {self.path}, {read}, {shape}"


#: The 100 MB downloads' windows: past the first (hashed) download, and long enough to
#: hold a dozen downloads.
_BIG: dict[str, Any] = {"min_warmup": 1.5, "min_duration": 6.0}

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("get_small", "/small"),
        Scenario("latency", "/small", one_at_a_time=True),
        Scenario("get_text", "/text", decode="text"),
        Scenario("get_json", "/json", decode="json"),
        Scenario("post_4k", "/post", method="POST", body_size=4096),
        Scenario("download_64k", "/bytes/64k"),
        Scenario("download_1m", "/bytes/1m"),
        Scenario("concurrent_10", "/small", concurrency=10),
        Scenario("concurrent_50", "/small", concurrency=50),
        Scenario("no_pool", "/small", keepalive=False),
        Scenario("h2c_get", "/small", http2=True),
        Scenario("h2c_64k", "/bytes/64k", http2=True),
        Scenario("h2c_1m", "/bytes/1m", http2=True),
        Scenario("h2c_concurrent_10", "/small", concurrency=10, http2=True),
        Scenario("h2c_post_4k", "/post", method="POST", body_size=4096, http2=True),
        Scenario("https_get", "/small", tls=True),
        Scenario("https_concurrent_50", "/small", concurrency=50, tls=True),
        Scenario("https_h2_concurrent_10", "/small", concurrency=10, http2=True, tls=True),
        Scenario("https_no_pool", "/small", keepalive=False, tls=True),
        Scenario("gzip_64k", GZIP_STATIC_PATH, gzip=True),
        Scenario("https_proxy_connect_50", "/small", concurrency=50, tls=True, proxy="http"),
        Scenario("https_proxy_socks5_50", "/small", concurrency=50, tls=True, proxy="socks5"),
        Scenario("h3_get", "/small", tls=True, h3=True),
        Scenario("h3_64k", "/bytes/64k", tls=True, h3=True),
        Scenario("h3_1m", "/bytes/1m", tls=True, h3=True),
        Scenario("h3_concurrent_10", "/small", concurrency=10, tls=True, h3=True),
        Scenario("caddy_h2_get", "/small", tls=True, http2=True, caddy=True),
        Scenario("caddy_h2_64k", "/bytes/64k", tls=True, http2=True, caddy=True),
        Scenario("caddy_h2_1m", "/bytes/1m", tls=True, http2=True, caddy=True),
        Scenario(
            "caddy_h2_concurrent_10", "/small", concurrency=10, tls=True, http2=True, caddy=True
        ),
        # Streams and formats (benches.streams; docs/benchmarks.md).
        Scenario("sse_100", SSE_PATH, kind="sse"),
        Scenario("multipart_small", UPLOAD_PATH, "bytes", "POST", 1024, kind="multipart"),
        Scenario("multipart_1m", UPLOAD_PATH, "bytes", "POST", 1 << 20, kind="multipart"),
        Scenario("upload_stream_1m", UPLOAD_PATH, "bytes", "POST", 1 << 20, kind="upload_stream"),
        Scenario("body_stream_64k", "/bytes/64k", kind="body_stream"),
        Scenario("chunk_download_1m", "/bytes/1m", kind="download", chunks=8),
        Scenario("chunk_download_100m", BIG_FILE_PATH, kind="download", chunks=8, **_BIG),
        Scenario("stream_download_1m", "/bytes/1m", kind="download"),
        Scenario("stream_download_100m", BIG_FILE_PATH, kind="download", **_BIG),
    )
}

#: The HTTP/2 scenarios, which only clients with an HTTP/2 mode run.
H2_SCENARIOS: tuple[str, ...] = tuple(name for name, s in SCENARIOS.items() if s.http2)


@dataclass(frozen=True)
class Origins:
    """The bench nginx's base URLs by transport, their mirrors, and the CA of the TLS ones.

    Mirrors are the same locations on other ports of the same transport: a client that
    shards by origin (the local engine) needs several origins to use several workers.
    """

    urls: Mapping[Transport, str]
    mirrors: Mapping[Transport, tuple[str, ...]] = field(default_factory=dict)
    ca_file: str | None = None
    """PEM file of the CA that issued the TLS origins' certificate."""
    proxies: Mapping[str, str] = field(default_factory=dict)
    """Proxy URLs by kind (``"http"``, ``"socks5"``) for the proxy scenarios."""


@dataclass(frozen=True)
class Target:
    """Everything a worker needs: what to send and what a correct answer looks like.

    `length` is the body length in bytes, or in characters for `decode == "text"`.
    `sha256` is checked once per worker slot (cheap enough off the hot path); the length,
    text or JSON value is checked on every response.
    """

    scenario: str
    method: str
    url: str
    body_size: int
    decode: Decode
    concurrency: int
    keepalive: bool
    status: int
    length: int
    sha256: str
    text: str | None = None
    json_value: Any = None
    mirrors: tuple[str, ...] = ()
    """The same location on other origins of the same nginx (other ports): a client that
    shards by origin, like the local engine, needs several origins to use several workers."""
    http2: bool = False
    tls: bool = False
    ca_file: str | None = None
    """The CA file every client verifies the TLS origin with (never verification off)."""
    gzip: bool = False
    """Send ``Accept-Encoding: gzip``; the payload returned must be the decoded body."""
    one_at_a_time: bool = False
    proxy_url: str | None = None
    """Send every request through this proxy (``http://`` or ``socks5h://``)."""
    h3: bool = False
    """HTTP/3 with prior knowledge (QUIC) to the URL's origin."""
    kind: Kind = "request"
    chunks: int = 0
    min_warmup: float = 0.0
    min_duration: float = 0.0

    @property
    def h2c(self) -> bool:
        """HTTP/2 with prior knowledge on cleartext (HTTP/2 over TLS is ALPN's choice)."""
        return self.http2 and not self.tls

    @property
    def body(self) -> bytes | None:
        """The request body; in the multipart and upload scenarios, the file's content."""
        return b"x" * self.body_size if self.body_size else None

    @property
    def headers(self) -> dict[str, str]:
        """Headers the scenario adds to the client's own."""
        return {"Accept-Encoding": "gzip"} if self.gzip else {}

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying context that trusts only the run's CA, for clients on Python's ssl."""
        if self.ca_file is None:
            raise ValueError(f"{self.scenario} is not a TLS scenario: no CA file")
        return ssl.create_default_context(cafile=self.ca_file)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        data = dict(data)
        data["mirrors"] = tuple(data.get("mirrors", ()))
        return cls(**data)


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip('"')
    return "utf-8"


def _fetch(
    url: str,
    method: str,
    body: bytes | None,
    headers: Mapping[str, str] | None = None,
    *,
    chunked: bool = False,
) -> tuple[http.client.HTTPResponse, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        if chunked and body is not None:
            pieces = iter([body[: len(body) // 2], body[len(body) // 2 :]])
            conn.request(method, parts.path, body=pieces, encode_chunked=True)
        else:
            conn.request(method, parts.path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"reference {method} {url} answered {resp.status}")
    return resp, raw


def _check_gzip_served(url: str, raw: bytes) -> None:
    """The gzip scenario must measure decoding: nginx has to answer gzip-encoded."""
    resp, encoded = _fetch(url, "GET", None, {"Accept-Encoding": "gzip"})
    encoding = resp.getheader("Content-Encoding", "")
    if encoding != "gzip" or gzip.decompress(encoded) != raw:
        raise RuntimeError(f"{url} is not served as the gzip of the plain file ({encoding!r})")


def reference_target(scenario: Scenario, origins: Origins | str) -> Target:
    """Fetch the scenario's URL once with http.client and freeze the answer as the reference.

    The reference always comes from the plain HTTP/1.1 origin (http.client has neither
    HTTP/2 nor our CA); the target points at the scenario's transport, which serves the
    same locations. A string is the plain origin alone.
    """
    if isinstance(origins, str):
        origins = Origins({"http": origins})
    transport = scenario.transport
    if transport not in origins.urls:
        raise ValueError(f"scenario {scenario.name} needs the {transport} origin")
    if scenario.tls and origins.ca_file is None:
        raise ValueError(f"scenario {scenario.name} needs the CA file of the TLS origins")
    proxy_url = None
    if scenario.proxy:
        proxy_url = origins.proxies.get(scenario.proxy)
        if proxy_url is None:
            raise ValueError(
                f"scenario {scenario.name} needs a local {scenario.proxy} proxy: install "
                "tinyproxy and microsocks (scripts/setup as root)"
            )
    plain = origins.urls["http"].rstrip("/") + scenario.path
    body_out = b"x" * scenario.body_size if scenario.body_size else None
    resp, raw = _fetch(plain, scenario.method, body_out, chunked=scenario.kind == "upload_stream")
    content_type = resp.getheader("Content-Type", "")
    text = raw.decode(_charset(content_type)) if scenario.decode == "text" else None
    if scenario.gzip:
        _check_gzip_served(plain, raw)
    json_value = json.loads(raw) if scenario.decode == "json" else None
    length = len(text) if text is not None else len(raw)
    if scenario.kind == "sse":
        if "text/event-stream" not in content_type:
            raise RuntimeError(f"{plain} is served as {content_type!r}, not text/event-stream")
        json_value = reference_events(raw)  # the data of each event, in order
        length = len(json_value)
    elif scenario.kind == "upload_stream":
        text = raw.decode()  # "POST 1048576 chunked": all of it arrived, chunked
        length = scenario.body_size
    elif scenario.kind == "multipart":
        length = scenario.body_size  # the reply holds the form's length: file + overhead
    return Target(
        scenario=scenario.name,
        method=scenario.method,
        url=origins.urls[transport].rstrip("/") + scenario.path,
        http2=scenario.http2,
        tls=scenario.tls,
        ca_file=origins.ca_file if scenario.tls else None,
        gzip=scenario.gzip,
        one_at_a_time=scenario.one_at_a_time,
        proxy_url=proxy_url,
        h3=scenario.h3,
        kind=scenario.kind,
        chunks=scenario.chunks,
        min_warmup=scenario.min_warmup,
        min_duration=scenario.min_duration,
        body_size=scenario.body_size,
        decode=scenario.decode,
        concurrency=scenario.concurrency,
        keepalive=scenario.keepalive,
        status=resp.status,
        length=length,
        sha256=hashlib.sha256(raw).hexdigest(),
        text=text,
        json_value=json_value,
        mirrors=tuple(
            base.rstrip("/") + scenario.path for base in origins.mirrors.get(transport, ())
        ),
    )
