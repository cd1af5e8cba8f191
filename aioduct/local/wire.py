"""The local engine's wire format between the parent and its workers.

One Unix stream socket per worker carries frames::

    | length: u32 big-endian | kind: u8 | msgpack payload |

``length`` counts everything after itself. ``kind`` says which Struct the payload is, so
each side decodes with one reused typed decoder per kind (no tagged unions leak into the
public :class:`~aioduct.Job`/:class:`~aioduct.Result` encodings).

Jobs and Results travel in batches: a :class:`JobBatch` carries every job the parent
handed a worker since its last send, a :class:`ResultBatch` every Result a worker
finished in one turn of its loop (or, for a small batch, within a millisecond). The
parent's cost per result is what limits how many workers it can feed, and most of it is
per call, not per byte: one ``decode`` of a batch of 50 Results costs about a third of 50
single decodes plus their frame handling.
Each job carries the parent's sequence number for it (``JobBatch.seqs``), and its Result
comes back under the same number, so the parent matches them without trusting
user-chosen ids to be unique.

A Result's headers travel as numbers into a table of the pairs the worker has sent
before (:mod:`.pairs`): decoding the same strings again and again was a quarter of the
parent's work per small result.

Bodies of at least :attr:`SharedBodies.threshold` bytes do not travel in frames at all:
the worker writes them into a shared-memory ring (:mod:`.shm`) and the batch says where
(:attr:`ResultBatch.bodies`); the parent copies each out once and returns the space with a
``FREE`` frame.

Framing is pure: :class:`FrameReader` takes bytes and returns whole frames, and
:func:`append_frame` appends a frame to a ``bytearray`` (``Encoder.encode_into``, no
intermediate copies), so a batch of frames goes out in one ``send``.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgspec

from .. import processing
from ..config import ClientConfig
from ..jobs import Job, Result
from ..runner import RunnerSettings

__all__ = [
    "FATAL",
    "FREE",
    "HEARTBEAT",
    "HELLO",
    "JOBS",
    "LOADED",
    "PROCESS",
    "READY",
    "RESULTS",
    "STOP",
    "FrameReader",
    "Hello",
    "JobBatch",
    "Loaded",
    "Process",
    "Ready",
    "ResultBatch",
    "SharedBodies",
    "WireError",
    "append_frame",
]

#: Parent → worker: the worker's configuration (first frame).
HELLO: Final = 1
#: Parent → worker: a :class:`JobBatch` to run.
JOBS: Final = 2
#: Parent → worker: finish the jobs in hand, then exit.
STOP: Final = 3
#: Parent → worker: this many shared-memory bodies are copied out so far, in the order
#: the worker sent them (an int).
FREE: Final = 4
#: Parent → worker: import a ``process=`` function (a :class:`Process`).
PROCESS: Final = 5
#: Worker → parent: configured and ready for jobs.
READY: Final = 10
#: Worker → parent: a :class:`ResultBatch`.
RESULTS: Final = 11
#: Worker → parent: the worker cannot run; the payload says why (a str). It exits next.
FATAL: Final = 12
#: Worker → parent: "my loop is alive", every ``Hello.heartbeat`` seconds.
HEARTBEAT: Final = 13
#: Worker → parent: a :class:`Process` was imported, or why not (a :class:`Loaded`).
LOADED: Final = 14

_HEADER: Final = struct.Struct(">IB")
HEADER_SIZE: Final = _HEADER.size  # 5
#: A frame larger than this is a protocol violation.
MAX_FRAME: Final = 1 << 31


class SharedBodies(msgspec.Struct, frozen=True, kw_only=True):
    """The shared-memory ring a worker writes large bodies into (see :mod:`.shm`)."""

    fd: int
    """The memfd, inherited by the worker under the same number."""
    size: int
    threshold: int
    """Bodies of at least this many bytes go into the ring; smaller ones travel inline,
    where a frame costs less than the ring's bookkeeping."""


class Hello(msgspec.Struct, frozen=True, kw_only=True):
    worker: int
    cpu: int | None
    config: ClientConfig
    settings: RunnerSettings
    heartbeat: float | None = None
    """Seconds between HEARTBEAT frames (None: none), so the parent can tell a wedged
    worker from a busy one."""
    bodies: SharedBodies | None = None
    sys_path: list[str] = []
    """The parent's ``sys.path``: ``process=`` functions import in the worker from where
    the caller's own modules are (as ``multiprocessing``'s spawn start method does)."""


