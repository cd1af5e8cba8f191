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


def quick_run(
    scenarios: list[str], clients: Sequence[str], duration: float = 0.2, warmup: float = 0.1
) -> tuple[Report, str]:
    """A tiny run of the wall-clock harness: the report and the tables it printed."""
    out = io.StringIO()
    report = run(
        Options(
            scenarios=scenarios,
            clients=clients,
            duration=duration,
            warmup=warmup,
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


@pytest.mark.timeout(60)
def test_runner_tls_scenarios_verify_against_the_run_ca() -> None:
    """Every TLS scenario, aioduct on each: TLS 1.3 keep-alive, 50 in flight, ALPN h2 (the
    h2 origin answers 505 to anything else, so passing proves h2) and a handshake each."""
    scenarios = ["https_get", "https_concurrent_50", "https_h2_concurrent_10", "https_no_pool"]
    out = io.StringIO()
    report = run(
        Options(
            scenarios=scenarios,
            clients=("aioduct-asyncio",),
            duration=0.2,
            warmup=0.1,
            pin=False,
            json_path=None,
            out=out,
        )
    )
    assert [r.scenario for r in report.results] == scenarios
    for r in report.results:
        assert r.status == "ok", (r.scenario, r.reason)
        assert r.errors == 0 and r.requests > 0, (r.scenario, r.first_error)
    assert "--- TLS ---" not in out.getvalue()  # one group only: no group headings
    assert "TLS 1.3 h2 (ALPN)" in out.getvalue()


def test_runner_http3_scenarios_against_caddy() -> None:
    """HTTP/3 with prior knowledge to Caddy and its h2 baseline (same server, same files);
    a client without HTTP/3 reports n/a rather than falling back to TCP."""
    scenarios = ["h3_get", "h3_concurrent_10", "caddy_h2_get"]
    out = io.StringIO()
    report = run(
        Options(
            scenarios=scenarios,
            clients=("aioduct-asyncio", "aiohttp"),
            duration=0.3,
            warmup=0.2,
            pin=False,
            json_path=None,
            out=out,
        )
    )
    got = {(r.scenario, r.client): r for r in report.results}
    for name in scenarios:
        r = got[name, "aioduct-asyncio"]
        assert r.status == "ok" and r.errors == 0 and r.requests > 0, (name, r.first_error)
    assert got["h3_get", "aiohttp"].status == "n/a"
    assert "no HTTP/3" in got["h3_get", "aiohttp"].reason


@pytest.mark.timeout(60)
def test_runner_gzip_scenario_decodes_or_says_why_not() -> None:
    from benches.clients.aioduct_common import can_decompress

    out = io.StringIO()
    report = run(
        Options(
            scenarios=["gzip_64k", "https_get"],
            clients=("aiohttp", "aioduct-asyncio"),
            duration=0.2,
            warmup=0.1,
            pin=False,
            json_path=None,
            out=out,
        )
    )
    theirs, ours = report.get("gzip_64k", "aiohttp"), report.get("gzip_64k", "aioduct-asyncio")
    assert theirs is not None and ours is not None
    assert theirs.valid, (theirs.reason, theirs.first_error)  # decoded, checked by sha256
    if can_decompress():
        assert ours.valid, (ours.reason, ours.first_error)
    else:
        assert ours.status == "n/a" and "decompression" in ours.reason
    https = report.get("https_get", "aiohttp")
    assert https is not None and https.valid, (https.reason, https.first_error)
    text = out.getvalue()
    assert "--- TLS ---" in text and "--- content-encoding ---" in text


def test_aioduct_adapters_turn_gzip_on_once_decompress_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benches.clients import aioduct_common
    from benches.scenarios import SCENARIOS, Origins, reference_target

    fields = dict.fromkeys(Target.__dataclass_fields__)
    fields.update(scenario="gzip_64k", gzip=True, tls=False, http2=False)
    target = Target(**fields)
    monkeypatch.setattr(aioduct_common, "can_decompress", lambda: False)
    assert "decompression" in (aioduct_common.unsupported_reason(target) or "")
    monkeypatch.setattr(aioduct_common, "can_decompress", lambda: True)
    assert aioduct_common.unsupported_reason(target) is None
    options = aioduct_common.tls_gzip_options(target)
    assert options == {"headers": {"Accept-Encoding": "gzip"}, "decompress": True}
    with pytest.raises(ValueError, match="needs the https origin"):
        reference_target(SCENARIOS["https_get"], Origins({"http": "http://127.0.0.1:9"}))


def test_bench_nginx_serves_every_transport() -> None:
    """The h2 origin refuses HTTP/1.1 (505); gzip_static sends the .gz file unchanged."""
    import gzip
    import http.client
    import ssl
    from urllib.parse import urlsplit

    from benches.runner import bench_nginx, static_json
    from benches.scenarios import GZIP_STATIC_PATH

    with bench_nginx(None) as (origins, _meter):
        assert set(origins.urls) == {"http", "h2c", "https", "https_h2", "h3", "caddy_h2"}
        assert all(len(m) == len(origins.mirrors["http"]) > 1 for m in origins.mirrors.values())
        ctx = ssl.create_default_context(cafile=origins.ca_file)
        for transport, status in (("https", 200), ("https_h2", 505)):
            parts = urlsplit(origins.urls[transport])
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ctx)
            conn.request("GET", "/small")
            assert conn.getresponse().status == status, transport
            conn.close()
        parts = urlsplit(origins.urls["http"])
        conn = http.client.HTTPConnection(parts.hostname, parts.port)
        conn.request("GET", GZIP_STATIC_PATH, headers={"Accept-Encoding": "gzip"})
        resp = conn.getresponse()
        encoded = resp.read()
        conn.close()
    assert resp.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(encoded) == static_json()
    assert len(static_json()) > 60_000 and len(encoded) < len(static_json()) / 3


#: The streams-and-formats scenarios (benches.streams).
STREAM_SCENARIOS = [
    "sse_100",
    "multipart_small",
    "multipart_1m",
    "upload_stream_1m",
    "body_stream_64k",
    "chunk_download_1m",
    "chunk_download_100m",
    "stream_download_1m",
    "stream_download_100m",
]


@pytest.mark.timeout(240)
def test_runner_streams_and_formats_scenarios() -> None:
    """Every streams-and-formats scenario, aioduct and a peer: the events parsed, the
    form and the chunked upload received whole by nginx, the streamed body and the
    downloaded file checked against the reference."""
    scenarios = [s for s in STREAM_SCENARIOS if not s.endswith("100m")]
    report, text = quick_run(scenarios, ("aioduct-asyncio", "aiohttp"), 0.3, 0.5)
    assert [r.scenario for r in report.results] == [s for s in scenarios for _ in "ab"]
    for r in report.results:
        assert r.status == "ok", (r.scenario, r.client, r.reason)
        assert r.errors == 0 and r.requests > 0, (r.scenario, r.client, r.first_error)
        assert r.cpu_us > 0
    assert "--- streams and formats ---" not in text  # one group: no group headings
    assert "parse 100 Server-Sent Events" in text


@pytest.mark.timeout(240)
def test_runner_100_megabyte_downloads() -> None:
    """The 100 MB file is made at bench time (in the run's temporary directory) and
    downloaded in ranges (aioduct) and as one stream (aiohttp, and aioduct)."""
    scenarios = [s for s in STREAM_SCENARIOS if s.endswith("100m")]
    # Windows long enough for a 100 MB download on a busy machine (no timing asserted).
    report, _ = quick_run(scenarios, ("aioduct-asyncio", "aiohttp"), 1.0, 0.5)
    for r in report.results:
        assert r.status == "ok", (r.scenario, r.client, r.reason)
        assert r.errors == 0 and r.requests > 0, (r.scenario, r.client, r.first_error)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "client", ["aioduct-blocking", "httpx", "niquests", "pycurl", "pyreqwest", "requests"]
)
def test_every_client_runs_the_streams_scenarios(client: str) -> None:
    """Each adapter's own way of parsing events, sending a form or a generator, reading
    chunks and writing a file (the 1 MB shapes; the 100 MB ones only differ in size)."""
    scenarios = ["sse_100", "multipart_small", "upload_stream_1m", "body_stream_64k"]
    scenarios += ["chunk_download_1m", "stream_download_1m"]
    report, _ = quick_run(scenarios, (client,), 0.3, 0.5)  # room for a slow first request
    for r in report.results:
        assert r.status == "ok", (r.scenario, r.reason)
        assert r.errors == 0 and r.requests > 0, (r.scenario, r.first_error)


