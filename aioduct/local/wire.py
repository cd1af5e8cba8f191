"""The local engine's wire format between the parent and its workers.

One Unix stream socket per worker carries frames::

    | length: u32 big-endian | kind: u8 | seq: u64 big-endian | msgpack payload |

``length`` counts everything after itself. ``kind`` says which Struct the payload is, so
each side decodes with one reused typed decoder per kind (no tagged unions leak into the
public :class:`~aioduct.Job`/:class:`~aioduct.Result` encodings). ``seq`` is the
parent's number for a job: a Result frame carries the ``seq`` of its Job, so the parent
matches them without trusting user-chosen ids to be unique.

Framing is pure: :class:`FrameReader` takes bytes and returns whole frames, and the
``encode_*`` helpers append frames to a ``bytearray`` (``Encoder.encode_into``, no
intermediate copies), so a batch of frames goes out in one ``send``.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgspec

from ..config import ClientConfig
from ..jobs import Job, Result
from ..runner import RunnerSettings

__all__ = [
    "FATAL",
    "HEARTBEAT",
    "HELLO",
    "JOB",
    "READY",
    "RESULT",
    "STOP",
    "FrameReader",
    "Hello",
    "Ready",
    "WireError",
    "append_frame",
]

#: Parent → worker: the worker's configuration (first frame).
HELLO: Final = 1
#: Parent → worker: one Job to run.
JOB: Final = 2
#: Parent → worker: finish the jobs in hand, then exit.
STOP: Final = 3
#: Worker → parent: configured and ready for jobs.
READY: Final = 10
#: Worker → parent: one Result (``seq`` of its Job).
RESULT: Final = 11
#: Worker → parent: the worker cannot run; the payload says why (a str). It exits next.
FATAL: Final = 12
#: Worker → parent: "my loop is alive", every ``Hello.heartbeat`` seconds.
HEARTBEAT: Final = 13

_HEADER: Final = struct.Struct(">IBQ")
HEADER_SIZE: Final = _HEADER.size  # 13
#: A frame larger than this is a protocol violation (bodies are capped well below it).
MAX_FRAME: Final = 1 << 31


class Hello(msgspec.Struct, frozen=True, kw_only=True):
    worker: int
    cpu: int | None
    config: ClientConfig
    settings: RunnerSettings
    heartbeat: float | None = None
    """Seconds between HEARTBEAT frames (None: none), so the parent can tell a wedged
    worker from a busy one."""


class Ready(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    runtime: str
    """The event loop the worker runs on (``"uring"``)."""


class WireError(Exception):
    """The byte stream is not a valid frame sequence (a bug or a corrupted peer)."""


_encoder = msgspec.msgpack.Encoder()
_PAYLOAD_TYPES: Final[dict[int, type]] = {
    HELLO: Hello,
    JOB: Job,
    STOP: type(None),
    READY: Ready,
    RESULT: Result,
    FATAL: str,
    HEARTBEAT: type(None),
}
_decoders: Final[dict[int, msgspec.msgpack.Decoder[Any]]] = {
    kind: msgspec.msgpack.Decoder(t) for kind, t in _PAYLOAD_TYPES.items()
}


def append_frame(buffer: bytearray, kind: int, seq: int, payload: object) -> None:
    """Encode ``payload`` as a frame at the end of ``buffer``."""
    start = len(buffer)
    buffer.extend(b"\0" * HEADER_SIZE)
    _encoder.encode_into(payload, buffer, start + HEADER_SIZE)
    _HEADER.pack_into(buffer, start, len(buffer) - start - 4, kind, seq)


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
    """Reassembles frames from a byte stream split anywhere."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, int, object]]:
        """Add received bytes; return the ``(kind, seq, payload)`` of every whole frame."""
        buffer = self._buffer
        buffer += data
        frames: list[tuple[int, int, object]] = []
        pos = 0
        end = len(buffer)
        view = memoryview(buffer)
        try:
            while end - pos >= HEADER_SIZE:
                length, kind, seq = _HEADER.unpack_from(buffer, pos)
                if length < HEADER_SIZE - 4 or length > MAX_FRAME:
                    raise WireError(f"bad frame length {length}")
                stop = pos + 4 + length
                if stop > end:
                    break
                frames.append((kind, seq, decode(kind, view[pos + HEADER_SIZE : stop])))
                pos = stop
        finally:
            view.release()
        if pos:
            del buffer[:pos]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)
