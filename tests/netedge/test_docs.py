"""The runnable examples of docs/dns.md and docs/tls.md (those that bring their own
loopback servers) run as written and print what the text says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def runnable_blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return [b for b in blocks if "aioduct.testing" in b]


def run(block: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "docs", "exec"), {"__name__": "docs"})
    return out.getvalue()


def test_resolve_example() -> None:
    [block] = runnable_blocks("dns.md")
    assert re.fullmatch(r"hello 127\.0\.0\.1:\d+\n", run(block))


def test_pinning_example() -> None:
    [block] = runnable_blocks("tls.md")
    lines = run(block).splitlines()
    assert lines[0] == "pinned"
    assert lines[1].startswith("refused:") and "pinned_sha256" in lines[1]


@pytest.mark.parametrize("page", ["dns.md", "tls.md"])
def test_other_examples_compile(page: str) -> None:
    text = (DOCS / page).read_text()
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        compile(block, page, "exec")
