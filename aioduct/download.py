"""Parallel range download into a file, resumable, that never writes bytes it did not ask for.

``await client.download(url, path, chunks=8)``:

1. **Probe** with ``Range: bytes=0-0``. A ``206`` with ``Content-Range: bytes 0-0/SIZE``
   says the server serves ranges and how big the file is; a ``200`` means it does not:
   that response's body is then the whole download, read as one stream.
2. **Pin the variant**: the probe's strong ``ETag`` (else its ``Last-Modified``) goes into
   ``If-Range`` on every range request, so a file that changes on the server answers
   ``200`` (the whole new file) instead of a range of the new file spliced into the old
   one. The download then restarts cleanly (at most :data:`MAX_RESTARTS` times).
3. **Fetch the ranges** still missing -- ``chunks`` at a time on an event loop (over one
   HTTP/2 connection or several HTTP/1.1 ones), one after another on
   :class:`~aioduct.BlockingClient` -- and write each with ``os.pwrite`` at its offset in
   ``PATH.part``, pre-sized to the full length.
4. **Verify every answer**: a ``206`` must carry exactly the ``Content-Range`` asked for
   (same first and last byte, same total), no content coding, and no more bytes than the
   range. Anything else stops the download with :class:`~aioduct.DownloadError` before a
   byte of it reaches the file (a server that ignores ``Range`` or answers another range
   must not corrupt the file: the "range/resume confusion" advisory class).
5. **Resume**: ``PATH.part.json`` records the size, the validator and the byte ranges
   written so far (saved every few MiB and whenever the download stops); the next call
   asks only for the rest, with ``If-Range``. On success ``PATH.part`` becomes ``PATH``
   and the state file is removed.

Responses are read raw (``Accept-Encoding: identity`` is sent): ranges are byte offsets
of the representation on the wire. File operations are plain blocking calls on purpose:
on a local disk they take microseconds, like the ``os.pwrite`` of each received chunk,
and the same code runs on the loop-less blocking driver.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from .errors import DownloadError
from .headers import Headers, HeadersLike

if TYPE_CHECKING:
    from .client import Client, Sender
    from .models import Response
    from .url import URL

__all__ = ["MAX_RESTARTS", "MIN_CHUNK", "Download", "download", "parse_content_range"]

#: A range smaller than this is not worth its own request: fewer chunks are used.
MIN_CHUNK: Final = 256 * 1024
#: How many times a download restarts because the file changed on the server.
MAX_RESTARTS: Final = 3
#: The state file is rewritten after this many new bytes (and when the download stops).
_SAVE_EVERY: Final = 8 * 1024 * 1024
#: On the local engine a range arrives buffered in this process: keep each one bounded.
_LOCAL_MAX_PIECE: Final = 8 * 1024 * 1024
_CONTENT_RANGE: Final = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19})")
_UNSATISFIED: Final = re.compile(r"bytes \*/([0-9]{1,19})")

Progress = Callable[[int, "int | None"], object]


@dataclass(frozen=True, slots=True)
class Download:
    """What :meth:`Client.download` did."""

    #: The finished file.
    path: Path
    #: Its size in bytes.
    size: int
    #: How many ranges ran at once (1: a single stream, the server serves no ranges).
    chunks: int
    #: Bytes that were already on disk from an earlier, interrupted download.
    resumed: int
    #: Seconds, probe to rename.
    elapsed: float
    #: The ETag or Last-Modified value the ranges were pinned to (None: single stream).
    validator: str | None = None


def parse_content_range(value: str | None) -> tuple[int, int, int] | None:
    """``bytes FIRST-LAST/TOTAL`` as ``(first, last, total)``; None if malformed.

    Strict ASCII digits (``int()`` alone would take ``+5``, ``1_0`` or non-ASCII digits),
    and ``first <= last < total``.
    """
    if value is None:
        return None
    m = _CONTENT_RANGE.fullmatch(value.strip(" \t"))
    if m is None:
        return None
    first, last, total = (int(g) for g in m.groups())
    if not first <= last < total:
        return None
    return first, last, total


class _Changed(Exception):
    """The file on the server is not the one the ranges were pinned to."""


class _State:
    """The sidecar file: size, validator and the ranges already written."""

    def __init__(self, path: Path, url: str, size: int, validator: tuple[str, str] | None):
        self.path = path
        self.url = url
        self.size = size
        self.validator = validator  # ("etag" | "last-modified", value)
        self.done: list[list[int]] = []  # merged [start, end) ranges
        self.unsaved = 0

    @classmethod
    def load(cls, path: Path, url: str) -> _State | None:
        try:
            data = json.loads(path.read_text())
            state = cls(path, data["url"], int(data["size"]), None)
            if data.get("validator"):
                kind, value = data["validator"]
                state.validator = (str(kind), str(value))
            state.done = [[int(a), int(b)] for a, b in data["done"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if state.url != url or any(not 0 <= a < b <= state.size for a, b in state.done):
            return None
        return state

    def save(self) -> None:
        data = {"url": self.url, "size": self.size, "validator": self.validator, "done": self.done}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)
        self.unsaved = 0

    def add(self, start: int, end: int) -> None:
        """Record ``[start, end)`` as written (merging neighbours)."""
        if start >= end:
            return
        merged: list[list[int]] = []
        for a, b in sorted([*self.done, [start, end]]):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.done = merged
        self.unsaved += end - start

    @property
    def written(self) -> int:
        return sum(b - a for a, b in self.done)

    def missing(self) -> list[tuple[int, int]]:
        gaps, pos = [], 0
        for a, b in self.done:
            if a > pos:
                gaps.append((pos, a))
            pos = max(pos, b)
        if pos < self.size:
            gaps.append((pos, self.size))
        return gaps


def _plan(gaps: list[tuple[int, int]], chunks: int, max_piece: int | None) -> list[tuple[int, int]]:
    """Split the missing ranges into about ``chunks`` pieces of at least MIN_CHUNK."""
    total = sum(b - a for a, b in gaps)
    count = max(1, min(chunks, -(-total // MIN_CHUNK)))
    target = max(1, -(-total // count))
    if max_piece is not None:
        target = min(target, max_piece)
    pieces = []
    for a, b in gaps:
        while a < b:
            end = min(b, a + target)
            pieces.append((a, end))
            a = end
    return pieces


def _validator(response: Response) -> tuple[str, str] | None:
    etag = response.headers.get("etag")
    if etag and not etag.startswith("W/"):  # If-Range takes strong validators only
        return ("etag", etag)
    modified = response.headers.get("last-modified")
    if modified:
        return ("last-modified", modified)
    return None


class _Run:
    """One attempt: the file descriptor, the state and the progress of every piece."""

    def __init__(
        self,
        client: Client,
        engine: Sender,
        url: URL | str,
        headers: Headers,
        state: _State,
        fd: int,
        progress: Progress | None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.url = url
        self.headers = headers
        self.state = state
        self.fd = fd
        self.progress = progress
        self.written = state.written

    def _request_headers(self, first: int, last: int) -> Headers:
        headers = self.headers.copy()
        headers["Range"] = f"bytes={first}-{last}"
        if self.state.validator is not None:
            headers["If-Range"] = self.state.validator[1]
        return headers

    async def fetch(self, start: int, end: int) -> None:
        """Fetch ``[start, end)`` and write it at its offset, checking every byte's place."""
        state = self.state
        options: dict[str, Any] = {"headers": self._request_headers(start, end - 1)}
        response = await self.client._send("GET", self.url, options, self.engine, stream=True)  # type: ignore[arg-type]
        try:
            if response.status == 200:
                # If-Range did not match: the file changed (or the server now ignores
                # Range). Either way these bytes do not belong at `start`.
                raise _Changed(f"a range request was answered {response.status} (whole file)")
            if response.status != 206:
                _unexpected(response, f"bytes {start}-{end - 1}")
            got = parse_content_range(response.headers.get("content-range"))
            if got != (start, end - 1, state.size):
                raise DownloadError(
                    f"asked for bytes {start}-{end - 1}/{state.size} but the server answered "
                    f"Content-Range {response.headers.get('content-range')!r}; nothing of it "
                    "was written (the server's range support is broken: download with "
                    "chunks=1)",
                    method="GET",
                    url=str(response.url),
                )
            _check_identity(response)
            if state.validator is not None and state.validator[0] == "etag":
                etag = response.headers.get("etag")
                if etag is not None and etag != state.validator[1]:
                    raise _Changed("the ETag changed between ranges")
            pos = recorded = start
            try:
                async for data in response.aiter_raw():
                    if pos + len(data) > end:
                        raise DownloadError(
                            f"the server sent more than the {end - start} bytes of range "
                            f"{start}-{end - 1}; the excess was not written",
                            method="GET",
                            url=str(response.url),
                        )
                    os.pwrite(self.fd, data, pos)
                    pos += len(data)
                    self._wrote(len(data))
                    if pos - recorded >= _SAVE_EVERY:  # a kill loses at most this much
                        state.add(recorded, pos)
                        recorded = pos
                        state.save()
            finally:
                state.add(recorded, pos)
            if pos != end:
                raise DownloadError(
                    f"range {start}-{end - 1} ended after {pos - start} of {end - start} bytes",
                    method="GET",
                    url=str(response.url),
                )
        finally:
            await response.aclose()

    def _wrote(self, n: int) -> None:
        self.written += n
        if self.progress is not None:
            self.progress(self.written, self.state.size)


