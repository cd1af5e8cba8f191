"""The runnable examples of docs/websocket.md, docs/download.md and docs/forwarding.md run
as written, against local servers standing in for the URLs they name."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest

from aioduct.testing.asgi import ASGIServer, echo_websocket_app
from aioduct.testing.nginx import Nginx

DOCS = Path(__file__).resolve().parents[1] / "docs"


def blocks(page: str, marker: str) -> list[str]:
    """The ```python blocks of ``page`` whose first line contains ``marker``."""
    text = (DOCS / page).read_text()
    found = []
    for chunk in text.split("```python\n")[1:]:
        code = chunk[: chunk.index("```")]
        if marker in code.splitlines()[0]:
            found.append(code)
    assert found, f"no {marker!r} example in {page}"
    return found


def run(code: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        code = code.replace(old, new)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs", "exec"), {"__name__": "__docs__"})
    return out.getvalue()


def test_websocket_examples() -> None:
    with ASGIServer(echo_websocket_app) as srv:
        for code in blocks("websocket.md", "# runnable"):
            run(code, {"ws://localhost:8000": srv.ws_url})


def test_download_examples(nginx: Nginx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first, jobs = blocks("download.md", "# runnable")
    out = run(first, {"http://localhost:8000": nginx.http_url})
    assert "big.bin: 10485760 bytes" in out
    assert (tmp_path / "big.bin").stat().st_size == 10 * 1024 * 1024
    out = run(jobs, {"http://localhost:8000": nginx.http_url})
    assert sorted(out.splitlines()) == ["200 1048576 1m.bin", "200 10485760 10m.bin"]


def test_forwarding_examples(nginx: Nginx) -> None:
    (proxy,) = blocks("forwarding.md", "# proxy.py")
    namespace: dict[str, Any] = {}
    exec(
        compile(proxy.replace("http://127.0.0.1:8000", nginx.http_url), "proxy", "exec"), namespace
    )
    with ASGIServer(namespace["app"]) as srv:
        (code,) = blocks("forwarding.md", "# runnable")
        assert run(code, {"http://localhost:8080": srv.url}) == "200 Hello, World!\n"
