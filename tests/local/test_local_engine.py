"""The local engine against real servers: every job answered, workers dying, Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import aioduct
from aioduct import Job, LocalEngine
from aioduct.local.dispatch import Dispatcher
from aioduct.testing.nginx import Nginx

pytestmark = pytest.mark.nginx


def test_map_accounts_for_every_job_across_many_origins(
    many_origins: list[str], loop_kind: str
) -> None:
    urls = [f"{many_origins[i % len(many_origins)]}/item/{i}" for i in range(3000)]
    with LocalEngine(workers=2, loop=loop_kind, concurrency=16, keep_body=True) as engine:
        assert engine.runtimes == [("uring" if loop_kind == "uring" else "uvloop")] * 2
        results = list(engine.map(urls))
        stats = engine.stats
    assert sorted(r.id for r in results) == list(range(3000))  # numbered in input order
    by_id = {r.id: r for r in results}
    for i, url in enumerate(urls):
        r = by_id[i]
        assert r.url == url and r.final_url == url and r.error is None and r.status == 200
        assert r.body == f"{url.rsplit(':', 1)[1].split('/')[0]} /item/{i}".encode()
        assert r.attempts == 1 and r.http_version == "HTTP/1.1" and r.size == len(r.body)
    workers_of = {}
    for r in results:  # one origin, one worker: politeness state lives in one place
        workers_of.setdefault(r.url.split("/item/")[0], set()).add(r.worker)
    assert all(len(w) == 1 for w in workers_of.values())
    # ... the worker its origin hashes to (ports are random: do not assume both are hit)
    shard = Dispatcher(2, window=1, by_site=True).shard  # cookies on: by site
    assert {o: ws.pop() for o, ws in workers_of.items()} == {
        o: shard(Job(url=o + "/")) for o in workers_of
    }
    assert (stats.submitted, stats.completed, stats.errors, stats.crashes) == (3000, 3000, 0, 0)


def test_jobs_carry_method_headers_body_meta_and_errors(nginx: Nginx, loop_kind: str) -> None:
    jobs = [
        Job(url=nginx.http_url + "/post", method="post", body=b"x" * 5000, id="p", meta={"k": 1}),
        Job(url=nginx.http_url + "/echo/headers", headers={"X-Test": "yes"}, id="h"),
        Job(url=nginx.http_url + "/redirect/302/small", id="r"),
        Job(url=nginx.http_url + "/redirect/302/small", id="nr", follow_redirects=False),
        Job(url="http://127.0.0.1:1/", id="refused"),
        Job(url="ftp://example.org/", id="bad"),
        Job(url=nginx.http_url + "/slow", id="slow", timeout=0.2),
    ]
    with LocalEngine(workers=1, loop=loop_kind) as engine:
        got = {r.id: r for r in engine.map(jobs)}
        single = engine.request("GET", nginx.http_url + "/small", meta="one")
    assert got["p"].body == b"POST 5000"
    assert got["p"].meta == {"k": 1}
    assert b"x-test: yes" in (got["h"].body or b"")
    assert got["r"].status == 200 and got["r"].final_url == nginx.http_url + "/small"
    assert got["nr"].status == 302
    for key, kind in (("refused", "ConnectError"), ("bad", "InvalidURL"), ("slow", "TotalTimeout")):
        error = got[key].error
        assert got[key].status == 0 and error is not None and error.kind == kind, got[key]
    assert "127.0.0.1:1" in got["refused"].error.message  # type: ignore[union-attr]
    assert single.status == 200 and single.body == b"Hello, World!" and single.meta == "one"


def test_retries_are_counted(nginx: Nginx) -> None:
    with LocalEngine(
        workers=1, loop="asyncio", retry=aioduct.RetryConfig(max_retries=2, initial_backoff=0.01)
    ) as engine:
        r503 = engine.request("GET", nginx.http_url + "/status/503")
        refused = engine.request("GET", "http://127.0.0.1:1/")
        ok = engine.request("GET", nginx.http_url + "/small")
    assert (r503.status, r503.attempts) == (503, 3)
    assert refused.error is not None and refused.attempts == 3
    assert ok.attempts == 1


def test_a_killed_worker_loses_no_job(many_origins: list[str], loop_kind: str) -> None:
    urls = [f"{many_origins[i % len(many_origins)]}/k/{i}" for i in range(4000)]
    seen: list[int] = []
    with LocalEngine(workers=2, loop=loop_kind, concurrency=8) as engine:
        victim = engine.pids[0]
        for result in engine.map(urls):
            seen.append(result.id)  # type: ignore[arg-type]
            assert result.error is None, result
            if len(seen) == 300:
                os.kill(victim, signal.SIGKILL)
        assert engine.stats.crashes == 1 and victim not in engine.pids
    assert sorted(seen) == list(range(4000))  # exactly one Result per job


def test_malformed_config_is_rejected_in_the_parent() -> None:
    with pytest.raises(TypeError, match="timeout must be a number of seconds"):
        LocalEngine(workers=1, loop="asyncio", timeout="soon")
    with pytest.raises(TypeError, match="did you mean 'max_redirects'"):
        LocalEngine(workers=1, loop="asyncio", max_redirect=3)
    with pytest.raises(ValueError, match="concurrency must be >= 1"):
        LocalEngine(workers=1, loop="asyncio", concurrency=0)
    with pytest.raises(ValueError, match="workers must be a positive number"):
        LocalEngine(workers=0, loop="asyncio")
    with pytest.raises(ValueError, match="loop must be one of uring, asyncio"):
        LocalEngine(workers=1, loop="tokio")
    with (
        pytest.raises(TypeError, match=r"map\(\) takes Jobs or URL strings, not int"),
        LocalEngine(workers=1, loop="asyncio") as engine,
    ):
        list(engine.map([1]))  # type: ignore[list-item]


def test_io_uring_switched_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIODUCT_URING", "off")
    with pytest.raises(
        aioduct.EngineUnavailable, match=r"io_uring, which is unusable here: .*AIODUCT_URING"
    ):
        LocalEngine(workers=1)
    with pytest.raises(aioduct.EngineUnavailable, match="unusable"):
        aioduct.Client(engine="local")
    monkeypatch.setattr(aioduct.client, "_auto_said", False)
    with caplog.at_level(logging.WARNING, logger="aioduct"):
        assert aioduct.Client(engine="auto").engine == "send"
        assert aioduct.Client(engine="auto").engine == "send"
    said = [r for r in caplog.records if "engine='auto' uses the send engine" in r.getMessage()]
    assert len(said) == 1 and "AIODUCT_URING" in said[0].getMessage()


_SIGINT_SCRIPT = """
import sys, aioduct
urls = (sys.argv[1] + "/slow?" + str(i) for i in range(100000))
with aioduct.LocalEngine(workers=2, loop="asyncio", concurrency=4) as engine:
    print("PIDS", *engine.pids, flush=True)
    for n, result in enumerate(engine.map(urls)):
        pass