def _unexpected(response: Response, what: str) -> None:
    response.raise_for_status()
    raise DownloadError(
        f"the server answered {response.status} {response.reason} to a request for {what}; "
        "expected 206 Partial Content or 200",
        method="GET",
        url=str(response.url),
    )


def _check_identity(response: Response) -> None:
    coding = response.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        raise DownloadError(
            f"the server sent a range with Content-Encoding {coding!r} although identity was "
            "asked for: its offsets would not be the file's",
            method="GET",
            url=str(response.url),
        )


async def download(
    client: Client,
    engine: Sender,
    url: URL | str,
    path: str | os.PathLike[str],
    *,
    chunks: int = 8,
    progress: Progress | None = None,
    headers: HeadersLike | None = None,
    resume: bool = True,
    parallel: bool = True,
) -> Download:
    """Download ``url`` to ``path`` (see the module docstring); ``parallel`` runs the
    ranges as concurrent tasks (needs an asyncio loop)."""
    if not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"chunks must be a positive integer, not {chunks!r}")
    started = perf_counter()
    target = Path(path)
    part = target.with_name(target.name + ".part")
    state_path = target.with_name(target.name + ".part.json")
    base = Headers(headers)
    for name in ("range", "if-range"):
        if name in base:
            raise ValueError(f"download() sets {name.title()} itself; do not pass it in headers=")
    base["Accept-Encoding"] = "identity"
    key = str(url)
    state = _State.load(state_path, key) if resume and part.exists() else None
    if state is None:
        with contextlib.suppress(FileNotFoundError):
            state_path.unlink()
    for _ in range(MAX_RESTARTS + 1):
        try:
            return await _attempt(
                client, engine, url, key, target, part, state_path, base, state,
                chunks, progress, parallel, started,
            )  # fmt: skip
        except _Changed:
            state = None
            for stale in (state_path, part):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
    raise DownloadError(
        f"the file changed on the server during each of {MAX_RESTARTS + 1} attempts (or the "
        "server answers range requests with the whole file): nothing was kept",
        method="GET",
        url=key,
    )


