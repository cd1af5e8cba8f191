"""Multipart forms, streamed uploads and Expect: 100-continue, against a local server.

Run: python examples/uploads.py
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aioduct
from aioduct.testing.server import Conn, ScriptServer, ServerRequest


def serve(srv: ScriptServer) -> None:
    @srv.route("/upload", read_body=False)
    async def upload(conn: Conn, req: ServerRequest) -> None:
        if req.header("content-length") == str(10**9):  # "too large": refuse before the body
            await conn.send(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
            return
        body = await conn.read_body()  # answers 100 Continue when the client waits for it
        framing = "chunked" if req.header("transfer-encoding") else "Content-Length"
        reply = f"{len(body)} bytes, {framing}".encode()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(reply), reply))


async def main(url: str, path: Path) -> None:
    async with aioduct.Client() as client:
        # A form with a file from disk (streamed in 64 KiB reads) and plain fields.
        r = await client.post(
            url,
            data={"title": "report"},
            files={"report": path, "notes": ("notes.txt", b"hello", "text/plain")},
        )
        print("multipart:", r.text)

        # A streamed body of unknown length goes chunked.
        async def produce() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"line {i}\n".encode()

        print("async iterator:", (await client.post(url, content=produce())).text)
        # A file object: Content-Length from its size.
        with path.open("rb") as f:
            print("file object:", (await client.post(url, content=f)).text)

        # Expect: 100-continue: the server can refuse before the body is sent.
        with path.open("rb") as f:
            r = await client.post(
                url, content=f, headers={"Content-Length": str(10**9)}, expect_continue=True
            )
            print("refused before the upload:", r.status, "- file position still", f.tell())

        # A form built by hand.
        form = aioduct.Multipart({"a": "1"}, {"b": ("b.bin", b"\0\1")})
        print("by hand:", (await client.post(url, content=form)).text, form.content_type[:30])


if __name__ == "__main__":
    with ScriptServer() as srv, tempfile.TemporaryDirectory() as tmp:
        serve(srv)
        path = Path(tmp) / "report.csv"
        path.write_bytes(b"a,b\n" * 50_000)
        aioduct.run(main(srv.url + "/upload", path))