"""


def test_ctrl_c_stops_the_parent_and_every_worker(nginx: Nginx) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SIGINT_SCRIPT), nginx.http_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PIDS"), proc.stderr.read() if proc.stderr else line
        pids = [int(p) for p in line.split()[1:]]
        time.sleep(0.3)  # mid-map: slow downloads in flight on both workers
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    for pid in pids:  # no orphans: every worker was stopped and reaped
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie_of_nobody(pid)


def _is_zombie_of_nobody(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def test_balanced_sharding_spreads_one_host(nginx: Nginx) -> None:
    with LocalEngine(workers=2, loop="asyncio", sharding="balanced", concurrency=4) as engine:
        results = list(engine.map([nginx.http_url + "/small"] * 400))
    assert all(r.status == 200 for r in results) and {r.worker for r in results} == {0, 1}
    with pytest.raises(ValueError, match="per-host limits need sharding='origin'"):
        LocalEngine(workers=2, loop="asyncio", sharding="balanced", per_host_rate=5)


def test_a_wedged_worker_is_replaced(nginx: Nginx, loop_kind: str) -> None:
    """A worker whose loop stops turning (here: SIGSTOP) stops beating; the parent kills
    and replaces it, and every job still gets its one Result."""
    urls = [f"{nginx.http_url}/small?{i}" for i in range(600)]
    seen: list[int] = []
    with LocalEngine(workers=1, loop=loop_kind, concurrency=4, stall_timeout=1.0) as engine:
        victim = engine.pids[0]
        for result in engine.map(urls):
            assert result.error is None, result
            seen.append(result.id)  # type: ignore[arg-type]
            if len(seen) == 100:
                os.kill(victim, signal.SIGSTOP)
        assert engine.stats.crashes == 1 and engine.pids != [victim]
    assert sorted(seen) == list(range(600))


def test_a_busy_caller_is_not_mistaken_for_a_wedged_worker(nginx: Nginx) -> None:
    with LocalEngine(workers=1, loop="asyncio", concurrency=2, stall_timeout=0.5) as engine:
        for n, result in enumerate(engine.map([nginx.http_url + "/small"] * 6)):
            assert result.status == 200
            if n == 1:
                time.sleep(1.5)  # the loop does not run while we are away
        assert engine.stats.crashes == 0
    with pytest.raises(ValueError, match="stall_timeout must be > 0"):
        LocalEngine(workers=1, loop="asyncio", stall_timeout=0)


def test_closing_lets_workers_exit_on_their_own(nginx: Nginx) -> None:
    engine = LocalEngine(workers=2, loop="asyncio")
    with engine:
        assert engine.request("GET", nginx.http_url + "/small").status == 200
        procs = [slot.proc for slot in engine._slots]
    # STOP, then EOF: each worker finishes and exits 0 within the grace period; not -9.
    assert [p.returncode for p in procs if p is not None] == [0, 0]


def test_workers_start_under_the_worker_prefix(
    nginx: Nginx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AIODUCT_WORKER_PREFIX (for profilers) wraps each worker's command line."""
    seen = tmp_path / "argv"
    wrapper = tmp_path / "wrap.sh"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {seen}\nexec "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("AIODUCT_WORKER_PREFIX", f"{wrapper} ")
    with LocalEngine(workers=1, loop="asyncio") as engine:
        assert [r.status for r in engine.map([nginx.http_url + "/small"] * 3)] == [200] * 3
    assert "-m aioduct.local.worker" in seen.read_text()
