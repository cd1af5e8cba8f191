"""benches/uring_loop.py runs end to end (tiny durations; nothing is compared)."""

from __future__ import annotations

import pytest

from aioduct import uring
from aioduct.testing.nginx import NGINX_MISSING_REASON, nginx_binary

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.skipif(nginx_binary() is None, reason=NGINX_MISSING_REASON),
    pytest.mark.skipif(not uring.is_available(), reason=uring.unavailable_reason() or ""),
]


def test_bench_reports_every_loop(capsys: pytest.CaptureFixture[str]) -> None:
    from benches.uring_loop import main

    args = ["--duration", "0.2", "--warmup", "0.05", "--loops", "asyncio,uring", "--no-pin"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "failed" not in out, out
    rows = {" ".join(line.split()[:3]) for line in out.splitlines()}
    for label in ("asyncio (asyncio)", "uring (uring)"):
        assert {f"{label} sequential", f"{label} 50"} <= rows, out
