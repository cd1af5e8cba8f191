"""What a crawl has finished, kept so an interrupted crawl continues where it stopped.

The output file is the truth: a URL is done exactly when a whole result line for it is in
``OUT``. Job ids are URL indexes (0-based, counting only URL lines of the input), and the
set of finished indexes is kept as a :class:`Progress`: ``next`` (every index below it was
read from the input) and ``pending`` (the indexes below ``next`` that are not done yet).
Because the engines bound the jobs in flight, ``pending`` stays small whatever the input's
size, so the state of a ten-million-URL crawl fits in a few kilobytes.

The journal (``OUT.journal`` by default) is only a checkpoint of that state plus the byte
offset of ``OUT`` it describes, replaced atomically (write a temporary file, ``rename``)
after ``OUT`` was written up to that offset. Resuming therefore:

1. cuts ``OUT`` back to its last newline (a ``kill -9`` can leave half a line);
2. loads the checkpoint, if there is one that fits ``OUT`` (its offset is within the
   file and falls just after a newline), else starts from nothing and offset 0;
3. reads the lines of ``OUT`` after that offset (written after the checkpoint, or all of
   them) and marks their ids done.

Every crash ordering is covered: a line written but not yet in a checkpoint is found by
step 3; a checkpoint is never ahead of ``OUT`` (it is written after ``OUT``), and if it
somehow is (power loss reordering writes), step 2 ignores it and step 3 rebuilds from the
whole file; a journal half-written is impossible (``rename`` is atomic) and an unreadable
one is ignored the same way. What is lost is only what no line records: requests in
flight, which run again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

__all__ = [
    "Checkpoint",
    "CorruptOutput",
    "Progress",
    "Resumed",
    "load",
    "read_checkpoint",
    "truncate_partial_line",
    "write_checkpoint",
]

VERSION: Final = 1
_BLOCK: Final = 1 << 16


class CorruptOutput(Exception):
    """A whole line of the output is not a crawl result: resuming would guess."""


class Checkpoint(msgspec.Struct, kw_only=True):
    """The journal's content: crawl progress as of byte ``output_offset`` of the output."""

    version: int = VERSION
    output_offset: int
    next: int
    pending: list[int]
    input: str = ""
    """The input the crawl read (``-`` for stdin): a resume must read the same URLs."""


class _Line(msgspec.Struct):
    """The only field of a result line resuming needs (the decoder skips the rest)."""

    id: int


_line_decoder = msgspec.json.Decoder(_Line)
_checkpoint_decoder = msgspec.json.Decoder(Checkpoint)
_checkpoint_encoder = msgspec.json.Encoder()


class Progress:
    """Which URL indexes are done: all below ``next`` except those in ``pending``."""

    __slots__ = ("next", "pending")

    def __init__(self, next: int = 0, pending: set[int] | None = None) -> None:
        self.next = next
        self.pending: set[int] = pending if pending is not None else set()

    def wants(self, index: int) -> bool:
        """Whether the URL at ``index`` (read in input order) still needs a result.

        Marks it as started: from now on it counts as not done until :meth:`done`.
        """
        if index < self.next:
            return index in self.pending
        self.next = index + 1
        self.pending.add(index)
        return True

    def done(self, index: int) -> None:
        """A result line for ``index`` is in the output (or about to be, before a checkpoint)."""
        if index < self.next:
            self.pending.discard(index)
            return
        # A line for an index not read yet (only when replaying an output file): every
        # index in between was started before it, and is not done until its own line shows.
        self.pending.update(range(self.next, index))
        self.next = index + 1

    def is_done(self, index: int) -> bool:
        return index < self.next and index not in self.pending

    def checkpoint(self, output_offset: int, input_name: str) -> Checkpoint:
        return Checkpoint(
            output_offset=output_offset,
            next=self.next,
            pending=sorted(self.pending),
            input=input_name,
        )


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Replace the journal at ``path`` atomically (a reader sees the old or the new one)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(_checkpoint_encoder.encode(checkpoint) + b"\n")
    os.replace(tmp, path)


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The journal's checkpoint, or None when it is missing or unreadable."""
    try:
        data = path.read_bytes()
        checkpoint = _checkpoint_decoder.decode(data)
    except (OSError, msgspec.DecodeError):
        return None
    if checkpoint.version != VERSION or checkpoint.output_offset < 0:
        return None
    return checkpoint


def truncate_partial_line(path: Path) -> tuple[int, int]:
    """Cut ``path`` after its last newline; returns ``(new size, bytes cut)``."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - _BLOCK)
            f.seek(start)
            block = f.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end != size:
            f.truncate(end)
        return end, size - end


def _ends_line(path: Path, offset: int) -> bool:
    """Whether ``offset`` is the start of a line of ``path`` (0, or just after a newline)."""
    if offset == 0:
        return True
    with open(path, "rb") as f:
        f.seek(offset - 1)
        return f.read(1) == b"\n"


def _lines_from(path: Path, offset: int) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` of ``path`` from byte ``offset`` on (numbers from there)."""
    with open(path, "rb") as f:
        f.seek(offset)
        yield from enumerate(f, 1)


@dataclass
class Resumed:
    """The state a resumed crawl starts from and how it was found (for the user)."""

    progress: Progress
    output_size: int
    cut: int
    """Bytes of a partial last line removed from the output."""
    replayed: int
    """Result lines read from the output (those after the checkpoint)."""
    checkpoint_used: bool
    input: str


def load(output: Path, journal: Path | None) -> Resumed:
    """The progress recorded by ``output`` (and ``journal``), after repairing ``output``.

    Raises :class:`CorruptOutput` when a whole line after the checkpoint is not a result.
    """
    if not output.exists():
        return Resumed(Progress(), 0, 0, 0, False, "")
    size, cut = truncate_partial_line(output)
    checkpoint = read_checkpoint(journal) if journal is not None else None
    if checkpoint is not None and (
        checkpoint.output_offset > size or not _ends_line(output, checkpoint.output_offset)
    ):
        checkpoint = None  # describes another (or a longer) file: rebuild from the output
    if checkpoint is not None:
        progress = Progress(checkpoint.next, set(checkpoint.pending))
        offset = checkpoint.output_offset
    else:
        progress, offset = Progress(), 0
    replayed = 0
    for number, line in _lines_from(output, offset):
        try:
            index = _line_decoder.decode(line).id
        except msgspec.DecodeError as exc:
            where = f"byte {offset}, line {number} after it" if offset else f"line {number}"
            raise CorruptOutput(
                f"{output} ({where}) is not a crawl result line ({exc}): resuming would "
                f"guess which URLs are done. Remove that line (or start a new output file)."
            ) from None
        if index < 0:
            raise CorruptOutput(f"{output} line {number} has a negative id {index}")
        progress.done(index)
        replayed += 1
    return Resumed(
        progress,
        size,
        cut,
        replayed,
        checkpoint is not None,
        checkpoint.input if checkpoint else "",
    )
