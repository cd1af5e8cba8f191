"""docs/cookies.md: every example runs as written (against nginx in place of BASE)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aioduct.testing.nginx import Nginx

DOC = Path(__file__).resolve().parents[2] / "docs" / "cookies.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_there_are_examples() -> None:
    assert len(blocks()) == 5


@pytest.mark.nginx
@pytest.mark.parametrize("index", range(5))
def test_the_docs_example_runs(
    nginx: Nginx, index: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = blocks()[index].replace('"http://127.0.0.1:8080"', repr(nginx.http_url))
    exec(compile(code, f"docs/cookies.md#{index}", "exec"), {})
    out = capsys.readouterr().out
    expected = {
        0: "[('a', '1', '127.0.0.1')]\n1\n",
        1: "",
        3: "#HttpOnly_.example.com\tTRUE\t/\tFALSE\t0\tsid\t42\n1\n",
        4: "200\n",
    }
    if index in expected:
        assert out == expected[index]
    else:
        assert out.startswith("dark 42\n")
