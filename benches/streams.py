"""What the streams-and-formats scenarios share across client adapters.

The event stream nginx serves for ``sse_100``, the minimal line parser the clients
without an SSE parser use, the form fields of the multipart scenarios, the chunks of
the streamed upload, and the per-client directory the download scenarios write into.
Everything here is deterministic and built in memory; the 100 MB download file is
written at bench time into the bench nginx's temporary directory (benches.runner).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

#: nginx location of the ``sse_100`` event stream (a static file, ``text/event-stream``).
SSE_PATH: Final = "/sse/events"
SSE_EVENTS: Final = 100
#: The plain form field and the file field every multipart client sends.
FORM_FIELD: Final = ("note", "aioduct bench upload")
FILE_FIELD: Final = "file"
FILE_NAME: Final = "data.bin"
FILE_TYPE: Final = "application/octet-stream"
#: Most a multipart body may add to its file (boundaries, part headers, the field).
FORM_OVERHEAD: Final = 1024
#: Pieces of the streamed upload (its generator yields these, length unknown).
UPLOAD_CHUNK: Final = 64 * 1024
#: The chunk size given to streaming APIs that need one (requests' and niquests'
#: ``iter_content``); the others yield what each read returned.
STREAM_CHUNK: Final = 64 * 1024


def event_stream() -> bytes:
    """The ``sse_100`` body: 100 events like a token stream of an LLM API.

    Each has ``id:`` and ``event:`` lines and JSON data; every tenth has two data lines
    (joined with a newline, per the spec) and is preceded by a ``:`` comment (a
    keep-alive), so a parser that only splits on ``data:`` lines gets it wrong.
    """
    out: list[str] = []
    for n in range(SSE_EVENTS):
        if n % 10 == 0:
            out.append(": keep-alive\n")
        out.append(f"id: {n}\nevent: delta\n")
        delta = {"index": n, "text": f"token {n} of the answer", "done": n == SSE_EVENTS - 1}
        out.append(f"data: {json.dumps(delta)}\n")
        if n % 10 == 9:
            out.append(f"data: {json.dumps({'usage': {'tokens': n + 1}})}\n")
        out.append("\n")
    return "".join(out).encode()


class LineEvents:
    """The SSE parsing a user without an SSE library writes: split lines, collect
    ``data:`` values, dispatch at a blank line; ``id``/``event``/comments ignored.

    Feed it lines (``line``) or raw chunks (``feed``, which keeps a partial line); it
    knows LF line ends only, which is what the bench stream uses.
    """

    __slots__ = ("_data", "_tail", "events")

    def __init__(self) -> None:
        self.events: list[str] = []
        self._data: list[str] = []
        self._tail = b""

    def line(self, line: str) -> None:
        if not line:
            if self._data:
                self.events.append("\n".join(self._data))
                self._data = []
        elif line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)

    def feed(self, chunk: bytes) -> None:
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()
        for raw in lines:
            self.line(raw.decode())


def reference_events(body: bytes) -> list[str]:
    """The data of every event of ``body``, by the same minimal rules (the reference
    every client's events are compared with)."""
    parser = LineEvents()
    parser.feed(body)
    parser.feed(b"\n")
    return parser.events


def sse_location(static: Path) -> str:
    """Write the event stream under ``static``; return the nginx location serving it."""
    path = static / "events.txt"
    path.write_bytes(event_stream())
    return (
        f"location = {SSE_PATH} {{ types {{ }} default_type text/event-stream; "
        f'add_header Cache-Control no-store; alias "{path}"; }}'
    )


#: nginx location of the upload scenarios: it reads the whole body (buffered in memory,
#: chunked or not) before passing it on to UPLOAD_SINK, so the reply tells what arrived.
UPLOAD_PATH: Final = "/upload"
UPLOAD_SINK: Final = "/upload-sink"


def upload_locations() -> str:
    """The nginx locations of the upload scenarios.

    ``/post`` discards the body (nginx's ``return``), so its reply cannot tell whether it
    all arrived, nor how (a chunked body has no ``$content_length``). ``/upload`` proxies
    to a sink on the same server: nginx reads the whole body first and forwards it with
    its Content-Length, plus the client's ``Transfer-Encoding``; the sink answers
    ``POST <bytes received> <transfer-encoding or ->``.
    """
    return (
        f"location = {UPLOAD_PATH} {{ client_body_buffer_size 2m; client_max_body_size 8m; "
        'proxy_http_version 1.1; proxy_set_header Connection ""; '
        "proxy_set_header X-Sent-Transfer-Encoding $http_transfer_encoding; "
        f"proxy_pass http://127.0.0.1:$server_port{UPLOAD_SINK}; }}\n        "
        f"location = {UPLOAD_SINK} {{ default_type text/plain; "
        "return 200 '$request_method $content_length $http_x_sent_transfer_encoding'; }"
    )


def upload_chunks(size: int) -> list[bytes]:
    """The streamed upload's pieces, made once: each request iterates them afresh."""
    data = file_content(size)
    return [data[i : i + UPLOAD_CHUNK] for i in range(0, size, UPLOAD_CHUNK)]


def iterate(chunks: list[bytes]) -> Iterator[bytes]:
    """A generator over ``chunks``: a body of unknown length (sent chunked)."""
    yield from chunks


async def aiterate(chunks: list[bytes]) -> AsyncIterator[bytes]:
    """The same as an async generator, for clients that take only those."""
    for chunk in chunks:
        yield chunk


def file_content(size: int) -> bytes:
    """The uploaded file: every byte value in turn, like binary data.

    Not one repeated byte: CPython's substring search (which a multipart encoder uses to
    keep its boundary out of the content) slows to a byte at a time when that byte
    shares its low six bits with a character of the boundary (``x`` and ``8``), a
    worst case real files do not have.
    """
    from aioduct.testing.nginx import deterministic_bytes

    return deterministic_bytes(size)


def form_fields() -> dict[str, str]:
    """The plain form field, as the requests-style APIs take it (``data=``)."""
    return {FORM_FIELD[0]: FORM_FIELD[1]}


def form_files(content: bytes) -> dict[str, tuple[str, bytes, str]]:
    """The file field, as the requests-style APIs take it (``files=``)."""
    return {FILE_FIELD: (FILE_NAME, content, FILE_TYPE)}


#: Where downloads go when it exists: tmpfs (RAM), so the download rows measure the
#: clients and not the disk's writeback of a few GB of repeated 100 MB files.
_SHM: Final = Path("/dev/shm")


def _download_dir() -> str | None:
    try:
        stat = os.statvfs(_SHM)
    except OSError:
        return None
    room = stat.f_bavail * stat.f_frsize
    return str(_SHM) if room > 1 << 30 and os.access(_SHM, os.W_OK) else None


@contextlib.contextmanager
def download_path() -> Iterator[Path]:
    """Where one client's download scenario writes (removed afterwards): a temporary
    directory on tmpfs (``/dev/shm``) when there is room, else the system's."""
    prefix = "aioduct-bench-download-"
    with tempfile.TemporaryDirectory(prefix=prefix, dir=_download_dir()) as tmp:
        yield Path(tmp) / "file"


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_pattern(path: Path, size: int) -> None:
    """``deterministic_bytes(size)`` written in 1 MiB pieces (the pattern repeats every
    256 bytes), without holding the whole file in memory."""
    from aioduct.testing.nginx import deterministic_bytes

    block = deterministic_bytes(1 << 20)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
    os.replace(tmp, path)