class Ready(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    runtime: str
    """The event loop the worker runs on (``"uring"``)."""


class JobBatch(msgspec.Struct, array_like=True):
    """Jobs for one worker, ``seqs[i]`` being the parent's number for ``jobs[i]``."""

    seqs: list[int]
    jobs: list[Job]
    processes: dict[int, int] = {}
    """``{index: process id}`` for the jobs a ``process=`` function applies to."""
    crashes: dict[int, int] = {}
    """``{index: workers that died holding it}`` for jobs sent again: the worker counts
    those tries in ``Result.attempts`` before anything (a process function, an encoded
    output line) sees the Result."""


class ResultBatch(msgspec.Struct, array_like=True):
    """Results a worker finished, ``seqs[i]`` being the number of the job of ``results[i]``."""

    seqs: list[int]
    results: list[Result]
    bodies: list[tuple[int, int, int]] = []
    """``(index, ring position, length)`` of each body left in shared memory."""
    headers: list[list[int]] = []
    """Each Result's header pairs by number (see :mod:`.pairs`); its own ``headers`` is
    then empty on the wire."""
    pairs_from: int = 0
    pairs: list[tuple[str, str]] = []
    """The pairs numbered since the last batch, numbers ``pairs_from`` and on."""


class Process(msgspec.Struct, frozen=True, array_like=True):
    """Import ``spec`` as process function ``id``."""

    id: int
    spec: processing.Spec


class Loaded(msgspec.Struct, frozen=True, array_like=True):
    """The outcome of a :class:`Process` frame: ``error`` is None when it imported."""

    id: int
    error: str | None = None


class WireError(Exception):
    """The byte stream is not a valid frame sequence (a bug or a corrupted peer)."""


_encoder = msgspec.msgpack.Encoder()
_PAYLOAD_TYPES: Final[dict[int, Any]] = {
    HELLO: Hello,
    JOBS: JobBatch,
    STOP: None,
    FREE: int,
    PROCESS: Process,
    READY: Ready,
    RESULTS: ResultBatch,
    FATAL: str,
    HEARTBEAT: None,
    LOADED: Loaded,
}
_decoders: Final[dict[int, msgspec.msgpack.Decoder[Any]]] = {
    kind: msgspec.msgpack.Decoder(t) for kind, t in _PAYLOAD_TYPES.items()
}


def append_frame(buffer: bytearray, kind: int, payload: object) -> None:
    """Encode ``payload`` as a frame at the end of ``buffer``."""
    start = len(buffer)
    buffer += b"\0\0\0\0\0"
    _encoder.encode_into(payload, buffer, start + HEADER_SIZE)
    _HEADER.pack_into(buffer, start, len(buffer) - start - 4, kind)


def decode(kind: int, payload: memoryview | bytes) -> object:
    """The payload of a ``kind`` frame as its Struct (raises WireError if malformed)."""
    decoder = _decoders.get(kind)
    if decoder is None:
        raise WireError(f"unknown frame kind {kind}")
    try:
        return decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise WireError(f"malformed frame of kind {kind}: {exc}") from None


class FrameReader:
    """Reassembles frames from a byte stream split anywhere.

    Whole frames are decoded straight from the bytes handed in; only the start of a
    frame that is still incomplete is copied, to wait for the rest.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, object]]:
        """Add received bytes; return the ``(kind, payload)`` of every whole frame."""
        buffer = self._buffer
        if buffer:
            buffer += data
            data = buffer
        frames: list[tuple[int, object]] = []
        pos = 0
        end = len(data)
        with memoryview(data) as view:
            while end - pos >= HEADER_SIZE:
                length, kind = _HEADER.unpack_from(data, pos)
                if length < 1 or length > MAX_FRAME:
                    raise WireError(f"bad frame length {length}")
                stop = pos + 4 + length
                if stop > end:
                    break
                frames.append((kind, decode(kind, view[pos + HEADER_SIZE : stop])))
                pos = stop
            if data is not buffer and pos < end:
                buffer += view[pos:]
        if data is buffer:
            del buffer[:pos]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)
