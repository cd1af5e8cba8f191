"""Request bodies that stream: files, sync iterators, and what they promise.

A streamed body (``Request.stream``) is any async iterable of bytes. The classes here
add two facts the pipeline uses when they are known:

* ``size``: the exact byte count, so the request carries ``Content-Length`` instead of
  chunked framing (HTTP/1.1) -- servers and proxies treat known-length uploads better;
* ``replayable``: whether iterating again yields the same bytes, so a 307/308 redirect
  or a resend on a fresh connection can repeat the body. Paths are reopened, seekable
  file objects seek back to where they started; iterators are one-shot and a redirect
  that would need them again raises :class:`~aioduct.RedirectError` instead of sending
  an empty body.

Files are read in :data:`CHUNK_SIZE` pieces with plain ``read`` calls on the thread
running the request: 64 KiB is one page-cache copy of a few microseconds, small enough
not to stall an event loop noticeably and large enough to keep syscalls per megabyte
low. (A file on a slow network mount still blocks for as long as one read takes.)
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import IO, Any, Final

__all__ = [
    "CHUNK_SIZE",
    "BodyStream",
    "FileBody",
    "IterBody",
    "is_replayable",
    "stream_size",
]

#: Bytes read from a file (or asked of nothing else) per chunk of a streamed body.
CHUNK_SIZE: Final = 64 * 1024


class BodyStream:
    """Base of the streamed bodies aioduct builds: an async iterable of bytes that may
    know its ``size`` and whether it is ``replayable`` (see the module docstring)."""

    _size: int | None = None
    _replayable: bool = False

    @property
    def size(self) -> int | None:
        """The exact byte count, or ``None`` when unknown (then it is sent chunked)."""
        return self._size

    @property
    def replayable(self) -> bool:
        """Whether iterating again yields the same bytes (a redirect may resend it)."""
        return self._replayable

    def __aiter__(self) -> AsyncIterator[bytes]:
        raise NotImplementedError


def is_replayable(stream: AsyncIterable[bytes] | None) -> bool:
    """Whether a request's streamed body can be sent again (``None``: no stream)."""
    return stream is None or bool(getattr(stream, "replayable", False))


def stream_size(stream: AsyncIterable[bytes]) -> int | None:
    """The byte count a streamed body promises, or ``None`` when unknown."""
    size = getattr(stream, "size", None)
    return size if isinstance(size, int) else None


def file_size(file: IO[bytes]) -> int | None:
    """Bytes left in an open file from its current position, or ``None`` if unknown
    (a pipe, a socket, an object without ``fileno``/``seek``)."""
    try:
        info = os.fstat(file.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        return None
    try:
        position = file.tell()
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return None
    if info is not None:
        return max(info.st_size - position, 0)
    try:
        end = file.seek(0, io.SEEK_END)
        file.seek(position)
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return None
    return max(end - position, 0)


def _seekable(file: IO[bytes]) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def check_binary(file: Any) -> None:
    """Refuse a text-mode file: its ``read`` returns ``str`` of unknown byte length."""
    if isinstance(file, io.TextIOBase) or "b" not in getattr(file, "mode", "b"):
        raise TypeError(
            f"{getattr(file, 'name', 'the file')!r} is open in text mode: open it with "
            "'rb' so its bytes are sent as they are"
        )


class FileBody(BodyStream):
    """A file's bytes, in :data:`CHUNK_SIZE` reads: a path (reopened every time the body
    is sent) or an open binary file (from its current position; sent again by seeking
    back when it is seekable)."""

    def __init__(self, source: str | os.PathLike[str] | IO[bytes]) -> None:
        if isinstance(source, str | os.PathLike):
            self._path: Path | None = Path(source)
            self._file: IO[bytes] | None = None
            try:
                self._size = self._path.stat().st_size
            except OSError as exc:
                raise FileNotFoundError(
                    f"cannot send {str(self._path)!r}: {exc.strerror or exc}"
                ) from None
            self._replayable = True
            self._start = 0
        else:
            check_binary(source)
            self._path = None
            self._file = source
            self._size = file_size(source)
            self._replayable = _seekable(source)
            self._start = source.tell() if self.replayable else 0

    @property
    def name(self) -> str | None:
        """The file's name without its directory, if it has one."""
        if self._path is not None:
            return self._path.name
        name = getattr(self._file, "name", None)
        return Path(name).name if isinstance(name, str) and name else None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._path is not None:
            with self._path.open("rb") as file:
                while chunk := file.read(CHUNK_SIZE):
                    yield chunk
            return
        source = self._file
        assert source is not None
        if self._replayable:
            source.seek(self._start)
        while chunk := source.read(CHUNK_SIZE):
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(f"the file's read() returned {type(chunk).__name__}, not bytes")
            yield bytes(chunk)


class IterBody(BodyStream):
    """A sync iterable of bytes (or str, sent as UTF-8), one-shot."""

    def __init__(self, chunks: Iterable[bytes | str]) -> None:
        self._chunks = chunks
        self._used = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._used:
            raise RuntimeError("this iterator body was sent already and cannot be sent again")
        self._used = True
        for chunk in self._chunks:
            if isinstance(chunk, str):
                yield chunk.encode()
            elif isinstance(chunk, bytes | bytearray | memoryview):
                yield bytes(chunk)
            else:
                raise TypeError(
                    f"content= iterators must yield bytes or str, not {type(chunk).__name__}"
                )
