"""httpx: one AsyncClient (HTTP/1.1, its default), on uvloop.

h2c scenarios: ``AsyncClient(http1=False, http2=True)``, httpx's h2c with prior
knowledge (needs the ``h2`` package, httpx's ``http2`` extra); TLS h2: ``http2=True``
(ALPN). TLS: ``verify=<SSLContext trusting the run's CA>`` (httpx deprecates a path).
gzip: httpx decodes by default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from benches import streams
from benches.harness import AsyncFetch, Fetched
from benches.scenarios import Target


@asynccontextmanager
async def open_async(target: Target) -> AsyncIterator[AsyncFetch]:
    # no_pool: no idle connection may be kept, so every request connects (client reused).
    limits = httpx.Limits(
        max_connections=max(100, target.concurrency),
        max_keepalive_connections=max(20, target.concurrency) if target.keepalive else 0,
    )
    verify = target.ssl_context() if target.tls else True
    client_cm = httpx.AsyncClient(
        limits=limits,
        http1=not target.h2c,
        http2=target.http2,
        verify=verify,
        headers=target.headers,
    )
    async with client_cm as client:
        url, body = target.url, target.body

        if target.kind != "request":
            with streams.download_path() as path:
                yield stream_fetch(client, target, path)
            return

        if target.method == "POST":

            async def fetch() -> Fetched:
                r = await client.post(url, content=body)
                return r.status_code, r.content

        elif target.decode == "json":

            async def fetch() -> Fetched:
                r = await client.get(url)
                return r.status_code, r.json()

        elif target.decode == "text":

            async def fetch() -> Fetched:
                r = await client.get(url)
                return r.status_code, r.text

        else:

            async def fetch() -> Fetched:
                r = await client.get(url)
                return r.status_code, r.content

        yield fetch


def stream_fetch(client: httpx.AsyncClient, target: Target, path: Path) -> AsyncFetch:
    """The streams-and-formats scenarios. httpx has no SSE parser (httpx-sse is another
    package): ``aiter_lines()`` of a streamed response, parsed by the minimal rules of
    benches.streams.LineEvents. Forms: ``files=``; generator: an async generator as
    ``content=``; streaming: ``client.stream()`` + ``aiter_bytes()``."""
    url, kind = target.url, target.kind

    if kind == "sse":

        async def fetch() -> Fetched:
            async with client.stream("GET", url, headers={"Accept": "text/event-stream"}) as r:
                parser = streams.LineEvents()
                async for line in r.aiter_lines():
                    parser.line(line)
                return r.status_code, parser.events

    elif kind == "multipart":
        form = streams.form_fields()
        content = streams.file_content(target.body_size)

        async def fetch() -> Fetched:
            files = streams.form_files(content)
            r = await client.post(url, data=form, files=files)
            return r.status_code, r.text

    elif kind == "upload_stream":
        chunks = streams.upload_chunks(target.body_size)

        async def fetch() -> Fetched:
            r = await client.post(url, content=streams.aiterate(chunks))
            return r.status_code, r.text

    elif kind == "body_stream":

        async def fetch() -> Fetched:
            async with client.stream("GET", url) as r:
                return r.status_code, [chunk async for chunk in r.aiter_bytes()]

    else:  # download: one stream into the file

        async def fetch() -> Fetched:
            async with client.stream("GET", url) as r:
                with open(path, "wb") as f:  # noqa: ASYNC230
                    async for chunk in r.aiter_bytes():
                        f.write(chunk)
                return r.status_code, path

    return fetch
