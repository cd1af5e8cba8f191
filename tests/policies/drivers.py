"""One client behind one blocking interface, so each policy test runs on every driver.

``kind`` is ``"async"`` (:class:`aioduct.Client` on a private asyncio loop),
``"blocking"`` (:class:`aioduct.BlockingClient`, the loop-less blocking driver) or
``"local"`` (``Client(engine="local")``: a local-engine worker runs the request).
``record=True`` puts a :class:`RecordingRuntime` under the send engines, so a test
reads the sleeps the pipeline asked for instead of timing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

import aioduct
from aioduct import uring
from aioduct.runtimes import Runtime

T = TypeVar("T")

KINDS = ("async", "blocking", "local")


def _in_background(spawned: set[Any]) -> bool:
    task = asyncio.current_task()
    if task in spawned:
        return True
    coro = task.get_coro() if task is not None else None
    return getattr(coro, "__name__", "") == "_reap"  # the pool's reaper (its own task)


class RecordingRuntime:
    """A runtime that notes every sleep a request asks of it and sleeps none of it: its
    clock jumps ahead by the time instead, so the pipeline sees the time pass. Background
    tasks (the pool's reaper) sleep for real, unrecorded."""

    def __init__(self, inner: Runtime) -> None:
        self.inner = inner
        self.name = inner.name
        self.background = inner.background
        self.sleeps: list[float] = []
        self.offset = 0.0
        self._spawned: set[Any] = set()

    def now(self) -> float:
        return self.inner.now() + self.offset

    async def sleep(self, seconds: float) -> None:
        if self.background and _in_background(self._spawned):
            await self.inner.sleep(seconds)
            return
        self.sleeps.append(seconds)
        self.offset += max(0.0, seconds)
        await self.inner.sleep(0)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Any:
        task = self.inner.spawn(coro)
        self._spawned.add(task)
        return task

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def skip_unless_local_usable(kind: str) -> None:
    if kind == "local" and (reason := uring.unavailable_reason()) is not None:
        pytest.skip(reason)


class Driver:
    """A client of ``kind`` with ``options``, used synchronously."""

    def __init__(self, kind: str, *, record: bool = False, **options: Any) -> None:
        self.kind = kind
        self.recorder: RecordingRuntime | None = None
        self._runner: asyncio.Runner | None = None
        if kind == "blocking":
            self.blocking = aioduct.BlockingClient(**options)
            if record:
                engine = self.blocking._engine()
                assert engine._fixed_runtime is not None
                self.recorder = RecordingRuntime(engine._fixed_runtime)
                engine._fixed_runtime = self.recorder  # type: ignore[assignment]
            return
        self._runner = asyncio.Runner()
        if kind == "local":
            skip_unless_local_usable(kind)
            options = {"engine": "local", "workers": 1, **options}
        self.client = self._run(self._make(options))
        if record:
            assert kind == "async", "the local engine's runtime is in its worker"
            from aioduct.runtimes.asyncio import AsyncioRuntime

            self.recorder = RecordingRuntime(AsyncioRuntime(self._runner.get_loop()))
            self.client._engine._fixed_runtime = self.recorder  # type: ignore[union-attr]

    @staticmethod
    async def _make(options: dict[str, Any]) -> aioduct.Client:
        return aioduct.Client(**options)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._runner is not None
        return self._runner.run(coro)

    @property
    def sleeps(self) -> list[float]:
        assert self.recorder is not None
        return self.recorder.sleeps

    def request(self, method: str, url: str, **options: Any) -> aioduct.Response:
        if self.kind == "blocking":
            return self.blocking.request(method, url, **options)
        return self._run(self.client.request(method, url, **options))

    def get(self, url: str, **options: Any) -> aioduct.Response:
        return self.request("GET", url, **options)

    def stream_bytes(self, url: str, chunk_size: int | None = None) -> tuple[int, list[bytes]]:
        """Stream ``url``'s body: its status and the chunks as they were handed on."""
        if self.kind == "blocking":
            with self.blocking.stream("GET", url) as r:
                return r.status, list(r.iter_bytes(chunk_size))

        async def read() -> tuple[int, list[bytes]]:
            async with self.client.stream("GET", url) as r:
                return r.status, [c async for c in r.aiter_bytes(chunk_size)]

        return self._run(read())

    def pool(self) -> Any:
        """The send engine's connection pool (this thread's, for the blocking client)."""
        if self.kind == "blocking":
            return self.blocking._engine().pool
        return self.client._engine.pool  # type: ignore[union-attr]

    def close(self) -> None:
        if self.kind == "blocking":
            self.blocking.close()
            return
        try:
            self._run(self.client.aclose())
        finally:
            assert self._runner is not None
            self._runner.close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
