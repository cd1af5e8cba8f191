"""pyreqwest: the async Client (Rust reqwest on a tokio runtime), driven from uvloop.

The default runtime is pyreqwest's single-threaded tokio runtime on its own thread; with
pinning it shares the client CPU with the Python thread, and its CPU time is charged to it.
h2c scenarios use ``http2_prior_knowledge()``, TLS h2 ``http2(True)`` (ALPN; pyreqwest is
HTTP/1.1-only by default). TLS: ``add_root_certificate_pem`` with the run's CA. gzip:
reqwest decodes by default (``gzip(True)``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pyreqwest
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.multipart import FormBuilder, PartBuilder

from benches import streams
from benches.harness import AsyncFetch, Fetched
from benches.scenarios import Target


def describe() -> str:
    return f"pyreqwest {pyreqwest.__version__}"


def _builder(target: Target) -> ClientBuilder:
    builder = ClientBuilder()
    if target.h2c:  # reqwest's h2c with prior knowledge (hyper's h2)
        builder = builder.http2_prior_knowledge()
    elif target.http2:
        builder = builder.http2(True)
    else:
        builder = builder.http1_only()
    if target.tls:
        assert target.ca_file is not None
        builder = builder.add_root_certificate_pem(Path(target.ca_file).read_bytes())
    if target.gzip:
        builder = builder.default_headers(target.headers).gzip(True)
    if not target.keepalive:
        # no_pool: reqwest's own switch; the client is reused, idle connections are not.
        builder = builder.pool_max_idle_per_host(0)
    return builder


@asynccontextmanager
async def open_async(target: Target) -> AsyncIterator[AsyncFetch]:
    builder = _builder(target)
    async with builder.build() as client:
        url, body = target.url, target.body

        if target.kind != "request":
            with streams.download_path() as path:
                yield stream_fetch(client, target, path)
            return

        if target.method == "POST":
            assert body is not None

            async def fetch() -> Fetched:
                r = await client.post(url).body_bytes(body).build().send()
                return r.status, await r.bytes()

        elif target.decode == "json":

            async def fetch() -> Fetched:
                r = await client.get(url).build().send()
                return r.status, await r.json()

        elif target.decode == "text":

            async def fetch() -> Fetched:
                r = await client.get(url).build().send()
                return r.status, await r.text()

        else:

            async def fetch() -> Fetched:
                r = await client.get(url).build().send()
                return r.status, await r.bytes()

        yield fetch


def stream_fetch(client: Client, target: Target, path: Path) -> AsyncFetch:
    """The streams-and-formats scenarios. pyreqwest has no SSE parser: the chunks of
    ``build_streamed()``'s ``body_reader.read_chunk()``, parsed by the minimal rules of
    benches.streams.LineEvents. Forms: ``FormBuilder`` with a ``PartBuilder.from_bytes``
    file; generator: ``body_stream()`` of an async generator; streaming and downloads:
    ``read_chunk()`` until it returns None."""
    url, kind = target.url, target.kind

    if kind == "sse":

        async def fetch() -> Fetched:
            request = client.get(url).header("Accept", "text/event-stream").build_streamed()
            async with request as r:
                parser = streams.LineEvents()
                while (chunk := await r.body_reader.read_chunk()) is not None:
                    parser.feed(bytes(chunk))
                return r.status, parser.events

    elif kind == "multipart":
        content = streams.file_content(target.body_size)

        async def fetch() -> Fetched:
            part = PartBuilder.from_bytes(content).file_name(streams.FILE_NAME)
            form = FormBuilder().text(*streams.FORM_FIELD)
            form = form.part(streams.FILE_FIELD, part.mime(streams.FILE_TYPE))
            r = await client.post(url).multipart(form).build().send()
            return r.status, await r.text()

    elif kind == "upload_stream":
        chunks = streams.upload_chunks(target.body_size)

        async def fetch() -> Fetched:
            r = await client.post(url).body_stream(streams.aiterate(chunks)).build().send()
            return r.status, await r.text()

    elif kind == "body_stream":

        async def fetch() -> Fetched:
            async with client.get(url).build_streamed() as r:
                chunks = []
                while (chunk := await r.body_reader.read_chunk()) is not None:
                    chunks.append(chunk)
                return r.status, chunks

    else:  # download: one stream into the file

        async def fetch() -> Fetched:
            async with client.get(url).build_streamed() as r:
                with open(path, "wb") as f:  # noqa: ASYNC230
                    while (chunk := await r.body_reader.read_chunk()) is not None:
                        f.write(chunk)
                return r.status, path

    return fetch
