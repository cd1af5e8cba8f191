"""aioduct.BlockingClient: one client shared by the runner's threads.

The blocking client runs the pipeline in the calling thread on plain sockets (no event
loop, no thread hop) with a connection pool per thread, so N threads behave like N
sessions of a sync library. Options as for the async client (aioduct_common).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aioduct
from benches import streams
from benches.clients.aioduct_common import client_options, unsupported_reason
from benches.harness import Fetched, SyncFetch
from benches.scenarios import Target

#: Runs the proxy scenarios (target.proxy_url).
PROXIES = True
#: The h3_* scenarios run with this adapter (HTTP/3 with prior knowledge).
HTTP3 = True


def unsupported(target: Target) -> str | None:
    return unsupported_reason(target)


@contextmanager
def open_sync(target: Target) -> Iterator[SyncFetch]:
    with aioduct.BlockingClient(**client_options(target)) as client:
        url, body = target.url, target.body

        if target.kind != "request":
            with streams.download_path() as path:
                yield stream_fetch(client, target, path)
            return

        if target.method == "POST":

            def fetch() -> Fetched:
                r = client.post(url, content=body)
                return r.status, r.content

        elif target.decode == "json":

            def fetch() -> Fetched:
                r = client.get(url)
                return r.status, r.json()

        elif target.decode == "text":

            def fetch() -> Fetched:
                r = client.get(url)
                return r.status, r.text

        else:

            def fetch() -> Fetched:
                r = client.get(url)
                return r.status, r.content

        yield fetch


def stream_fetch(client: aioduct.BlockingClient, target: Target, path: Path) -> SyncFetch:
    """As the async adapter's (aioduct_client.stream_fetch), with the blocking methods:
    ``sse()``, ``files=``, a generator, ``stream()`` + ``iter_bytes()``, and
    ``download(chunks=N)``, whose ranges this client fetches one after another."""
    url, kind = target.url, target.kind

    if kind == "sse":

        def fetch() -> Fetched:
            with client.sse(url, reconnect=False) as source:
                assert source.response is not None  # (the stream ends it)
                status = source.response.status
                events = [event.data for event in source]
            return status, events

    elif kind == "multipart":
        form = streams.form_fields()
        content = streams.file_content(target.body_size)

        def fetch() -> Fetched:
            files = streams.form_files(content)
            r = client.post(url, data=form, files=files)
            return r.status, r.text

    elif kind == "upload_stream":
        chunks = streams.upload_chunks(target.body_size)

        def fetch() -> Fetched:
            r = client.post(url, content=streams.iterate(chunks))
            return r.status, r.text

    elif kind == "body_stream":

        def fetch() -> Fetched:
            with client.stream("GET", url) as r:
                return r.status, list(r.iter_bytes())

    elif target.chunks:
        chunks_n = target.chunks

        def fetch() -> Fetched:
            client.download(url, path, chunks=chunks_n, resume=False)
            return 200, path

    else:

        def fetch() -> Fetched:
            with client.stream("GET", url) as r, open(path, "wb") as f:
                for chunk in r.iter_bytes():
                    f.write(chunk)
                return r.status, path

    return fetch
