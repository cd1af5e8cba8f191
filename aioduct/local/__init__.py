"""The local engine: thread-per-core bulk HTTP, one pinned io_uring worker process per CPU.

:class:`LocalEngine` is the parent side (:mod:`.engine`); :mod:`.worker` is the process
each worker runs, :mod:`.wire` the framing between them and :mod:`.dispatch` the
bookkeeping that shards jobs by origin and loses none when a worker dies.
"""

from __future__ import annotations

from .dispatch import EngineStats
from .engine import LocalEngine

__all__ = ["EngineStats", "LocalEngine"]