@pytest.mark.timeout(120)
def test_local_engine_streams_scenarios_or_why_not() -> None:
    """The local engine parses the events of a Result, sends an aioduct.Multipart form as
    a Job's body and downloads with ``save_to``; it has no streamed upload or body."""
    skip_without_io_uring()
    scenarios = ["sse_100", "multipart_small", "chunk_download_1m", "stream_download_1m"]
    every = [*scenarios, "upload_stream_1m", "body_stream_64k"]
    report, _ = quick_run(every, ["aioduct-local-1"], 0.3, 0.5)
    got = {r.scenario: r for r in report.results}
    for name in scenarios:
        assert got[name].valid, (name, got[name].reason, got[name].first_error)
    assert got["upload_stream_1m"].status == "n/a" and "Job" in got["upload_stream_1m"].reason
    assert got["body_stream_64k"].status == "n/a"


def test_bench_nginx_serves_the_streams_locations() -> None:
    """The event stream is text/event-stream; /upload reports what arrived, and how."""
    import http.client
    from urllib.parse import urlsplit

    from benches.runner import bench_nginx
    from benches.streams import SSE_PATH, UPLOAD_PATH, event_stream, reference_events

    with bench_nginx(None) as (origins, _meter):
        parts = urlsplit(origins.urls["http"])
        conn = http.client.HTTPConnection(parts.hostname, parts.port)
        conn.request("GET", SSE_PATH)
        resp = conn.getresponse()
        assert resp.getheader("Content-Type") == "text/event-stream"
        assert resp.read() == event_stream()
        conn.request("POST", UPLOAD_PATH, body=iter([b"abc", b"de"]), encode_chunked=True)
        assert conn.getresponse().read() == b"POST 5 chunked"
        conn.request("POST", UPLOAD_PATH, body=b"abcdef")
        assert conn.getresponse().read() == b"POST 6 "
        conn.close()
    events = reference_events(event_stream())
    assert len(events) == 100 and events[9].count("\n") == 1  # two data lines joined
