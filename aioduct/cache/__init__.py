"""The HTTP cache (RFC 9111): ``Client(cache=aioduct.Cache())``; see :mod:`.core`."""

from __future__ import annotations

from ..config import CacheConfig
from .core import Cache, CacheLayer
from .store import DirectoryStore, Entry, MemoryStore, Store

__all__ = ["Cache", "CacheConfig", "CacheLayer", "DirectoryStore", "Entry", "MemoryStore", "Store"]
