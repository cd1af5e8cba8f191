"""The README's examples run as written."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from aioduct import uring
from aioduct.testing.nginx import Nginx

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(starting: str) -> str:
    """The lines of the README's first code block from the line starting ``starting``."""
    text = README.read_text()
    start = text.index(starting)
    return text[start : text.index("```", start)]


@pytest.mark.skipif(not uring.is_available(), reason=uring.unavailable_reason() or "")
def test_the_local_engine_example_skips_blank_lines(
    nginx: Nginx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = [nginx.http_url + "/small", nginx.alt_http_url + "/small"]
    (tmp_path / "urls.txt").write_text(f"{urls[0]}\n\n   \n{urls[1]}\n\n")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(
            compile("import aioduct\n" + readme_block("with aioduct.LocalEngine"), "README", "exec")
        )
    rows = sorted(line.split()[1:] for line in out.getvalue().splitlines())
    assert rows == sorted([["200", url, "None"] for url in urls])
