"""niquests, sync: one Session per thread.

Chosen over AsyncSession because it measured faster here on every HTTP/1.1 scenario
(`--clients niquests-async` runs the other one).

TLS: ``verify=`` the run's CA file; HTTP/2 (niquests' default over TLS) is disabled except
in the h2 scenario, where each thread's Session has its own h2 connection. gzip: decoded
by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import niquests

from benches import streams
from benches.clients import quic_prior_knowledge, verify_per_request
from benches.harness import Fetched, SyncFetch
from benches.scenarios import Target

#: The h3_* scenarios run with this adapter (HTTP/3 with prior knowledge).
HTTP3 = True


def unsupported(target: Target) -> str | None:
    return "no h2c (prior knowledge) mode in this adapter" if target.h2c else None


@contextmanager
def open_sync(target: Target) -> Iterator[SyncFetch]:
    with niquests.Session(
        disable_http2=target.tls and not target.http2 and not target.h3,
        quic_cache_layer=quic_prior_knowledge(target),
    ) as session:
        session.headers.update(target.headers)
        if not target.keepalive:
            # no_pool: no keep-alive switch; "Connection: close" forces a new connection per
            # request while the session is reused.
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
                return r.status_code or 0, r.content

        elif target.decode == "json":

            def fetch() -> Fetched:
                r = get(url)
                return r.status_code or 0, r.json()

        elif target.decode == "text":

            def fetch() -> Fetched:
                r = get(url)
                return r.status_code or 0, r.text

        else:

            def fetch() -> Fetched:
                r = get(url)
                return r.status_code or 0, r.content

        yield fetch


def sse_url(url: str) -> str:
    """niquests' own SSE: the ``psse://`` scheme (plain HTTP; ``sse://`` is TLS)."""
    return ("sse://" + url[8:]) if url.startswith("https://") else "psse://" + url[7:]


def stream_fetch(
    get: Callable[..., Any], post: Callable[..., Any], target: Target, path: Path
) -> SyncFetch:
    """The streams-and-formats scenarios. SSE: niquests' own parser (the ``psse://``
    scheme, ``r.extension.next_payload()``). Forms: ``files=``; generator: ``data=``
    (chunked); streaming and downloads: ``stream=True`` + ``iter_content(64 KiB)``."""
    url, kind = target.url, target.kind

    if kind == "sse":
        events_url = sse_url(url)

        def fetch() -> Fetched:
            r = get(events_url)
            events = []
            while (event := r.extension.next_payload()) is not None:
                events.append(event.data)
            r.extension.close()
            return r.status_code or 0, events

    elif kind == "multipart":
        form = streams.form_fields()
        content = streams.file_content(target.body_size)

        def fetch() -> Fetched:
            files = streams.form_files(content)
            r = post(url, data=form, files=files)
            return r.status_code or 0, r.text

    elif kind == "upload_stream":
        chunks = streams.upload_chunks(target.body_size)

        def fetch() -> Fetched:
            r = post(url, data=streams.iterate(chunks))
            return r.status_code or 0, r.text

    elif kind == "body_stream":

        def fetch() -> Fetched:
            with get(url, stream=True) as r:
                return r.status_code or 0, list(r.iter_content(streams.STREAM_CHUNK))

    else:  # download: one stream into the file

        def fetch() -> Fetched:
            with get(url, stream=True) as r, open(path, "wb") as f:
                for chunk in r.iter_content(streams.STREAM_CHUNK):
                    f.write(chunk)
                return r.status_code or 0, path

    return fetch