async def _attempt(
    client: Client,
    engine: Sender,
    url: URL | str,
    key: str,
    target: Path,
    part: Path,
    state_path: Path,
    base: Headers,
    state: _State | None,
    chunks: int,
    progress: Progress | None,
    parallel: bool,
    started: float,
) -> Download:
    probe_headers = base.copy()
    probe_headers["Range"] = "bytes=0-0"
    if state is not None and state.validator is not None:
        probe_headers["If-Range"] = state.validator[1]
    options: dict[str, Any] = {"headers": probe_headers}
    probe = await client._send("GET", url, options, engine, stream=True)  # type: ignore[arg-type]
    try:
        if probe.status == 200:
            if state is not None and state.validator is not None:
                raise _Changed("the probe's If-Range did not match")
            return await _single_stream(probe, target, part, state_path, progress, started)
        if probe.status == 416:
            m = _UNSATISFIED.fullmatch(probe.headers.get("content-range", "").strip())
            if m is not None and int(m.group(1)) == 0:  # an empty file has no byte 0
                part.write_bytes(b"")  # noqa: ASYNC240
                os.replace(part, target)
                with contextlib.suppress(FileNotFoundError):
                    state_path.unlink()  # noqa: ASYNC240
                return Download(target, 0, 1, 0, perf_counter() - started, None)
        if probe.status != 206:
            _unexpected(probe, "bytes 0-0")
        got = parse_content_range(probe.headers.get("content-range"))
        if got is not None and got[0] == 0 and got[1] == got[2] - 1 and got[1] > 0:
            # All of it for bytes=0-0 (allowed: a server may send more than asked,
            # RFC 9110 §14.2): this answer is the whole file, read as one stream.
            _check_identity(probe)
            return await _single_stream(probe, target, part, state_path, progress, started)
        if got is None or got[:2] != (0, 0):
            raise DownloadError(
                f"asked for bytes 0-0 but the server answered Content-Range "
                f"{probe.headers.get('content-range')!r}: its range support is broken "
                "(download with chunks=1)",
                method="GET",
                url=str(probe.url),
            )
        _check_identity(probe)
        size = got[2]
        validator = _validator(probe)
        await probe.aread()
    finally:
        await probe.aclose()
    if state is not None and (state.size != size or state.validator != validator):
        raise _Changed("the size or validator differs from the saved state")
    fresh = state is None
    if state is None:
        state = _State(state_path, key, size, validator)
    resumed = state.written
    flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if fresh else 0)
    fd = os.open(part, flags, 0o644)
    try:
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)
        from .engine import Engine

        max_piece = None if isinstance(engine, Engine) else _LOCAL_MAX_PIECE
        pieces = _plan(state.missing(), chunks, max_piece)
        width = min(chunks, len(pieces)) or 1
        run = _Run(client, engine, url, base, state, fd, progress)
        if progress is not None:
            progress(run.written, size)
        state.save()
        try:
            if parallel and len(pieces) > 1:
                await _in_parallel(run, pieces, width)
            else:
                width = 1
                for start, end in pieces:
                    await run.fetch(start, end)
        finally:
            if state.missing():
                state.save()
    finally:
        os.close(fd)
    os.replace(part, target)
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()  # noqa: ASYNC240
    return Download(
        target, size, width, resumed, perf_counter() - started, validator[1] if validator else None
    )


