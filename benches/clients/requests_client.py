"""requests: one Session per thread (Sessions are not thread-safe).

TLS: ``Session.verify`` = the run's CA file; no HTTP/2. gzip: urllib3 decodes by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from benches import streams
from benches.clients import verify_per_request
from benches.harness import Fetched, SyncFetch
from benches.scenarios import Target


def unsupported(target: Target) -> str | None:
    return "no HTTP/2 in requests" if target.http2 else None


@contextmanager
def open_sync(target: Target) -> Iterator[SyncFetch]:
    with requests.Session() as session:
        session.headers.update(target.headers)
        if not target.keepalive:
            # no_pool: requests has no keep-alive switch; "Connection: close" makes nginx close
            # after each response, so urllib3 opens a new connection every time (session reused).
            session.headers["Connection"] = "close"
        url, body = target.url, target.body
        get, post = verify_per_request(target, session.get, session.post)

        if target.kind != "request":
            with streams.download_path() as path:
                yield stream_fetch(get, post, target, path)
            return

        if target.method == "POST":

            def fetch() -> Fetched:
                r = post(url, data=body)
                return r.status_code, r.content

        elif target.decode == "json":

            def fetch() -> Fetched:
                r = get(url)
                return r.status_code, r.json()

        elif target.decode == "text":

            def fetch() -> Fetched:
                r = get(url)
                return r.status_code, r.text

        else:

            def fetch() -> Fetched:
                r = get(url)
                return r.status_code, r.content

        yield fetch


def stream_fetch(
    get: Callable[..., Any], post: Callable[..., Any], target: Target, path: Path
) -> SyncFetch:
    """The streams-and-formats scenarios. requests has no SSE parser: ``iter_lines()`` of
    a ``stream=True`` response, parsed by the minimal rules of benches.streams.LineEvents.
    Forms: ``files=``; generator: ``data=`` (sent chunked); streaming and downloads:
    ``iter_content(64 KiB)``."""
    url, kind = target.url, target.kind

    if kind == "sse":

        def fetch() -> Fetched:
            with get(url, stream=True, headers={"Accept": "text/event-stream"}) as r:
                parser = streams.LineEvents()
                for line in r.iter_lines():
                    parser.line(line.decode())
                return r.status_code, parser.events

    elif kind == "multipart":
        form = streams.form_fields()
        content = streams.file_content(target.body_size)

        def fetch() -> Fetched:
            files = streams.form_files(content)
            r = post(url, data=form, files=files)
            return r.status_code, r.text

    elif kind == "upload_stream":
        chunks = streams.upload_chunks(target.body_size)

        def fetch() -> Fetched:
            r = post(url, data=streams.iterate(chunks))
            return r.status_code, r.text

    elif kind == "body_stream":

        def fetch() -> Fetched:
            with get(url, stream=True) as r:
                return r.status_code, list(r.iter_content(streams.STREAM_CHUNK))

    else:  # download: one stream into the file

        def fetch() -> Fetched:
            with get(url, stream=True) as r, open(path, "wb") as f:
                for chunk in r.iter_content(streams.STREAM_CHUNK):
                    f.write(chunk)
                return r.status_code, path

    return fetch
