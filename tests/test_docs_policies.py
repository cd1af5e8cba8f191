"""docs/retries-middleware-limits.md: its examples run as written (against nginx)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from aioduct.testing.nginx import Nginx

PAGE = Path(__file__).resolve().parents[1] / "docs" / "retries-middleware-limits.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
#: The local-engine block names a module of the reader's project.
RUNNABLE = [block for block in BLOCKS if "myproject" not in block]


def test_the_page_has_its_examples() -> None:
    assert len(BLOCKS) == 7 and len(RUNNABLE) == 6


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.splitlines()[-1][:40] for b in RUNNABLE])
def test_example_runs(nginx: Nginx, block: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.replace("http://localhost:8080", nginx.http_url), PAGE.name, "exec"), {})
    printed = out.getvalue()
    if "r.attempts" in block:
        assert printed == "503 4\n"
    if "class Timer" in block:
        lines = printed.splitlines()
        assert [line.split()[2] for line in lines] == ["302", "503", "503"]
    if "event_hooks=hooks" in block:
        assert printed.splitlines()[-1].endswith("/nowhere is gone")
