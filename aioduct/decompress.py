"""Content-Encoding decoders: gzip, deflate, br and zstd, alone or stacked. Pure, no I/O.

A response body is decoded incrementally and **no decoder call may return more than a
bounded amount of output**, whatever its input: a few kilobytes of gzip can expand to
gigabytes (a decompression bomb), so a limit on the decoded size is only a defence if the
decoder stops producing output before it is reached -- not after it allocated it all
(urllib3 CVE-2025-66471, brotli CVE-2025-6176). Each codec's bounded-output API:

* gzip, deflate: ``zlib.decompressobj().decompress(data, max_length)``; what it did not
  consume waits in ``unconsumed_tail``.
* br: ``brotli.Decompressor.process(data, output_buffer_limit=...)`` (brotli >= 1.2);
  pending output is drained by calls with no input, one bounded piece each. The
  buffer stops growing once it reaches the limit: a call returns at most about twice
  the limit (its blocks grow from 32 KiB).
* zstd: python-zstandard's streaming decompressor has no output limit, so the input is
  fed in slices of :data:`_ZSTD_SLICE` bytes. A zstd block decodes to at most 128 KiB
  and takes at least 4 bytes on the wire (an RLE block), so one slice yields at most
  ``(_ZSTD_SLICE / 4 + 1) * 128 KiB`` (4.1 MiB). Its window is capped at 8 MiB, the
  most RFC 9659 §3 lets an HTTP server require.

gzip and deflate go through ``zlib_ng`` when it is installed (``aioduct[speedups]``):
the same API as the standard library's ``zlib`` (and the same streams) with an inflate
about 1.6 times as fast, which is most of the CPU of a compressed response.

Stacked codings (``Content-Encoding: gzip, br`` means gzip was applied first) are undone
last to first, each stage passing bounded pieces to the next, so a chain holds at most one
piece per stage. Like urllib3 (CVE-2025-66418) and curl, a chain of more than
:data:`MAX_CODINGS` codings is refused: each stage costs memory and CPU the server
chooses. A coding this module does not know leaves the whole body as it is (like httpx):
the caller sees the bytes the server sent and the ``Content-Encoding`` that says so.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Final, Protocol

from .errors import BodyTooLarge, DecodeError

if TYPE_CHECKING:
    # Imported when a body needs them: zstandard alone costs ~4 ms at startup.
    import zstandard

__all__ = [
    "ACCEPT_ENCODING",
    "MAX_CODINGS",
    "STEP",
    "ContentDecoder",
    "decode_body",
    "response_codings",
]

#: What ``decompress=True`` asks for: every coding this module decodes.
ACCEPT_ENCODING: Final = "gzip, deflate, br, zstd"
#: Longest chain of content codings accepted (urllib3 and curl allow 5).
MAX_CODINGS: Final = 5
#: The most output one decoder call produces (zstd aside: see the module docstring).
STEP: Final = 1024 * 1024
#: zstd input fed per call, which bounds its output per call (see the module docstring).
_ZSTD_SLICE: Final = 128
_ZSTD_MAX_WINDOW: Final = 8 * 1024 * 1024
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC: Final = b"\x1f\x8b"
_GZIP_WBITS: Final = zlib.MAX_WBITS | 16


def _zlib_backend() -> ModuleType:
    try:
        from zlib_ng import zlib_ng  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return zlib
    return zlib_ng  # type: ignore[no-any-return, unused-ignore]


#: The zlib module gzip and deflate are decoded with (tests swap it).
_zlib: ModuleType = _zlib_backend()


class _Stage(Protocol):
    """One coding being undone."""

    def decode(self, data: bytes, step: int) -> Iterator[bytes]:
        """Consume all of ``data``, yielding output in pieces of about ``step`` bytes."""

    def finish(self) -> Iterator[bytes]:
        """End of input: yield what is left, raise :class:`DecodeError` if truncated."""


class _ZlibStage:
    """gzip (with further gzip members, as gzip(1) writes them) or deflate."""

    __slots__ = ("_coding", "_d", "_error", "_head", "_zlib")

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._head = b""
        self._zlib = _zlib
        self._error: type[Exception] = _zlib.error
        if coding == "deflate":
            # RFC 9110 §8.4.1.2 says zlib-wrapped, but servers also send raw deflate and
            # browsers accept both: which one is known from the first two bytes.
            self._d: zlib._Decompress | None = None  # (chosen with the first two bytes)
        else:
            self._d = _zlib.decompressobj(_GZIP_WBITS)

    def decode(self, data: bytes, step: int) -> Iterator[bytes]:
        if self._head:
            data, self._head = self._head + data, b""
        d = self._d
        if d is None:
            if len(data) < 2:
                self._head = data
                return
            zlib_header = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
            d = self._d = self._zlib.decompressobj(wbits)
        try:
            while data:
                if d.eof:  # data is what follows the stream
                    if self._coding == "deflate":
                        return  # ignored, as zlib does
                    if len(data) < 2 and _GZIP_MAGIC.startswith(data):
                        self._head = data  # perhaps the next member: wait for more
                        return
                    if not data.startswith(_GZIP_MAGIC):
                        return  # ignored, as gzip(1) does ("trailing garbage ignored")
                    d = self._d = self._zlib.decompressobj(_GZIP_WBITS)  # the next member
                out = d.decompress(data, step)
                data = d.unused_data if d.eof else d.unconsumed_tail
                if out:
                    yield out
                while len(out) == step and not data and not d.eof:
                    # max_length stopped it: output may be pending with no input left.
                    out = d.decompress(b"", step)
                    data = d.unused_data if d.eof else d.unconsumed_tail
                    if out:
                        yield out
        except self._error as exc:
            raise _corrupt(self._coding, exc) from None

    def finish(self) -> Iterator[bytes]:
        if self._d is None or not self._d.eof:
            raise DecodeError(f"{self._coding} body is truncated (the stream does not end)")
        yield from ()


class _BrotliStage:
    __slots__ = ("_d", "_error", "_step")

    def __init__(self) -> None:
        import brotli  # type: ignore[import-untyped]

        self._d = brotli.Decompressor()
        self._error: type[Exception] = brotli.error
        self._step = STEP

    def decode(self, data: bytes, step: int) -> Iterator[bytes]:
        # Output can stay pending after a call even once the decoder accepts input
        # again: drain it, one bounded piece per call, until a call yields nothing.
        self._step = step
        d = self._d
        try:
            out = d.process(data, output_buffer_limit=step)
            while out:
                yield out
                if d.is_finished():
                    return
                out = d.process(b"", output_buffer_limit=step)
        except self._error as exc:
            raise _corrupt("br", exc) from None

    def finish(self) -> Iterator[bytes]:
        d = self._d
        try:
            while not d.is_finished():
                out = d.process(b"", output_buffer_limit=self._step)
                if not out:
                    raise DecodeError("br body is truncated (the stream does not end)")
                yield out
        except self._error as exc:
            raise _corrupt("br", exc) from None


class _ZstdStage:
    """zstd, one frame after another (RFC 8878 allows several in a row)."""

    __slots__ = ("_d", "_error", "_tail")

    def __init__(self) -> None:
        import zstandard

        self._error: type[Exception] = zstandard.ZstdError
        self._d = _zstd_frame()
        #: The start of a next frame's magic number, split from its rest by the network.
        self._tail = b""

    def decode(self, data: bytes, step: int) -> Iterator[bytes]:
        if self._tail:
            data, self._tail = self._tail + data, b""
        view = memoryview(data)
        pos, end = 0, len(data)
        d = self._d
        try:
            while pos < end:
                if d.eof:
                    if end - pos < len(_ZSTD_MAGIC) and _ZSTD_MAGIC.startswith(data[pos:]):
                        self._tail = data[pos:]
                        return
                    if not data.startswith(_ZSTD_MAGIC, pos):
                        return  # bytes after the last frame are ignored
                    d = self._d = _zstd_frame()
                piece = view[pos : pos + _ZSTD_SLICE]
                pos += len(piece)
                out = d.decompress(piece)
                if d.eof:
                    pos -= len(d.unused_data)  # the start of what follows the frame
                if out:
                    yield out
        except self._error as exc:
            raise _corrupt("zstd", exc) from None

    def finish(self) -> Iterator[bytes]:
        if not self._d.eof:
            raise DecodeError("zstd body is truncated (the frame does not end)")
        yield from ()


def _zstd_frame() -> zstandard.ZstdDecompressionObj:
    import zstandard

    # A decompressor per frame: decompressobj()s of one ZstdDecompressor share its context.
    return zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW).decompressobj()


def _corrupt(coding: str, exc: Exception) -> DecodeError:
    return DecodeError(f"corrupt {coding} body: {exc}")


def _stage(coding: str) -> _Stage:
    if coding == "br":
        return _BrotliStage()
    if coding == "zstd":
        return _ZstdStage()
    return _ZlibStage(coding)


_ZLIB_CODINGS: Final = frozenset(("gzip", "x-gzip", "deflate"))
_KNOWN: Final = _ZLIB_CODINGS | {"br", "zstd"}


def parse_codings(values: Iterable[str]) -> tuple[str, ...]:
    """The codings to undo from ``Content-Encoding`` header values, in the order applied.

    ``()`` when there is nothing to do: no coding, only ``identity``, or a coding this
    module does not know (the body is then left as it is). Raises :class:`DecodeError`
    for a chain longer than :data:`MAX_CODINGS`, counted across all header lines (a cap
    per line is bypassed by repeating the header: curl CVE-2023-23916).
    """
    codings = [c for value in values for part in value.split(",") if (c := part.strip().lower())]
    if len(codings) > MAX_CODINGS:
        raise DecodeError(f"too many content codings in the chain: {len(codings)} > {MAX_CODINGS}")
    codings = [c for c in codings if c != "identity"]
    if not all(c in _KNOWN for c in codings):
        return ()
    return tuple(codings)


def response_codings(method: str, status: int, values: list[str]) -> tuple[str, ...]:
    """The codings to undo on a response body; ``()`` where there is no body to decode.

    A response to HEAD, a 1xx, 204 or 304 has no body, whatever its ``Content-Encoding``
    says (it describes the representation a GET would have returned).
    """
    if not values or method == "HEAD" or status < 200 or status in (204, 304):
        return ()
    return parse_codings(values)


class ContentDecoder:
    """Undoes a chain of codings incrementally, never yielding more than a bounded piece.

    ``decode(data)`` and, at the end of the body, ``finish()`` yield the decoded body in
    pieces of at most about ``step`` bytes; a caller that counts them can stop at a size
    limit having held one piece per stage.

    A stage that received no bytes at all decodes to an empty body: servers send an
    empty body with ``Content-Encoding: gzip`` (to a conditional or range request, say),
    and clients accept it.
    """

    __slots__ = ("_fed", "_stages", "_step")

    def __init__(self, codings: Sequence[str], step: int = STEP) -> None:
        self._stages = [_stage(coding) for coding in reversed(codings)]
        self._fed = [False] * len(self._stages)
        self._step = step

    def decode(self, data: bytes) -> Iterator[bytes]:
        return self._through(0, data)

    def finish(self) -> Iterator[bytes]:
        for index, stage in enumerate(self._stages):
            if self._fed[index]:
                for piece in stage.finish():
                    yield from self._through(index + 1, piece)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._stages):
            yield data
            return
        if data:
            self._fed[index] = True
            for piece in self._stages[index].decode(data, self._step):
                yield from self._through(index + 1, piece)


def decode_body(body: bytes, codings: Sequence[str], max_size: int | None) -> bytes:
    """A whole (buffered) body decoded; :class:`BodyTooLarge` past ``max_size`` decoded
    bytes, raised as soon as the decoded size passes it.

    A gzip body -- the common case -- is one zlib call allowed one byte more than the
    limit (``max_length`` is exact); other codings, chains, and whatever that call
    leaves undone (gzip members after the first, a stream that does not end) go in steps
    of at most :data:`STEP`. Memory stays under about twice the limit (the pieces and
    their join).
    """
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip"):
        d = _zlib.decompressobj(_GZIP_WBITS)
        try:
            out = d.decompress(body, 0 if max_size is None else max_size + 1)
        except _zlib.error:
            pass  # the step-by-step decoder says what is wrong
        else:
            if max_size is not None and len(out) > max_size:
                raise _too_large(max_size)
            if d.eof and not d.unused_data:
                return out  # type: ignore[no-any-return]
    step = STEP if max_size is None else min(max_size + 1, STEP)
    decoder = ContentDecoder(codings, step)
    pieces: list[bytes] = []
    size = 0
    for chunk in (decoder.decode(body), decoder.finish()):
        for piece in chunk:
            size += len(piece)
            if max_size is not None and size > max_size:
                raise _too_large(max_size)
            pieces.append(piece)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _too_large(max_size: int) -> BodyTooLarge:
    return BodyTooLarge(f"decoded response body exceeds max_body_size={max_size} bytes")
