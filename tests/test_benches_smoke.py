"""Smoke test of the benchmark runner: it runs end to end and reports sane numbers.

Not a performance test: durations are tiny and nothing is compared, only the report's shape.
"""

from __future__ import annotations

import io

import pytest

from aioduct.testing.nginx import NGINX_MISSING_REASON, Nginx, nginx_binary
from benches.runner import Options, run

CLIENTS = ("aiohttp", "aioduct-asyncio")

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.skipif(nginx_binary() is None, reason=NGINX_MISSING_REASON),
]


@pytest.mark.timeout(30)
def test_runner_get_small_reports_requests_per_second() -> None:
    out = io.StringIO()
    report = run(
        Options(
            scenarios=["get_small"],
            clients=CLIENTS,
            duration=0.2,
            warmup=0.1,
            pin=False,  # do not crowd one CPU while other tests run in parallel
            json_path=None,
            out=out,
        )
    )
    assert [(r.scenario, r.client) for r in report.results] == [("get_small", c) for c in CLIENTS]
    for r in report.results:
        assert r.status == "ok", (r.client, r.reason)
        assert r.errors == 0, (r.client, r.first_error)
        assert r.valid and r.requests > 0 and r.rps > 0 and r.cpu_us > 0
    text = out.getvalue()
    assert "get_small" in text and "req/s" in text
    assert report.to_json()["results"][0]["rps"] > 0


def test_callgrind_child_drives_a_client_without_valgrind(nginx: Nginx) -> None:
    """The instrumented part of benches.callgrind, run directly (valgrind would take ~20 s)."""
    from benches import callgrind
    from benches.scenarios import SCENARIOS, reference_target

    target = reference_target(SCENARIOS["concurrent_10"], nginx.http_url)
    callgrind.child({"client": "aioduct-asyncio", "target": target.to_json(), "requests": 25})
