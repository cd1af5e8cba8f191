"""Importing liburing safely when several processes do it at once.

The pinned liburing loads its Cython modules through ``dynamic_import``, whose import
cache (``liburing/__pycache__/__init__.importer-311.pyc``) never validates -- a missing
line continuation in its ``load_cache`` makes every read fail -- so *every* ``import
liburing`` deletes and rewrites that file. Two processes importing at the same moment
(the local engine starting its workers, pytest-xdist workers probing) then race, and one
dies with ``FileNotFoundError`` from inside liburing. Every aioduct process therefore
imports liburing under one exclusive ``flock``, which costs a few milliseconds once.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Final

__all__ = ["LOCK_PATH", "liburing_import_lock"]

#: One lock per user (the race is on a file in the environment, not per venv, but a
#: shared lock is harmless and needs no knowledge of where liburing lives).
LOCK_PATH: Final = os.path.join(tempfile.gettempdir(), f"aioduct-liburing-{os.getuid()}.lock")


@contextlib.contextmanager
def liburing_import_lock() -> Iterator[None]:
    """Hold the import lock (best effort: without a usable lock file, no lock)."""
    import fcntl

    try:
        lock = open(LOCK_PATH, "a")  # noqa: SIM115 (held across the yield)
    except OSError:
        yield
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        lock.close()  # closing releases the flock
