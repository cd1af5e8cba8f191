"""``multipart/form-data`` request bodies (RFC 7578), streamed part by part.

``client.post(url, data={...}, files={...})`` builds a :class:`Multipart`; build one by
hand to control the parts. Files are never read into memory: a path or a file object
is read in :data:`~aioduct.bodies.CHUNK_SIZE` pieces as the body is sent. When every
part's size is known (bytes, paths, regular files) the body has a ``Content-Length``;
otherwise it is sent chunked.

Safety: field names and filenames are escaped as browsers do (WHATWG "multipart/form-
data encoding": ``"`` → ``%22``, CR → ``%0D``, LF → ``%0A``, and NUL → ``%00``), so a
filename cannot end the header line and inject headers (aiohttp CVE-2026-34514's class);
content types and extra part headers with control characters are refused. The boundary
is 128 random bits; parts given as bytes are checked not to contain it (a collision
means a new boundary), and a streamed file cannot guess it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Final, TypeAlias

from .bodies import BodyStream, FileBody, IterBody

__all__ = ["FileContent", "FileTypes", "Multipart"]

FileContent: TypeAlias = (
    "bytes | str | os.PathLike[str] | IO[bytes] | Iterable[bytes] | AsyncIterable[bytes]"
)
FileTypes: TypeAlias = (
    "FileContent | tuple[str | None, FileContent] | tuple[str | None, FileContent, str | None]"
    " | tuple[str | None, FileContent, str | None, Mapping[str, str]]"
)

_BCHARS: Final = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "
)
#: An in-memory part up to this size is sent in one piece with its head; a larger one is
#: sent as it is (not copied into a new buffer).
_JOIN_MAX: Final = 64 * 1024
_ESCAPES: Final = str.maketrans({'"': "%22", "\r": "%0D", "\n": "%0A", "\0": "%00"})


def _escape(name: str) -> str:
    return name.translate(_ESCAPES)


def _check_header_text(what: str, value: str) -> None:
    if any((c < " " and c != "\t") or c == "\x7f" for c in value):
        raise ValueError(
            f"multipart {what} {value!r} contains control characters (CR, LF, NUL...), "
            "which would let it end the part's header and inject others"
        )


def _check_boundary(boundary: str) -> None:
    if not 1 <= len(boundary) <= 70 or not set(boundary) <= _BCHARS or boundary.endswith(" "):
        raise ValueError(
            f"invalid multipart boundary {boundary!r}: RFC 2046 allows 1-70 characters "
            "of letters, digits and '()+_,-./:=? (not ending in a space)"
        )


def _text(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if value is None:
        return b""
    return str(value).encode()


class _Part:
    __slots__ = ("body", "head", "size")

    def __init__(self, head: str, body: bytes | BodyStream | AsyncIterable[bytes]) -> None:
        self.head = head
        self.body = body
        if isinstance(body, bytes):
            self.size: int | None = len(body)
        elif isinstance(body, BodyStream):
            self.size = body.size
        else:
            self.size = None


class Multipart(BodyStream):
    """A ``multipart/form-data`` body: an async iterable of bytes with a ``content_type``.

    ``data`` are plain fields (a mapping or pairs; a list value repeats the field),
    ``files`` file fields in httpx's forms: ``content``, ``(filename, content)``,
    ``(filename, content, content_type)`` or ``(filename, content, content_type,
    headers)``, where content is bytes, str, a path, a binary file object or an
    iterable of bytes. Pass it as ``content=`` with ``headers={"Content-Type":
    m.content_type}``, or let ``data=``/``files=`` build it.
    """

    def __init__(
        self,
        data: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        files: Mapping[str, FileTypes] | Iterable[tuple[str, FileTypes]] | None = None,
        *,
        boundary: str | None = None,
    ) -> None:
        if boundary is not None:
            _check_boundary(boundary)
        self._given_boundary = boundary
        self.boundary = boundary or secrets.token_hex(16)
        self._parts: list[_Part] = []
        for name, value in _pairs(data):
            values = value if isinstance(value, list | tuple) else [value]
            for item in values:
                self.add_field(name, item)
        for name, file in _pairs(files):
            self.add_file(name, file)

    # -- building -------------------------------------------------------------------------

    def add_field(self, name: str, value: Any) -> Multipart:
        """Add a plain field (str, bytes, numbers; ``True``/``False`` as true/false)."""
        head = f'Content-Disposition: form-data; name="{_escape(str(name))}"\r\n\r\n'
        self._add(_Part(head, _text(value)))
        return self

    def add_file(self, name: str, file: FileTypes) -> Multipart:
        """Add a file field, in any of the forms ``files=`` takes."""
        filename: str | None
        content_type: str | None = None
        headers: Mapping[str, str] = {}
        if isinstance(file, tuple):
            if not 2 <= len(file) <= 4:
                raise TypeError(
                    "a file tuple is (filename, content), (filename, content, content_type) "
                    f"or (filename, content, content_type, headers), not {len(file)} items"
                )
            filename, content = file[0], file[1]
            if len(file) > 2:
                content_type = file[2]
            if len(file) > 3:
                headers = file[3]
        else:
            content, filename = file, None
            filename = _default_filename(content)
        body = _file_body(content)
        if content_type is None:
            import mimetypes  # (only forms need it)

            guess = mimetypes.guess_type(filename)[0] if filename else None
            content_type = guess or "application/octet-stream"
        disposition = f'form-data; name="{_escape(str(name))}"'
        if filename is not None:
            disposition += f'; filename="{_escape(filename)}"'
        lines = [f"Content-Disposition: {disposition}\r\n"]
        _check_header_text("content type", content_type)
        lines.append(f"Content-Type: {content_type}\r\n")
        for key, value in headers.items():
            if key.lower() in ("content-disposition", "content-type"):
                continue
            _check_header_text("header name", key)
            _check_header_text("header value", value)
            if not key or ":" in key or " " in key:
                raise ValueError(f"invalid multipart header name {key!r}")
            lines.append(f"{key}: {value}\r\n")
        lines.append("\r\n")
        self._add(_Part("".join(lines), body))
        return self

    def _add(self, part: _Part) -> None:
        self._parts.append(part)
        if isinstance(part.body, bytes):
            self._check_collision(part.body)

    def _check_collision(self, data: bytes) -> None:
        """Keep the boundary out of the known content: pick another random one, or
        refuse one the caller chose."""
        while b"--" + self.boundary.encode() in data:
            if self._given_boundary is not None:
                raise ValueError(
                    f"the multipart boundary {self.boundary!r} occurs in a part's content; "
                    "choose another (or let aioduct pick a random one)"
                )
            self.boundary = secrets.token_hex(16)
            for part in self._parts:
                if isinstance(part.body, bytes) and b"--" + self.boundary.encode() in part.body:
                    break
            else:
                return

    # -- what the request needs -----------------------------------------------------------

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def size(self) -> int | None:
        """The body's exact length when every part's size is known, else ``None``."""
        delimiter = len(self.boundary) + 4  # "--" boundary CRLF
        total = delimiter + 2  # the close delimiter has "--" more
        for part in self._parts:
            if part.size is None:
                return None
            total += delimiter + len(part.head.encode()) + part.size + 2
        return total

    @property
    def replayable(self) -> bool:
        """Whether the body can be sent again (a 307/308 redirect): every part is bytes,
        a path or a seekable file."""
        return all(
            isinstance(p.body, bytes) or getattr(p.body, "replayable", False) for p in self._parts
        )

    async def __aiter__(self) -> AsyncIterator[bytes]:
        boundary = self.boundary.encode()
        for part in self._parts:
            head = b"--" + boundary + b"\r\n" + part.head.encode()
            body = part.body
            if isinstance(body, bytes):
                if len(body) <= _JOIN_MAX:
                    yield head + body + b"\r\n"  # one write for a small part
                else:  # a large one as it is: a copy of it would cost more than two writes
                    yield head
                    yield body
                    yield b"\r\n"
                continue
            yield head
            async for chunk in body:
                yield chunk
            yield b"\r\n"
        yield b"--" + boundary + b"--\r\n"

    async def aread(self) -> bytes:
        """The whole body in memory (for tests and small forms)."""
        return b"".join([chunk async for chunk in self])

    def __repr__(self) -> str:
        return f"<Multipart {len(self._parts)} parts, size={self.size}>"


def _pairs(items: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    if items is None:
        return []
    if isinstance(items, Mapping):
        return list(items.items())
    return list(items)


def _default_filename(content: Any) -> str | None:
    if isinstance(content, os.PathLike):
        return Path(content).name
    name = getattr(content, "name", None)
    if isinstance(name, str) and name and not name.startswith("<"):
        return Path(name).name
    return "upload"


def _file_body(content: Any) -> bytes | BodyStream | AsyncIterable[bytes]:
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content)
    if isinstance(content, str):
        return content.encode()
    if isinstance(content, os.PathLike) or hasattr(content, "read"):
        return FileBody(content)
    if isinstance(content, AsyncIterable):
        return content
    if isinstance(content, Iterable):
        return IterBody(content)
    raise TypeError(
        "a file's content must be bytes, str, a path, a binary file object or an "
        f"iterable of bytes, not {type(content).__name__}"
    )
