"""Smoke test of the benchmark runner: it runs end to end and reports sane numbers.

Not a performance test: durations are tiny and nothing is compared, only the report's shape.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence

import pytest

from aioduct.jobs import Job
from aioduct.local.dispatch import Dispatcher
from aioduct.testing.nginx import NGINX_MISSING_REASON, Nginx, nginx_binary
from benches.clients.aioduct_local_client import spread_urls
from benches.runner import Options, Report, run
from benches.scenarios import Target

CLIENTS = ("aiohttp", "aioduct-asyncio")

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.skipif(nginx_binary() is None, reason=NGINX_MISSING_REASON),
]


def quick_run(scenarios: list[str], clients: Sequence[str]) -> tuple[Report, str]:
    """A tiny run of the wall-clock harness: the report and the tables it printed."""
    out = io.StringIO()
    report = run(
        Options(
            scenarios=scenarios,
            clients=clients,
            duration=0.2,
            warmup=0.1,
            pin=False,  # do not crowd one CPU while other tests run in parallel
            json_path=None,
            out=out,
        )
    )
    return report, out.getvalue()


def skip_without_io_uring() -> None:
    from aioduct import uring

    reason = uring.unavailable_reason()
    if reason is not None:
        pytest.skip(f"the local engine needs io_uring: {reason}")


@pytest.mark.timeout(30)
def test_runner_get_small_reports_requests_per_second() -> None:
    report, text = quick_run(["get_small"], CLIENTS)
    assert [(r.scenario, r.client) for r in report.results] == [("get_small", c) for c in CLIENTS]
    for r in report.results:
        assert r.status == "ok", (r.client, r.reason)
        assert r.errors == 0, (r.client, r.first_error)
        assert r.valid and r.requests > 0 and r.rps > 0 and r.cpu_us > 0
    assert "get_small" in text and "req/s" in text
    assert report.to_json()["results"][0]["rps"] > 0


@pytest.mark.timeout(60)
def test_runner_local_engine_client_reports_requests_per_second() -> None:
    skip_without_io_uring()
    report, text = quick_run(["concurrent_10"], ["aioduct-local-1"])
    (r,) = report.results
    assert r.status == "ok", r.reason
    assert r.errors == 0, r.first_error
    assert r.valid and r.requests > 0 and r.cpu_us > 0
    assert "aioduct-local-1" in text


@pytest.mark.timeout(60)
def test_runner_local_engine_runs_the_latency_and_h2c_scenarios() -> None:
    """One request at a time (the latency row), and h2c with prior knowledge."""
    skip_without_io_uring()
    report, text = quick_run(["latency", "h2c_get"], ["aioduct-local-1"])
    for r in report.results:
        assert r.status == "ok", (r.scenario, r.reason)
        assert r.errors == 0 and r.valid, (r.scenario, r.first_error)
    assert "latency µs" in text


def test_local_client_spreads_jobs_over_every_worker() -> None:
    mirrors = tuple(f"http://127.0.0.1:{port}/small" for port in range(20001, 20017))
    target = Target(
        "concurrent_50", "GET", "http://127.0.0.1:20000/small", 0, "bytes", 50, True,
        200, 13, "", mirrors=mirrors,
    )  # fmt: skip
    cycle, busy = spread_urls(target, 2)
    shard = Dispatcher(2, 1).shard
    owners = [shard(Job(url=url)) for url in cycle]
    assert busy == 2 and set(owners) == {0, 1}
    assert all(a != b for a, b in itertools.pairwise(owners))  # alternating
    assert spread_urls(target, 1) == ([target.url], 1)


@pytest.mark.timeout(30)
def test_runner_h2c_scenario_runs_aioduct_over_http2() -> None:
    report, _ = quick_run(["h2c_concurrent_10"], ("aioduct-asyncio",))
    (ours,) = report.results
    assert ours.status == "ok" and ours.errors == 0 and ours.requests > 0, ours.first_error


def test_adapters_without_http2_say_so() -> None:
    from benches.clients import aiohttp_client
    from benches.scenarios import SCENARIOS, Target

    fields = dict.fromkeys(Target.__dataclass_fields__)
    fields.update(scenario="h2c_get", http2=SCENARIOS["h2c_get"].http2)
    assert "HTTP/2" in (aiohttp_client.unsupported(Target(**fields)) or "")


def test_callgrind_child_drives_a_client_without_valgrind(nginx: Nginx) -> None:
    """The instrumented part of benches.callgrind, run directly (valgrind would take ~20 s)."""
    from benches import callgrind
    from benches.scenarios import SCENARIOS, reference_target

    target = reference_target(SCENARIOS["concurrent_10"], nginx.http_url)
    callgrind.child({"client": "aioduct-asyncio", "target": target.to_json(), "requests": 25})
