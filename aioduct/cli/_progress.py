"""A live status line on stderr for long commands, shown only on a terminal.

Piped or redirected, stderr gets no carriage-return noise: commands print one summary
line at the end instead, which is what logs and tests want.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import TextIO

__all__ = ["StatusLine", "human_bytes"]


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


class StatusLine:
    """Redraws ``render()`` every ``interval`` seconds while running, when ``stream`` is a tty."""

    def __init__(
        self,
        render: Callable[[], str],
        *,
        stream: TextIO | None = None,
        interval: float = 0.25,
        enabled: bool | None = None,
    ) -> None:
        self._render = render
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(self._interval)

    def draw(self) -> None:
        if self.enabled:
            self._stream.write("\r" + self._render() + "\x1b[K")
            self._stream.flush()

    def stop(self) -> None:
        """Stop redrawing and erase the line (the caller prints its summary next)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.enabled:
            with contextlib.suppress(OSError, ValueError):
                self._stream.write("\r\x1b[K")
                self._stream.flush()
