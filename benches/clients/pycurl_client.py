"""pycurl: one reused Curl handle for sequential runs, CurlMulti with N handles for concurrency.

libcurl's connection cache makes the reused handle keep-alive. Tuned as a libcurl user would:
`Expect:` is cleared so a 4 KiB POST is not held back by a 100-continue round trip, and the
receive buffer is 256 KiB instead of 16 KiB (64 Python write callbacks per MiB become 4:
about 2x faster on download_1m here, no change on small bodies), so pycurl is a strong peer.

HTTP/2 scenarios: ``CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE`` (libcurl's nghttp2) for h2c,
``CURL_HTTP_VERSION_2TLS`` (ALPN) over TLS, and for concurrency the multi handle
multiplexes (``PIPE_MULTIPLEX``) with ``PIPEWAIT`` so the N handles share one connection
instead of opening N. TLS: ``CAINFO`` = the run's CA file (peer and host verified, libcurl's
defaults), HTTP/1.1 forced outside the h2 scenario (libcurl offers h2 by default). gzip:
``ACCEPT_ENCODING "gzip"`` sends the header and makes libcurl decode.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import pycurl  # type: ignore[import-untyped]

from benches import streams
from benches.harness import BadResponse, Fetched, SyncFetch, Tally, ThreadLoop, check, check_first
from benches.scenarios import Target

#: Runs the proxy scenarios (target.proxy_url).
PROXIES = True


def describe() -> str:
    return str(pycurl.version)


def _charset(curl: pycurl.Curl) -> str:
    content_type = curl.getinfo(pycurl.CONTENT_TYPE) or ""
    _, _, rest = content_type.partition("charset=")
    return rest.split(";")[0].strip().strip('"') or "utf-8"


#: The h3_* scenarios run with this adapter when libcurl has HTTP/3 (ngtcp2 + nghttp3).
HTTP3 = "ngtcp2" in pycurl.version and hasattr(pycurl, "CURL_HTTP_VERSION_3ONLY")


def _handle(target: Target) -> pycurl.Curl:
    c = pycurl.Curl()
    c.setopt(pycurl.URL, target.url)
    c.setopt(pycurl.NOSIGNAL, 1)
    c.setopt(pycurl.HTTPHEADER, ["Expect:"])
    c.setopt(pycurl.BUFFERSIZE, 256 * 1024)
    if target.body is not None:
        c.setopt(pycurl.POSTFIELDS, target.body)
    if target.tls:
        c.setopt(pycurl.CAINFO, target.ca_file)
    if target.h3:
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_3ONLY)  # ngtcp2 + nghttp3
    elif target.h2c:
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE)
    elif target.http2:
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS)
    elif target.tls:
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
    if target.http2 or target.h3:
        c.setopt(pycurl.PIPEWAIT, 1)
    if target.gzip:
        c.setopt(pycurl.ACCEPT_ENCODING, "gzip")
    if target.proxy_url:
        c.setopt(pycurl.PROXY, target.proxy_url)  # libcurl reads http:// and socks5h://
    if not target.keepalive:
        # no_pool: libcurl's own switches; the handle is reused, its connections are not.
        c.setopt(pycurl.FORBID_REUSE, 1)
        c.setopt(pycurl.FRESH_CONNECT, 1)
    return c


def _payload(target: Target, c: pycurl.Curl, body: bytes) -> Any:
    if target.decode == "json":
        return json.loads(body)
    if target.decode == "text":
        return body.decode(_charset(c))
    return body


@contextmanager
def open_sync(target: Target) -> Iterator[SyncFetch]:
    if target.kind != "request":
        with streams.download_path() as path:
            c = _stream_handle(target)
            try:
                yield stream_fetch(c, target, path)
            finally:
                c.close()
        return
    c = _handle(target)
    try:

        def fetch() -> Fetched:
            buf = BytesIO()
            c.setopt(pycurl.WRITEDATA, buf)
            c.perform()
            return c.getinfo(pycurl.RESPONSE_CODE), _payload(target, c, buf.getvalue())

        yield fetch
    finally:
        c.close()


def multi_loop(target: Target) -> ThreadLoop:
    """N easy handles kept busy on one CurlMulti, re-added as soon as each one completes."""

    def run(tally: Tally, stop: threading.Event) -> None:
        multi = pycurl.CurlMulti()
        if target.http2 or target.h3:
            multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
        buffers: dict[pycurl.Curl, BytesIO] = {}
        fresh: set[pycurl.Curl] = set()

        def start(c: pycurl.Curl) -> None:
            buf = buffers[c] = BytesIO()
            c.setopt(pycurl.WRITEDATA, buf)
            multi.add_handle(c)

        handles = [_handle(target) for _ in range(target.concurrency)]
        for c in handles:
            fresh.add(c)
            start(c)
        active = len(handles)
        try:
            while active:
                while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                    pass
                finished = 0
                while True:
                    queued, done, failed = multi.info_read()
                    for c in done:
                        multi.remove_handle(c)
                        try:
                            status = c.getinfo(pycurl.RESPONSE_CODE)
                            payload = _payload(target, c, buffers[c].getvalue())
                            if c in fresh:
                                fresh.discard(c)
                                check_first(target, status, payload)
                            else:
                                check(target, status, payload)
                            tally.ok += 1
                        except Exception as exc:
                            tally.fail(exc)
                    for c, errno, message in failed:
                        multi.remove_handle(c)
                        tally.fail(BadResponse(f"curl error {errno}: {message}"))
                    for c in (*done, *(f[0] for f in failed)):
                        finished += 1
                        if stop.is_set():
                            active -= 1
                        else:
                            start(c)
                    if not queued:
                        break
                if active and not finished:  # re-added handles need perform(), not a wait
                    multi.select(1.0)
        finally:
            for c in handles:
                c.close()
            multi.close()

    return run


def _stream_handle(target: Target) -> pycurl.Curl:
    """The reused handle of the streams-and-formats scenarios (plain HTTP/1.1), tuned as
    ``_handle``: no ``Expect:`` round trip, a 256 KiB receive buffer."""
    c = pycurl.Curl()
    c.setopt(pycurl.URL, target.url)
    c.setopt(pycurl.NOSIGNAL, 1)
    c.setopt(pycurl.HTTPHEADER, ["Expect:"])
    c.setopt(pycurl.BUFFERSIZE, 256 * 1024)
    return c


def stream_fetch(c: pycurl.Curl, target: Target, path: Path) -> SyncFetch:
    """The streams-and-formats scenarios. libcurl has no SSE parser: its WRITEFUNCTION
    feeds each received chunk to the minimal parser of benches.streams.LineEvents. Forms:
    ``HTTPPOST`` with a ``FORM_BUFFERPTR`` file part; generator: a ``READFUNCTION`` over
    it with ``Transfer-Encoding: chunked``; streaming: a WRITEFUNCTION that keeps each
    chunk; downloads: ``WRITEDATA`` = the open file (what the curl tool does)."""
    kind = target.kind

    if kind == "sse":
        c.setopt(pycurl.HTTPHEADER, ["Expect:", "Accept: text/event-stream"])

        def fetch() -> Fetched:
            parser = streams.LineEvents()
            c.setopt(pycurl.WRITEFUNCTION, parser.feed)
            c.perform()
            return c.getinfo(pycurl.RESPONSE_CODE), parser.events

    elif kind == "multipart":
        content = streams.file_content(target.body_size)
        file_part = (
            pycurl.FORM_BUFFER,
            streams.FILE_NAME,
            pycurl.FORM_BUFFERPTR,
            content,
            pycurl.FORM_CONTENTTYPE,
            streams.FILE_TYPE,
        )

        def fetch() -> Fetched:
            buf = BytesIO()
            c.setopt(pycurl.WRITEDATA, buf)
            c.setopt(pycurl.HTTPPOST, [streams.FORM_FIELD, (streams.FILE_FIELD, file_part)])
            c.perform()
            return c.getinfo(pycurl.RESPONSE_CODE), buf.getvalue().decode()

    elif kind == "upload_stream":
        chunks = streams.upload_chunks(target.body_size)
        c.setopt(pycurl.POST, 1)
        c.setopt(pycurl.HTTPHEADER, ["Expect:", "Transfer-Encoding: chunked"])

        def fetch() -> Fetched:
            pieces = streams.iterate(chunks)
            rest = [b""]

            def read(size: int) -> bytes:
                data = rest[0] or next(pieces, b"")
                rest[0] = data[size:]
                return data[:size]

            buf = BytesIO()
            c.setopt(pycurl.WRITEDATA, buf)
            c.setopt(pycurl.READFUNCTION, read)
            c.perform()
            return c.getinfo(pycurl.RESPONSE_CODE), buf.getvalue().decode()

    elif kind == "body_stream":

        def fetch() -> Fetched:
            received: list[bytes] = []
            c.setopt(pycurl.WRITEFUNCTION, received.append)
            c.perform()
            return c.getinfo(pycurl.RESPONSE_CODE), received

    else:  # download: one stream into the file

        def fetch() -> Fetched:
            with open(path, "wb") as f:
                c.setopt(pycurl.WRITEDATA, f)
                c.perform()
            return c.getinfo(pycurl.RESPONSE_CODE), path

    return fetch