async def _in_parallel(run: _Run, pieces: list[tuple[int, int]], width: int) -> None:
    """Fetch ``pieces`` with ``width`` tasks; the first failure cancels the rest."""
    import asyncio

    queue = list(reversed(pieces))

    async def worker() -> None:
        while queue:
            start, end = queue.pop()
            await run.fetch(start, end)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(width):
                group.create_task(worker())
    except BaseExceptionGroup as group_error:
        # One error (the first cause) rather than a group: callers catch DownloadError.
        changed = [e for e in group_error.exceptions if isinstance(e, _Changed)]
        first = changed[0] if changed else group_error.exceptions[0]
        raise first from None


async def _single_stream(
    response: Response,
    target: Path,
    part: Path,
    state_path: Path,
    progress: Progress | None,
    started: float,
) -> Download:
    """The server ignored ``Range``: its 200 is the whole file, read as one stream."""
    length = response.headers.get("content-length")
    total = int(length) if length is not None and length.isdigit() and length.isascii() else None
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()  # noqa: ASYNC240
    written = 0
    with open(part, "wb") as out:  # noqa: ASYNC230
        if progress is not None:
            progress(0, total)
        async for data in response.aiter_raw():
            out.write(data)
            written += len(data)
            if progress is not None:
                progress(written, total)
    os.replace(part, target)
    return Download(target, written, 1, 0, perf_counter() - started, None)
