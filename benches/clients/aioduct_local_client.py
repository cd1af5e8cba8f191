"""aioduct's local engine: worker processes on io_uring, fed Jobs through ``engine.map()``.

One thread runs ``engine.map()`` over an endless generator of Jobs that stops when the
measurement ends; the engine keeps ``target.concurrency`` requests in flight in all (split
evenly over the workers), exactly as a crawler uses it. A one-at-a-time scenario
(``latency``) calls ``engine.request()`` in a loop instead: each job reaches an idle
worker, as a blocking caller's do. The workers' CPU is read from /proc and charged to
this client beside the parent's own (and reported apart from it: ``extra_cpu_s``).

The engine shards jobs by origin, so with N workers the jobs cycle over the target's mirror
origins (the same nginx location on other ports) chosen so that every worker owns some;
one origin would keep N - 1 workers idle.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from aioduct import uring
from aioduct.jobs import Job, Result, result_to_response
from aioduct.sse import SSEDecoder
from benches import streams
from benches.clients.aioduct_common import tls_gzip_options, unsupported_reason
from benches.harness import (
    EXTRA_CPU,
    EXTRA_SYS,
    BadResponse,
    ReadyLoop,
    Tally,
    processes_cpu,
    processes_sys,
)
from benches.harness import check as check_response
from benches.harness import check_first as check_first_response
from benches.scenarios import Target

#: Runs the proxy scenarios (target.proxy_url).
PROXIES = True
#: The h3_* scenarios run with this adapter (HTTP/3 with prior knowledge).
HTTP3 = True


def unsupported(target: Target) -> str | None:
    if target.kind == "upload_stream":
        return "a Job's body is bytes: the local engine sends no streamed (chunked) upload"
    if target.kind == "body_stream":
        return "the local engine's workers hand back whole bodies (Result.body), not streams"
    return uring.unavailable_reason() or unsupported_reason(target)


def describe() -> str:
    return "LocalEngine on io_uring"


def spread_urls(target: Target, workers: int) -> tuple[list[str], int]:
    """URLs to cycle through so that consecutive jobs go to different workers.

    Returns the cycle and how many workers own at least one origin (the others idle).
    """
    if workers == 1 or not target.mirrors:
        return [target.url], 1
    from aioduct.local.dispatch import Dispatcher

    shard = Dispatcher(workers, 1).shard
    owned: list[list[str]] = [[] for _ in range(workers)]
    for url in (target.url, *target.mirrors):
        owned[shard(Job(url=url))].append(url)
    groups = [urls for urls in owned if urls]
    depth = max(len(urls) for urls in groups)
    cycle = [urls[i % len(urls)] for i in range(depth) for urls in groups]
    return cycle, len(groups)


def _form(content: bytes) -> tuple[bytes, str]:
    """A multipart form encoded by aioduct.Multipart (a Job's body is bytes): its parts
    are in memory, so its async reader completes without suspending."""
    from aioduct.multipart import Multipart

    form = Multipart(
        streams.form_fields(),
        streams.form_files(content),
    )
    reading = form.aread()
    try:
        reading.send(None)
    except StopIteration as done:
        return done.value, form.content_type
    reading.close()
    raise RuntimeError("an in-memory multipart form suspended while encoding")


def _job(target: Target, url: str, i: int, path: str, content: bytes) -> Job:
    """One job of the scenario: jobs of the streams-and-formats scenarios say what they
    are (an SSE GET, a form, a download to ``path``) in the Job's own fields."""
    kind = target.kind
    if kind == "sse":
        return Job(url=url, headers=_SSE_HEADERS, id=i)
    if kind == "multipart":
        body, content_type = _form(content)  # a new form (boundary) per job, as others
        return Job(
            url=url, method="POST", body=body, headers=(("Content-Type", content_type),), id=i
        )
    if kind == "download":
        return Job(url=url, save_to=path, chunks=target.chunks or 1, id=i)
    return Job(url=url, method=target.method, body=target.body, id=i)


_SSE_HEADERS = (("Accept", "text/event-stream"), ("Cache-Control", "no-store"))


def _jobs(
    target: Target, urls: list[str], stop: threading.Event, path: str, content: bytes
) -> Iterator[Job]:
    """The scenario's jobs until the measurement ends, numbered here, as a crawler
    keeping its own ids does."""
    i = 0
    while not stop.is_set():
        yield _job(target, urls[i % len(urls)], i, path, content)
        i += 1


def _take(target: Target, result: Result, path: str, tally: Tally) -> None:
    """What the bench does with each Result: check it, count it."""
    try:
        check_response(target, result.status, _payload(target, result, path))
        tally.ok += 1
    except Exception as exc:
        tally.fail(exc)


def own_cost(target: Target, seconds: float = 0.2) -> float | None:
    """The CPU µs this client's own loop spends per Result, outside the engine: its job
    generator and its per-Result check, run over a canned Result of the scenario's
    shape (``None`` for scenarios whose checks read more than the body's length).

    The parent's CPU per result includes this caller's work; ``--scaling`` takes it out
    to show what the engine itself costs. It is measured with warm caches, so it errs
    low: the engine's figure derived from it errs high.
    """
    if target.kind != "request" or target.decode != "bytes":
        return None
    canned = Result(id=0, url=target.url, final_url=target.url, status=target.status)
    canned.body = b"x" * target.length
    tally = Tally()
    jobs = _jobs(target, [target.url], threading.Event(), "", b"")
    count, start, deadline = 0, time.process_time(), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            next(jobs)
            _take(target, canned, "", tally)
        count += 1000
    spent = time.process_time() - start
    if tally.errors:
        raise RuntimeError(f"the canned Result fails the bench's own check: {tally.first_error}")
    return spent / count * 1e6


def _payload(target: Target, result: Result, path: str = "") -> Any:
    if result.error is not None:
        raise BadResponse(f"{result.error.kind}: {result.error.message}")
    if target.kind == "sse":
        decoder = SSEDecoder()
        events = [event.data for event in decoder.feed(result.body or b"")]
        decoder.end()
        return events
    if target.kind == "multipart":
        return (result.body or b"").decode()
    if target.kind == "download":
        return path
    if target.decode == "json":
        return json.loads(result.body or b"")
    if target.decode == "text":
        return result_to_response(result).text
    return result.body or b""


def bulk_loop(target: Target, workers: int | None) -> ReadyLoop:
    def body(tally: Tally, stop: threading.Event, ready: threading.Event) -> None:
        from aioduct.local.engine import LocalEngine, usable_cpus

        count = workers or len(usable_cpus())
        per_worker = max(1, math.ceil(target.concurrency / count))
        options: dict[str, Any] = {}
        if not target.keepalive:  # no_pool: the engine keeps no idle connection
            options["pool_max_idle_per_host"] = 0
        options.update(tls_gzip_options(target))
        if target.h2c:  # the h2c scenarios: nginx's cleartext HTTP/2 listener
            options["http2_prior_knowledge"] = True
        # The mirrors are ports of 127.0.0.1 standing in for many sites; with cookies on
        # they would be one site, sharded to one worker (a site's cookies live in one).
        options["cookies"] = False
        urls, busy = spread_urls(target, count)
        if busy < count:
            print(f"aioduct-local: only {busy} of {count} workers own an origin", flush=True)

        content = streams.file_content(target.body_size) if target.kind == "multipart" else b""

        with (
            streams.download_path() as download,
            LocalEngine(workers=count, concurrency=per_worker, **options) as engine,
        ):
            path = str(download)  # the download scenarios' file (jobs() reads it late)
            EXTRA_CPU.append(lambda: processes_cpu(engine.pids))
            EXTRA_SYS.append(lambda: processes_sys(engine.pids))
            first = True
            jobs = _jobs(target, urls, stop, path, content)
            if target.one_at_a_time:
                results: Iterator[Result] = (
                    engine.request(job.method, job.url, body=job.body) for job in jobs
                )
            else:
                results = engine.map(jobs)
            for result in results:
                if first:  # ready once the workers answer, not once they are spawned:
                    ready.set()  # starting them (imports, pinning) is not the warm-up
                    try:
                        check_first_response(target, result.status, _payload(target, result, path))
                        first = False
                        tally.ok += 1
                    except Exception as exc:
                        tally.fail(exc)
                    continue
                _take(target, result, path, tally)

    return ReadyLoop(body)
