"""``aioduct crawl URLS -o OUT.jsonl``: fetch a list of URLs, one JSON result per line.

The input (a file, or ``-`` for stdin) is read lazily in chunks, so a ten-million-line
list never sits in memory; blank lines and ``#`` comments are skipped, and each URL's
job id is its index among the URL lines (0-based); a line that is not UTF-8 is an
``InvalidURL`` result of its own. Every URL gets exactly one line in the
output: the :class:`~aioduct.Result` as JSON (msgspec), errors included -- a failed fetch
is data, not a failure of the crawl. ``body`` is ``null`` unless ``--include-body``
(base64, as msgspec encodes bytes); ``--save-bodies DIR`` writes each body to
``DIR/<id // 10000>/<id>`` and adds that path as a ``body_path`` key. With the local
engine the workers encode the lines and write the bodies themselves
(:mod:`aioduct.cli._lines`): the parent only appends lines and records ids.

Interruptions and resuming (see :mod:`aioduct.cli._resume` for the details): the output
is the record of what is done. Finished results are written to it as soon as the event
loop idles (one ``write`` per batch), and a journal -- ``OUT.journal``, a small
checkpoint of "which URL indexes are done" plus the output size it describes -- is
replaced atomically about twice a second, always *after* the output it describes.
``--resume`` cuts a partial last line left by ``kill -9``, loads the checkpoint, reads
only the output lines written after it, and skips every URL already in the output.
Results in flight when the crawl stopped are the only ones fetched again; none is lost
and none is written twice. Ctrl-C (or SIGTERM) flushes what finished, writes the
journal and exits 130 (143).

Exit status: 0 when every URL has its result line (the journal is then removed), 1 on
bad usage or unreadable input, 130 on Ctrl-C (143 on SIGTERM); 3 for an error nobody
foresaw, reported in one line by :func:`aioduct.cli.main`. No error prints a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import queue
import signal
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .. import processing
from ..errors import AioductError
from ..jobs import Job, JobError, Result
from ..runner import SendEngine
from . import _lines, _resume
from ._progress import StatusLine, human_bytes

__all__ = ["add_parser", "crawl"]

PROG: Final = "aioduct crawl"
#: Bytes read from the input per chunk.
_CHUNK: Final = 1 << 16
#: Longest input line accepted (a file without newlines is not a URL list).
_MAX_LINE: Final = 1 << 20
#: Seconds between journal checkpoints.
_CHECKPOINT_EVERY: Final = 0.5
EXIT_OK: Final = 0
EXIT_USAGE: Final = 1
EXIT_SIGNAL: Final = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: ``--engine auto`` starts worker processes only for a list at least this long (or of
#: unknown length): below it, starting them costs more than they save.
AUTO_LOCAL_FROM: Final = 1000


class UsageError(Exception):
    """Bad arguments or input: reported as ``aioduct crawl: error: ...``, exit status 1."""


# -- arguments -----------------------------------------------------------------------------------


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "crawl",
        help="fetch a list of URLs into a JSON-lines file (resumable)",
        description="Fetch every URL of URLS_FILE (one per line; '-' reads stdin) and "
        "write one JSON result per URL to OUT. Errors are results too.",
    )
    parser.add_argument("urls", metavar="URLS_FILE", help="URL list, one per line; - for stdin")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="JSON-lines output")
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted crawl into OUT"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --resume: continue even though the journal was written for another "
        "input (its URLs are matched to the output by position)",
    )
    parser.add_argument(
        "--journal", metavar="PATH", help="checkpoint file (OUT.journal); removed when done"
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "send", "local"),
        default="auto",
        help="local: a worker process per CPU on io_uring; send: this process; "
        f"auto (default): send for a file of fewer than {AUTO_LOCAL_FROM:,} URLs or "
        "where io_uring is unusable, else local",
    )
    parser.add_argument(
        "--workers", type=_positive_int, metavar="N", help="local engine processes (all CPUs)"
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=64,
        metavar="N",
        help="requests in flight (per worker for the local engine; default 64)",
    )
    parser.add_argument(
        "--per-host-concurrency",
        type=_positive_int,
        metavar="N",
        help="at most N requests in flight per origin (scheme://host:port)",
    )
    parser.add_argument(
        "--per-host-rate", type=_positive_float, metavar="R", help="requests/s per origin"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=30.0,
        metavar="S",
        help="seconds per request, connect to last body byte (30)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_positive_float,
        metavar="S",
        help="seconds for TCP connect plus TLS handshake (30)",
    )
    parser.add_argument(
        "--retries",
        type=_count,
        default=0,
        metavar="N",
        help="retries of transient errors, 5xx, 429 (0)",
    )
    parser.add_argument(
        "--max-redirects", type=_count, metavar="N", help="redirect hops followed (10)"
    )
    parser.add_argument(
        "--no-follow", action="store_true", help="record redirects instead of following them"
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="add a request header (repeatable)",
    )
    parser.add_argument(
        "-A", "--user-agent", metavar="UA", help="the User-Agent header (aioduct/VERSION)"
    )
    parser.add_argument(
        "--cacert", metavar="FILE", help="trust the CA certificates in FILE (PEM) for https"
    )
    parser.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify https certificates"
    )
    parser.add_argument(
        "--ca-native", action="store_true", help="trust the operating system's CA store"
    )
    parser.add_argument(
        "--pinnedpubkey",
        metavar="sha256//HASH[;...]",
        help="accept only server keys with these base64 SPKI SHA-256 hashes",
    )
    parser.add_argument("--tlsv1.3", dest="tls13", action="store_true", help="speak TLS 1.3 only")
    parser.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST:PORT:ADDR[,ADDR]",
        help="connect to ADDR for HOST:PORT, as curl's --resolve (repeatable)",
    )
    parser.add_argument(
        "--doh-url", metavar="URL", help="resolve host names with DNS over HTTPS at URL"
    )
    parser.add_argument(
        "--http2-prior-knowledge",
        action="store_true",
        help="speak HTTP/2 to http:// URLs without negotiating (h2c)",
    )
    parser.add_argument(
        "--include-body", action="store_true", help="put bodies in OUT (base64 'body')"
    )
    parser.add_argument("--save-bodies", metavar="DIR", help="write each body to DIR/<n>/<id>")
    parser.set_defaults(run=run)
    return parser


def _number(text: str, kind: type[int] | type[float], test: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    ok = value >= 0 if test == ">= 0" else value > 0
    if not ok:
        raise argparse.ArgumentTypeError(f"must be {test}, not {text}")
    return value


def _positive_int(text: str) -> int:
    value: int = _number(text, int, "> 0")
    return value


def _count(text: str) -> int:
    value: int = _number(text, int, ">= 0")
    return value


def _positive_float(text: str) -> float:
    value: float = _number(text, float, "> 0")
    return value


def parse_headers(values: list[str], user_agent: str | None = None) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        name, colon, rest = value.partition(":")
        if not colon or not name.strip() or name != name.strip():
            raise UsageError(f"--header {value!r} must look like 'Name: value'")
        pairs.append((name, rest.strip()))
    if user_agent is not None:
        pairs = [p for p in pairs if p[0].lower() != "user-agent"]
        pairs.append(("User-Agent", user_agent))
    return tuple(pairs)


# -- input ---------------------------------------------------------------------------------------


class _ChunkReader:
    """Reads a file descriptor on a daemon thread, one chunk per request.

    A slow pipe or a terminal on stdin then never blocks the event loop (requests keep
    flowing while input trickles in), and a read stuck on a terminal cannot hold up the
    exit after Ctrl-C, as a thread of asyncio's default executor would.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._requests: queue.SimpleQueue[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[bytes]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="crawl-input")
        self._thread.start()

    async def read(self) -> bytes:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._requests.put((loop, future))
        return await future

    def _serve(self) -> None:
        while (request := self._requests.get()) is not None:
            loop, future = request
            try:
                data, error = os.read(self._fd, _CHUNK), None
            except OSError as exc:
                data, error = b"", exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_settle, future, data, error)

    def close(self) -> None:
        self._requests.put(None)


