"""Where a cache keeps its responses: in memory, or in a directory that outlives the process.

A store maps a primary key (the request URL) to the list of stored variants of that
resource (:class:`Entry`, one per secondary key: the request fields its ``Vary`` names).
Both stores are bounded (bytes and keys, least recently used evicted first) and
thread-safe: a :class:`~aioduct.BlockingClient` shares one cache between threads.

The directory store writes each key's variants to one file, through a temporary file
renamed over the old one, so a reader sees the old or the new list and never half of
one. A file that does not decode -- truncated by a crash, corrupted on disk, or written
by another version -- is a miss, and is removed.
"""

from __future__ import annotations

import collections
import hashlib
import os
import secrets
import struct
import threading
import zlib
from pathlib import Path
from typing import Final, Protocol

import msgspec

__all__ = ["DirectoryStore", "Entry", "MemoryStore", "Store"]


class Entry(msgspec.Struct, array_like=True, frozen=True):
    """One stored response (a variant of a resource)."""

    url: str
    status: int
    reason: str
    http_version: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    request_time: float
    """When the request that fetched (or last validated) it was sent (epoch seconds)."""
    response_time: float
    """When its response (or the 304 that last validated it) arrived."""
    vary: tuple[tuple[str, str | None], ...] | None = None
    """The request fields named by its ``Vary`` and their values when it was stored."""
    auth: str = ""
    """A digest of the request's Authorization (private cache: served only to the same
    credentials); never the credentials themselves."""

    @property
    def size(self) -> int:
        """Roughly the bytes it holds: its body and header text."""
        return len(self.body) + sum(len(n) + len(v) for n, v in self.headers) + 128


class Store(Protocol):
    """What the cache needs from a store. Every method is safe to call from any thread."""

    def load(self, key: str) -> list[Entry]:
        """The variants stored under ``key`` (empty if none), most recently stored first."""

    def save(self, key: str, entries: list[Entry]) -> None:
        """Replace the variants under ``key`` (an empty list removes the key)."""

    def clear(self) -> None: ...

    def __len__(self) -> int:
        """Number of keys stored."""


def _entries_size(entries: list[Entry]) -> int:
    return sum(e.size for e in entries)


class MemoryStore:
    """Variants in a dict, bounded by total bytes and number of keys (LRU eviction)."""

    def __init__(self, max_size: int, max_entries: int) -> None:
        self.max_size = max_size
        self.max_entries = max_entries
        self._items: collections.OrderedDict[str, tuple[list[Entry], int]] = (
            collections.OrderedDict()
        )
        self._bytes = 0
        self._lock = threading.Lock()

    def load(self, key: str) -> list[Entry]:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return []
            self._items.move_to_end(key)
            return list(item[0])

    def save(self, key: str, entries: list[Entry]) -> None:
        size = _entries_size(entries)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if not entries or size > self.max_size:
                return
            self._items[key] = (list(entries), size)
            self._bytes += size
            while self._bytes > self.max_size or len(self._items) > self.max_entries:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._bytes


_MAGIC: Final = b"aioduct-cache/1\n"
_HEAD: Final = struct.Struct(">IQ")  # crc32 of the payload, payload length
_SUFFIX: Final = ".entry"
_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(tuple[str, list[Entry]])


class DirectoryStore:
    """Variants in files under ``path``, one file per key, bounded like :class:`MemoryStore`.

    Writes are atomic (a temporary file in the same directory, then ``os.replace``);
    every file carries a checksum of its contents and the key it was written for, so a
    corrupted, truncated or foreign file reads as a miss and is deleted. Files are not
    fsynced: after a power loss an entry may be missing or old, never wrong (it is a
    cache). The least recently used files go first when a bound is passed; at start
    the order is taken from the files' modification times.

    Several processes may share a directory: each file is replaced whole, so writers of
    different URLs never undo each other's work, and a file another process wrote is
    found when it is asked for (each process bounds the files it knows of).
    """

    def __init__(self, path: str | os.PathLike[str], max_size: int, max_entries: int) -> None:
        self.path = Path(path)
        self.max_size = max_size
        self.max_entries = max_entries
        self._lock = threading.Lock()
        #: file name -> bytes, least recently used first
        self._files: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._bytes = 0
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(
                f"cannot use {str(self.path)!r} as a cache directory ({exc.strerror or exc}); "
                "pass a writable directory to aioduct.Cache(path)"
            ) from None
        found = []
        for item in os.scandir(self.path):
            if item.name.startswith(".tmp-"):
                _unlink(item.path)  # left by a process that died while writing
            elif item.name.endswith(_SUFFIX) and item.is_file():
                stat = item.stat()
                found.append((stat.st_mtime, item.name, stat.st_size))
        for _mtime, name, size in sorted(found):
            self._files[name] = size
            self._bytes += size
        with self._lock:
            self._evict()

    @staticmethod
    def _name(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest() + _SUFFIX

    def load(self, key: str) -> list[Entry]:
        name = self._name(key)
        with self._lock:
            # Not in the index may still be on disk: another process (or Cache object)
            # sharing the directory wrote it since this one looked.
            file = self.path / name
            try:
                data = file.read_bytes()
            except OSError:
                self._forget(name)
                return []
            entries = _decode(data, key)
            if entries is None:  # damaged: a miss, and gone
                _unlink(file)
                self._forget(name)
                return []
            if name in self._files:
                self._files.move_to_end(name)
            else:
                self._files[name] = len(data)
                self._bytes += len(data)
                self._evict()
            return entries

    def save(self, key: str, entries: list[Entry]) -> None:
        name = self._name(key)
        file = self.path / name
        with self._lock:
            if not entries:
                _unlink(file)
                self._forget(name)
                return
            payload = _ENCODER.encode((key, entries))
            data = _MAGIC + _HEAD.pack(zlib.crc32(payload), len(payload)) + payload
            if len(data) > self.max_size:
                _unlink(file)
                self._forget(name)
                return
            temp = self.path / f".tmp-{secrets.token_hex(8)}"
            try:
                with open(temp, "xb") as out:
                    out.write(data)
                os.replace(temp, file)
            except OSError:
                _unlink(temp)
                return  # a full or read-only disk costs the entry, not the request
            self._forget(name)
            self._files[name] = len(data)
            self._bytes += len(data)
            self._evict()

    def _forget(self, name: str) -> None:
        size = self._files.pop(name, None)
        if size is not None:
            self._bytes -= size

    def _evict(self) -> None:
        while self._files and (self._bytes > self.max_size or len(self._files) > self.max_entries):
            name, size = self._files.popitem(last=False)
            self._bytes -= size
            _unlink(self.path / name)

    def clear(self) -> None:
        with self._lock:
            for name in list(self._files):
                _unlink(self.path / name)
            self._files.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._files)

    @property
    def size(self) -> int:
        """Bytes held on disk."""
        return self._bytes


def _decode(data: bytes, key: str) -> list[Entry] | None:
    """The entries in a file's bytes, or ``None`` if they are damaged or for another key."""
    start = len(_MAGIC) + _HEAD.size
    if len(data) < start or not data.startswith(_MAGIC):
        return None
    crc, length = _HEAD.unpack_from(data, len(_MAGIC))
    payload = data[start:]
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None
    try:
        stored_key, entries = _DECODER.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if stored_key != key:
        return None
    return entries


def _unlink(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
