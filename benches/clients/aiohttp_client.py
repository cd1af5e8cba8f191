"""aiohttp: one ClientSession over a TCPConnector, on uvloop (its fastest configuration).

TLS scenarios: ``TCPConnector(ssl=<SSLContext trusting the run's CA>)``; aiohttp has no
HTTP/2. gzip: aiohttp decodes by default (``auto_decompress``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from benches import streams
from benches.harness import AsyncFetch, Fetched
from benches.scenarios import Target

#: Runs the proxy scenarios (target.proxy_url).
PROXIES = True


def unsupported(target: Target) -> str | None:
    if target.proxy_url and not target.proxy_url.startswith("http://"):
        return "no SOCKS in aiohttp (it needs the aiohttp-socks package)"
    return "no HTTP/2 in aiohttp" if target.http2 else None


@asynccontextmanager
async def open_async(target: Target) -> AsyncIterator[AsyncFetch]:
    # no_pool: force_close is aiohttp's own "no keep-alive" switch (session reused).
    connector = aiohttp.TCPConnector(
        limit=max(100, target.concurrency),
        force_close=not target.keepalive,
        ssl=target.ssl_context() if target.tls else True,
    )
    async with aiohttp.ClientSession(
        connector=connector, headers=target.headers, proxy=target.proxy_url
    ) as session:
        url, body = target.url, target.body

        if target.kind != "request":
            with streams.download_path() as path:
                yield stream_fetch(session, target, path)
            return

        if target.method == "POST":

            async def fetch() -> Fetched:
                async with session.post(url, data=body) as r:
                    return r.status, await r.read()

        elif target.decode == "json":

            async def fetch() -> Fetched:
                async with session.get(url) as r:
                    return r.status, await r.json()

        elif target.decode == "text":

            async def fetch() -> Fetched:
                async with session.get(url) as r:
                    return r.status, await r.text()

        else:

            async def fetch() -> Fetched:
                async with session.get(url) as r:
                    return r.status, await r.read()

        yield fetch


def stream_fetch(session: aiohttp.ClientSession, target: Target, path: Path) -> AsyncFetch:
    """The streams-and-formats scenarios. aiohttp has no SSE parser (aiohttp-sse-client
    is another package): its response's ``content`` is read line by line and parsed by
    the minimal rules of benches.streams.LineEvents. Forms: ``aiohttp.FormData``;
    generator: an async generator as ``data=``; streaming: ``content.iter_any()``."""
    url, kind = target.url, target.kind

    if kind == "sse":

        async def fetch() -> Fetched:
            async with session.get(url, headers={"Accept": "text/event-stream"}) as r:
                parser = streams.LineEvents()
                async for line in r.content:
                    parser.line(line.decode().rstrip("\n"))
                return r.status, parser.events

    elif kind == "multipart":
        content = streams.file_content(target.body_size)

        async def fetch() -> Fetched:
            form = aiohttp.FormData()
            form.add_field(*streams.FORM_FIELD)
            form.add_field(
                streams.FILE_FIELD,
                content,
                filename=streams.FILE_NAME,
                content_type=streams.FILE_TYPE,
            )
            async with session.post(url, data=form) as r:
                return r.status, await r.text()

    elif kind == "upload_stream":
        chunks = streams.upload_chunks(target.body_size)

        async def fetch() -> Fetched:
            async with session.post(url, data=streams.aiterate(chunks)) as r:
                return r.status, await r.text()

    elif kind == "body_stream":

        async def fetch() -> Fetched:
            async with session.get(url) as r:
                return r.status, [chunk async for chunk in r.content.iter_any()]

    else:  # download: one stream into the file

        async def fetch() -> Fetched:
            async with session.get(url) as r:
                with open(path, "wb") as f:  # noqa: ASYNC230
                    async for chunk in r.content.iter_any():
                        f.write(chunk)
                return r.status, path

    return fetch