def _settle(future: asyncio.Future[bytes], data: bytes, error: OSError | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(data)


class UrlSource:
    """The URLs of an input file descriptor as ``(index, url, problem)``, read lazily.

    ``problem`` is ``None``, or why the line cannot be a URL (it is not UTF-8): that line
    gets an error result instead of ending the crawl.
    """

    def __init__(self, fd: int, name: str) -> None:
        self.name = name
        self._reader = _ChunkReader(fd)
        self.count = 0
        """URL lines read so far (the total once :attr:`exhausted`)."""
        self.exhausted = False

    async def __aiter__(self) -> AsyncIterator[tuple[int, str, str | None]]:
        tail = b""
        line_number = 0
        try:
            while True:
                try:
                    chunk = await self._reader.read()
                except OSError as exc:
                    raise UsageError(f"cannot read {self.name}: {exc.strerror or exc}") from None
                if chunk:
                    lines = (tail + chunk).split(b"\n")
                    tail = lines.pop()
                    if len(tail) > _MAX_LINE:
                        raise UsageError(
                            f"line {line_number + len(lines) + 1} of {self.name} is longer "
                            f"than {_MAX_LINE} bytes: expected one URL per line"
                        )
                else:
                    lines, tail = ([tail] if tail else []), b""
                for raw in lines:
                    line_number += 1
                    text = raw.strip()
                    if not text or text.startswith(b"#"):
                        continue
                    problem = None
                    try:
                        url = text.decode()
                    except UnicodeDecodeError as exc:
                        url = text.decode(errors="backslashreplace")
                        problem = (
                            f"line {line_number} of {self.name} is not UTF-8 ({exc.reason} "
                            f"at byte {exc.start}), so it cannot be a URL"
                        )
                    index = self.count
                    self.count += 1
                    yield index, url, problem
                if not chunk:
                    self.exhausted = True
                    return
        finally:
            self._reader.close()


def count_urls(path: Path, limit: int = 64 << 20, *, stop_at: int | None = None) -> int | None:
    """URL lines in a regular file up to ``limit`` bytes (for the progress total, and for
    ``--engine auto``, which only needs to know whether there are ``stop_at``)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode) or path.stat().st_size > limit:
            return None
        count = 0
        with open(path, "rb") as f:
            for line in f:
                if (text := line.strip()) and not text.startswith(b"#"):
                    count += 1
                    if count == stop_at:
                        break
        return count
    except OSError:
        return None


# -- output --------------------------------------------------------------------------------------


class Output:
    """Result lines, buffered until the loop idles, then written with one ``write``.

    The engine makes most lines where it fetched the page (:mod:`._lines`, run as its
    ``process=`` function): this only encodes the lines of Results without a response.
    """

    def __init__(self, fd: int, offset: int, *, include_body: bool, bodies: Path | None) -> None:
        self.fd = fd
        self.offset = offset
        """Bytes of the output file that hold whole result lines."""
        self.options: dict[str, Any] = {
            "include_body": include_body,
            "bodies": None if bodies is None else str(bodies),
        }
        """``_lines.line``'s keyword arguments, the same in the workers and here."""
        self._buffer = bytearray()

    def add(self, result: Result) -> None:
        line = result.value
        if type(line) is not bytes:
            error = result.error
            if error is not None and error.kind == processing.KIND:  # writing a body failed
                where = self.options["bodies"] or "output"
                raise OSError(errno.EIO, error.message, where)
            line = _lines.line(result, **self.options)
        self._buffer += line

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def flush(self) -> None:
        view = memoryview(self._buffer)
        written = 0
        try:
            while written < len(view):
                written += os.write(self.fd, view[written:])
        finally:
            view.release()
            del self._buffer[:written]
            self.offset += written


# -- the crawl -----------------------------------------------------------------------------------


@dataclass
class Tally:
    results: int = 0
    errors: int = 0
    bytes: int = 0
    skipped: int = 0
    """URLs already in the output before this run."""
    started: float = field(default_factory=time.perf_counter)

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.results / elapsed if elapsed > 0 else 0.0


class Crawl:
    """One run: input → engine → output, with checkpoints, progress and signals."""

    def __init__(
        self,
        engine: Any,
        source: UrlSource,
        output: Output,
        progress: _resume.Progress,
        *,
        journal: Path | None,
        total: int | None,
        status: bool | None = None,
    ) -> None:
        self.engine = engine
        self.source = source
        self.output = output
        self.progress = progress
        self.journal = journal
        self.total = total
        self.tally = Tally()
        self.signal: int | None = None
        self._flush_scheduled = False
        self._last_checkpoint = time.monotonic()
        self._status = StatusLine(self._render, enabled=status)

    async def _jobs(self) -> AsyncIterator[Job]:
        async for index, url, problem in self.source:
            if not self.progress.wants(index):
                self.tally.skipped += 1
            elif problem is not None:  # no request to make: its result is the error
                self._record(Result(id=index, url=url, error=JobError("InvalidURL", problem)))
            else:
                yield Job(url=url, id=index)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for signum in EXIT_SIGNAL:
            loop.add_signal_handler(signum, self._on_signal, signum, task)
        self._status.start()
        try:
            async with self.engine:
                lines = self.engine.amap(
                    self._jobs(), process=_lines.LINE, process_options=self.output.options
                )
                async for result in lines:
                    self._record(result)
        finally:
            self._status.stop()
            for signum in EXIT_SIGNAL:
                loop.remove_signal_handler(signum)
            self.checkpoint()

    def _on_signal(self, signum: int, task: asyncio.Task[Any]) -> None:
        if self.signal is not None:  # a second Ctrl-C: the output is already flushed
            os._exit(EXIT_SIGNAL[signal.Signals(signum)])
        self.signal = signum
        self.flush()
        task.cancel()

    def _record(self, result: Result) -> None:
        tally = self.tally
        tally.results += 1
        tally.bytes += result.size
        if result.error is not None:
            tally.errors += 1
        self.output.add(result)
        if isinstance(result.id, int):
            self.progress.done(result.id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write buffered lines; checkpoint when the last one is old enough."""
        self._flush_scheduled = False
        self.output.flush()
        if time.monotonic() - self._last_checkpoint >= _CHECKPOINT_EVERY:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Flush the output, then record the progress it holds (never the other order)."""
        self.output.flush()
        self._last_checkpoint = time.monotonic()
        if self.journal is not None:
            _resume.write_checkpoint(
                self.journal, self.progress.checkpoint(self.output.offset, self.source.name)
            )

    def _render(self) -> str:
        t = self.tally
        done = t.results + t.skipped
        total = self.source.count if self.source.exhausted else self.total
        of = f"/{total:,}" if total is not None else ""
        return (
            f"  {done:,}{of} URLs  {t.rate():,.0f} req/s  errors {t.errors:,}  "
            f"{human_bytes(t.bytes)}"
        )

    def summary(self, engine_name: str, destination: str) -> str:
        t = self.tally
        elapsed = time.perf_counter() - t.started
        before = f"; {t.skipped:,} were already done" if t.skipped else ""
        return (
            f"{PROG}: {t.results:,} results in {elapsed:.1f} s ({t.rate():,.0f} req/s), "
            f"{t.errors:,} errors, {human_bytes(t.bytes)} received{before}; "
            f"{engine_name} -> {destination}"
        )


# -- wiring --------------------------------------------------------------------------------------


def plan_engine(args: argparse.Namespace) -> tuple[str, dict[str, Any], str]:
    """Which engine the options ask for (``"send"`` or ``"local"``), its options, and why.

    Only checks, never starts anything: a refusal leaves no output file behind.
    """
    from .. import uring

    kind = args.engine
    why = ""
    if kind == "send" and args.workers is not None:
        raise UsageError(
            "--workers sets the local engine's processes; the send engine runs in this "
            "process (use --concurrency, or --engine local)"
        )
    if kind == "auto" and args.workers is None:
        count = count_urls(Path(args.urls), stop_at=AUTO_LOCAL_FROM) if args.urls != "-" else None
        if count is not None and count < AUTO_LOCAL_FROM:
            kind, why = "send", f"auto: {count:,} URLs, too few to start worker processes"
    reason = uring.unavailable_reason() if kind != "send" else None
    if kind == "local" and reason is not None:
        raise UsageError(
            f"--engine local runs its workers on io_uring, which is unusable here: {reason} "
            "Use --engine send (or auto, which falls back to it)."
        )
    if kind == "auto":
        if reason is not None:
            print(
                f"{PROG}: io_uring is unusable here ({reason.rstrip('.')}); "
                "using the send engine in this process",
                file=sys.stderr,
            )
            why = "auto: io_uring is unusable here"
        kind = "local" if reason is None else "send"
    options: dict[str, Any] = {
        "concurrency": args.concurrency,
        "per_host_concurrency": args.per_host_concurrency,
        "per_host_rate": args.per_host_rate,
        "retry": args.retries,
        "keep_body": args.include_body or args.save_bodies is not None,
        "timeout": args.timeout,
        "headers": parse_headers(args.header, args.user_agent),
        **client_options(args),
    }
    if kind == "local":
        options["workers"] = args.workers
    return kind, options, why


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ClientConfig options set by curl-style flags (only those given)."""
    options: dict[str, Any] = {}
    if args.cacert is not None and args.insecure:
        raise UsageError("--cacert and --insecure contradict each other: pick one")
    if args.cacert is not None:
        if not Path(args.cacert).exists():
            raise UsageError(f"--cacert {args.cacert}: no such file or directory")
        options["verify"] = args.cacert
    if args.insecure:
        options["verify"] = False
    if args.no_follow and args.max_redirects is not None:
        raise UsageError("--no-follow and --max-redirects contradict each other: pick one")
    if args.no_follow:
        options["follow_redirects"] = False
    if args.max_redirects is not None:
        options["max_redirects"] = args.max_redirects
    if args.connect_timeout is not None:
        options["connect_timeout"] = args.connect_timeout
    if args.http2_prior_knowledge:
        options["http2_prior_knowledge"] = True
    if args.ca_native:
        if args.cacert is not None or args.insecure:
            raise UsageError("--ca-native contradicts --cacert and --insecure: pick one")
        options["verify"] = "system"
    if args.pinnedpubkey is not None:
        options["pinned_sha256"] = args.pinnedpubkey
    if args.tls13:
        options["min_tls_version"] = "1.3"
    if args.resolve:
        options["resolve"] = parse_resolve(args.resolve)
    if args.doh_url is not None:
        options["dns_over_https"] = args.doh_url
    return options


def parse_resolve(values: list[str]) -> dict[str, str]:
    """curl's ``--resolve HOST:PORT:ADDR[,ADDR]`` entries as the ``resolve=`` option
    (``*`` as the port: every port; IPv6 addresses in brackets or bare)."""
    entries: dict[str, str] = {}
    for value in values:
        host, sep, rest = value.partition(":")
        port, sep2, addresses = rest.partition(":")
        if not (sep and sep2 and host and addresses and (port == "*" or port.isdigit())):
            raise UsageError(f"--resolve {value!r} must look like HOST:PORT:ADDRESS")
        key = host if port == "*" else f"{host}:{port}"
        entries[key] = ",".join(a.strip().strip("[]") for a in addresses.split(","))
    return entries


def build_engine(kind: str, options: dict[str, Any]) -> tuple[Any, str]:
    """The engine itself, and a short description of it for the summary."""
    try:
        if kind == "send":
            return SendEngine(**options), "send engine"
        from ..local.engine import LocalEngine

        engine = LocalEngine(**options)
    except (AioductError, ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    return engine, f"local engine ({engine.workers} workers)"


def _open_input(name: str) -> tuple[int, Path | None]:
    if name == "-":
        return sys.stdin.fileno(), None
    path = Path(name)
    try:
        return os.open(path, os.O_RDONLY), path
    except OSError as exc:
        raise UsageError(f"cannot read the URL list {name}: {exc.strerror or exc}") from None


def _open_output(args: argparse.Namespace) -> tuple[int, int, _resume.Progress, Path | None]:
    """``(fd, offset, progress, journal)`` for the output, repaired and loaded on --resume."""
    if args.output == "-":
        if args.resume:
            raise UsageError("--resume needs an output file, not stdout (-o -)")
        return sys.stdout.fileno(), 0, _resume.Progress(), None
    out = Path(args.output)
    journal = Path(args.journal) if args.journal else out.with_name(out.name + ".journal")
    if out.is_dir():
        raise UsageError(f"the output {out} is a directory; name a file")
    for path, what in ((out, "output"), (journal, "journal")):
        folder = path.parent
        if not folder.is_dir():
            raise UsageError(
                f"the {what} {path} is in {folder}, which is not a directory "
                f"(create it first: mkdir -p {folder})"
            )
    if journal.is_dir():
        raise UsageError(f"the journal {journal} is a directory; name a file")
    if args.resume:
        try:
            state = _resume.load(out, journal)
        except _resume.CorruptOutput as exc:
            raise UsageError(str(exc)) from None
        _report_resume(state, out, args.urls, force=args.force)
        progress, offset = state.progress, state.output_size
    else:
        if out.exists() and out.stat().st_size > 0:
            raise UsageError(
                f"{out} already exists: continue that crawl with --resume, "
                "or remove it to start over"
            )
        progress, offset = _resume.Progress(), 0
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise UsageError(f"cannot write the output {out}: {exc.strerror or exc}") from None
    if not args.resume:
        os.ftruncate(fd, 0)
        # A journal left by an older crawl must not describe this new output.
        try:
            _resume.write_checkpoint(journal, progress.checkpoint(0, args.urls))
        except OSError as exc:
            os.close(fd)
            out.unlink(missing_ok=True)  # created just now, and empty
            raise UsageError(f"cannot write the journal {journal}: {exc.strerror or exc}") from None
    return fd, offset, progress, journal


def _report_resume(
    state: _resume.Resumed, out: Path, input_name: str, *, force: bool = False
) -> None:
    notes = []
    if state.cut:
        notes.append(f"cut a partial last line ({state.cut} bytes)")
    if not state.checkpoint_used and state.output_size:
        notes.append("no usable journal: read the whole output")
    if state.input and not _same_input(state.input, input_name):
        if not force:
            raise UsageError(
                f"{out} is a crawl of {state.input}, not of {input_name}: results are "
                f"matched to URLs by their position in the list, so resuming with another "
                f"list would skip and mislabel URLs. Resume with {state.input}, or pass "
                f"--force if {input_name} lists the same URLs in the same order"
            )
        notes.append(
            f"the journal was written reading {state.input}; --force: assuming "
            f"{input_name} lists the same URLs in the same order"
        )
    done = state.progress.next - len(state.progress.pending)
    print(
        f"{PROG}: resuming {out}: {done:,} URLs done" + "".join(f"; {n}" for n in notes),
        file=sys.stderr,
    )


def _same_input(recorded: str, given: str) -> bool:
    if recorded == given:
        return True
    if "-" in (recorded, given):
        return False
    return Path(recorded).resolve() == Path(given).resolve()


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    if args.save_bodies is not None and Path(args.save_bodies).is_file():
        raise UsageError(f"--save-bodies {args.save_bodies} is a file; name a directory")
    kind, options, why = plan_engine(args)
    in_fd, in_path = _open_input(args.urls)
    out_fd = -1
    try:
        out_fd, offset, progress, journal = _open_output(args)
        engine, engine_name = build_engine(kind, options)
        if why:
            engine_name += f" ({why})"
        bodies = Path(args.save_bodies) if args.save_bodies else None
        output = Output(out_fd, offset, include_body=args.include_body, bodies=bodies)
        status = sys.stderr.isatty()
        total = count_urls(in_path) if status and in_path is not None else None
        source = UrlSource(in_fd, args.urls)
        crawl = Crawl(engine, source, output, progress, journal=journal, total=total, status=status)
        code = _drive(crawl)
    finally:
        for fd in {in_fd, out_fd} - {-1, 0, 1, 2}:
            os.close(fd)
    print(crawl.summary(engine_name, args.output), file=sys.stderr)
    if code == EXIT_OK and crawl.signal is not None:
        print(f"{PROG}: interrupted; continue with --resume", file=sys.stderr)
        code = EXIT_SIGNAL[signal.Signals(crawl.signal)]
    elif code == EXIT_OK and journal is not None:
        # Every URL has its line: the output says it all, nothing is left to resume.
        journal.unlink(missing_ok=True)
    return code


def _drive(crawl: Crawl) -> int:
    """Run the crawl on a fresh event loop; errors that end it early become a message."""
    from ..client import run as run_loop

    try:
        run_loop(crawl.run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        # Our signal handler cancelled the crawl (it flushed and checkpointed), or Ctrl-C
        # came before the handler was installed.
        crawl.signal = crawl.signal or signal.SIGINT
    except AioductError as exc:  # the engine broke (e.g. its workers cannot start)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the output or a body file cannot be written
        print(
            f"{PROG}: error: {exc.strerror or exc} ({exc.filename or 'output'}); what "
            "finished is saved: fix that and continue with --resume",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return EXIT_OK


def crawl(argv: list[str]) -> int:
    """Run ``aioduct crawl`` with ``argv`` (the words after ``crawl``)."""
    from . import main

    return main(["crawl", *argv])
