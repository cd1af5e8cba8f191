"""The local engine's pure parts: framing, sharding, in-flight bookkeeping, retry math."""

from __future__ import annotations

import asyncio
import datetime
import zlib

import pytest

from aioduct import ClientConfig, Job, Result, RetryConfig
from aioduct.errors import ConnectError, ReadTimeout, TLSError, WorkerCrashed
from aioduct.local import wire
from aioduct.local.dispatch import Dispatcher, origin_key
from aioduct.retries import parse_retry_after
from aioduct.runner import RunnerSettings, Window


def frames_bytes() -> bytes:
    out = bytearray()
    hello = wire.Hello(worker=1, cpu=0, config=ClientConfig(timeout=5), settings=RunnerSettings())
    wire.append_frame(out, wire.HELLO, hello)
    jobs = [Job(url="http://a/x", headers={"X": "1"}, meta=[1, "m"]), Job(url="http://b/", id=4)]
    wire.append_frame(out, wire.JOBS, ([7, 8], jobs, {1: 3}))
    results = [Result(id=3, url="http://a/x", status=200, body=b"\0"), Result(id=4, url="b")]
    wire.append_frame(out, wire.RESULTS, ([8, 7], results, [(1, 4096, 10)]))
    wire.append_frame(out, wire.FREE, 4106)
    wire.append_frame(out, wire.STOP, None)
    wire.append_frame(out, wire.FATAL, "no ring")
    return bytes(out)


def test_frames_survive_any_split() -> None:
    data = frames_bytes()
    whole = wire.FrameReader().feed(data)
    assert [k for k, _ in whole] == [wire.HELLO, wire.JOBS, wire.RESULTS, 4, 3, 12]
    jobs = whole[1][1]
    assert isinstance(jobs, wire.JobBatch) and jobs.seqs == [7, 8] and jobs.processes == {1: 3}
    assert jobs.jobs[0] == Job(url="http://a/x", headers=(("X", "1"),), meta=[1, "m"])
    results = whole[2][1]
    assert isinstance(results, wire.ResultBatch) and results.seqs == [8, 7]
    assert results.results[0].body == b"\0" and results.bodies == [(1, 4096, 10)]
    assert whole[3][1] == 4106 and whole[5][1] == "no ring"
    for cut in range(len(data)):
        reader = wire.FrameReader()
        got = reader.feed(data[:cut]) + reader.feed(memoryview(data)[cut:])
        assert got == whole and reader.pending == 0
    reader = wire.FrameReader()
    assert [f for b in data for f in reader.feed(bytes([b]))] == whole


def test_bad_frames_are_refused() -> None:
    with pytest.raises(wire.WireError, match="bad frame length"):
        wire.FrameReader().feed(b"\0\0\0\0" + bytes(20))
    with pytest.raises(wire.WireError, match="unknown frame kind 99"):
        wire.FrameReader().feed(b"\0\0\0\x01\x63")
    out = bytearray()
    wire.append_frame(out, wire.JOBS, {"not": "a batch"})
    with pytest.raises(wire.WireError, match="malformed frame of kind 2"):
        wire.FrameReader().feed(out)


def test_jobs_are_sharded_by_origin() -> None:
    d = Dispatcher(4, window=2)
    same = {d.shard(Job(url=f"http://Host.example:80/p/{i}")) for i in range(20)}
    assert same == {d.shard(Job(url="http://host.example/"))}  # default port, case folded
    spread = {d.shard(Job(url=f"http://h{i}.example/")) for i in range(64)}
    assert spread == {0, 1, 2, 3}
    assert d.shard(Job(url="not a url")) in range(4)  # the worker reports InvalidURL


def test_the_shard_cache_never_mixes_origins() -> None:
    """Shards are cached by the URL's text up to its first ``/`` after ``://``; every
    URL must still land where its own origin's parse puts it, whatever comes first
    (a query, a fragment, no path at all, userinfo, case, ports)."""
    urls = [
        "http://a.example?q=http://b.example/",
        "http://b.example/",
        "http://a.example#x/y",
        "http://a.example",
        "https://a.example/",
        "http://A.EXAMPLE:80/p",
        "http://user:pw@c.example:8080/p?x#y",
        "http://c.example:8080",
        "http://[::1]:8080/x",
        "not a url",
        "foo/bar",
        # Origins whose text starts alike: a prefix cut short would mix them up.
        *(f"http://h.example{tail}/x" for tail in ("", ".net", ".org", ":81", ":8081", "x")),
        *(f"http://h.example{tail}?/x" for tail in ("", ".net", ":81")),
        "http://h.exampl/x",
        "http://h.example",
    ]
    for workers in (2, 3, 7):
        d = Dispatcher(workers, window=8)
        for url in urls * 3:  # later rounds read the cache
            assert d.shard(Job(url=url)) == zlib.crc32(origin_key(url).encode()) % workers, url


def test_window_completion_and_attempts() -> None:
    d = Dispatcher(2, window=2)
    got: list[Result] = []
    jobs = [Job(url="http://a/1", id=1), Job(url="http://a/2", id=2)]
    worker = d.shard(jobs[0])
    assert [d.assign(job, got.append) for job in jobs] == [True, True]
    assert d.assign(Job(url="http://a/3"), got.append) is False  # its window is full
    assert not d.has_room(worker) and d.has_room(1 - worker) and d.total_in_flight == 2
    batch = d.outboxes[worker].take()
    assert batch is not None and batch[1] == jobs and d.outboxes[worker].take() is None
    a = batch[0][0]
    d.complete(worker, [a], [Result(id=1, url="http://a/1", status=200)])
    assert [r.id for r in got] == [1] and d.has_room(worker)
    d.complete(worker, [a], [Result(id=1, url="http://a/1")])  # already done: dropped
    assert len(got) == 1 and d.stats.completed == 1 and d.stats.errors == 0
    assert d.stats.submitted == 2


@pytest.mark.parametrize("workers", [1, 3])
def test_assign_many_is_assign_job_by_job(workers: int) -> None:
    """The batched path (one worker: a few C-level calls) keeps exactly what assigning
    each job in turn keeps: numbers, tables, outboxes, process ids, and where it stops."""
    jobs = [Job(url=f"http://h{i % 5}.example/{i}", id=i) for i in range(40)]
    one, many = Dispatcher(workers, window=6), Dispatcher(workers, window=6)
    sink: list[Result] = []
    taken = 0
    for job in jobs:
        if not one.assign(job, sink.append, process=2):
            break
        taken += 1
    assert many.assign_many(jobs, sink.append, process=2) == taken
    assert many.in_flight == one.in_flight and many._seq == one._seq
    for a, b in zip(many.outboxes, one.outboxes, strict=True):
        assert a.take() == b.take()
    assert many.assign_many(jobs[taken:], sink.append) == 0  # the same job is refused again
    assert many.assign_many([], sink.append) == 0


def test_window_holds_what_does_not_fit_and_counts_it_when_it_goes() -> None:
    """Jobs an engine has no room for wait at the head of the line, no item is pulled
    past them, and fill() counts them when they go (a driver sends only on a count)."""
    accepted: list[Job] = []
    capacity = [3]

    def submit(jobs: list[Job], sink: object) -> int:
        n = min(len(jobs), capacity[0])
        capacity[0] -= n
        accepted.extend(jobs[:n])
        return n

    pulled: list[int] = []

    def source():  # type: ignore[no-untyped-def]
        for i in range(12):
            pulled.append(i)
            yield f"http://a.example/{i}" if i % 2 else Job(url=f"http://b.example/{i}")

    window = Window(5, submit)
    items = source()
    assert window.fill(items) == 3 and len(window.held) == 2 and pulled == [0, 1, 2, 3, 4]
    assert window.fill(items) == 0 and pulled == [0, 1, 2, 3, 4]  # nothing past the held
    capacity[0] = 1
    assert window.fill(items) == 1 and len(window.held) == 1
    capacity[0] = 100
    assert window.fill(items) == 1 and not window.held  # the last held one; window full
    assert [job.id for job in accepted] == [0, 1, 2, 3, 4]
    assert [job.url for job in accepted] == [f"http://{'ba'[i % 2]}.example/{i}" for i in range(5)]
    window.done.extend([Result(id=0, url="u")] * 2)
    assert len(window.take()) == 2 and window.fill(items) == 2 and pulled[-1] == 6
    window.done.extend([Result(id=0, url="u")] * 5)
    window.take()
    assert window.fill(items) == 5 and not window.exhausted  # the source's end not seen yet
    window.done.extend([Result(id=0, url="u")] * 5)
    window.take()
    assert window.fill(items) == 0 and window.exhausted and window.finished
    assert [job.id for job in accepted] == list(range(12))


def test_an_async_sources_jobs_are_offered_as_they_come() -> None:
    """A job an async source gave is offered before the source is asked for the next
    one: a source that waits (on a queue, on the network) does not hold back the jobs
    it already gave."""
    offered: list[str] = []

    def submit(jobs: list[Job], sink: object) -> int:
        offered.extend(job.url for job in jobs)
        return len(jobs)

    async def main() -> None:
        gate = asyncio.Event()

        async def source():  # type: ignore[no-untyped-def]
            yield "http://a.example/1"
            await gate.wait()
            yield "http://a.example/2"

        window = Window(10, submit)
        filling = asyncio.create_task(window.afill(source()))
        for _ in range(10):  # event-loop steps, not time: the source is parked on the gate
            await asyncio.sleep(0)
        assert offered == ["http://a.example/1"] and not filling.done()
        gate.set()
        assert await filling == 2 and window.exhausted
        assert offered == ["http://a.example/1", "http://a.example/2"]

    asyncio.run(main())


def test_a_dead_workers_jobs_are_resent_then_given_up() -> None:
    d = Dispatcher(1, window=8, max_crashes=2)
    sinks: list[Result] = []
    d.assign(Job(url="http://a/1", id="one"), sinks.append, process=3)
    for round_ in (1, 2):
        assert d.orphaned(0) == []
        batch = d.outboxes[0].take()  # queued again for the replacement, with its process
        assert batch is not None and [j.id for j in batch[1]] == ["one"] and batch[2] == {0: 3}
        assert batch[3] == {0: round_}  # the replacement counts the dead workers' tries
        assert d.total_in_flight == 1 and d.stats.crashes == round_
    result = Result(id="one", url="http://a/1", status=200, attempts=3)
    d.complete(0, batch[0], [result])
    assert sinks == [result]
    assert (d.stats.submitted, d.stats.redispatched) == (1, 2)
    d.assign(Job(url="http://a/2", id="two"), sinks.append)
    d.orphaned(0), d.orphaned(0)
    failed = d.orphaned(0)
    assert len(failed) == 1 and d.outboxes[0].take() is None
    _, gave_up = failed[0]
    assert gave_up.error is not None and gave_up.error.kind == "WorkerCrashed"
    assert gave_up.status == 0 and gave_up.attempts == 3 and d.total_in_flight == 0


def test_retry_decisions() -> None:
    retry = RetryConfig(max_retries=3, initial_backoff=0.1, max_backoff=1.0)
    assert [retry.backoff(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert retry.backoff(0, "7") == 1.0  # Retry-After honoured, capped by max_backoff
    assert RetryConfig(max_backoff=60).backoff(0, "7") == 7.0
    assert retry.backoff(2, "soon") == pytest.approx(0.4)  # unparseable: normal backoff
    assert retry.retries_error(ConnectError("x")) and retry.retries_error(ReadTimeout("x"))
    assert retry.retries_error(WorkerCrashed("x")) and not retry.retries_error(TLSError("x"))
    assert retry.retries_status(503) and retry.retries_status(429)
    assert not retry.retries_status(404) and not RetryConfig(retry_on_status=False).retries_status(
        503
    )
    with pytest.raises(ValueError, match="max_retries"):
        RetryConfig(max_retries=-1)


def test_retry_after_dates() -> None:
    now = datetime.datetime(2026, 10, 21, 7, 27, 0, tzinfo=datetime.UTC).timestamp()
    clock = lambda: now  # noqa: E731
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", wall_clock=clock) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", wall_clock=clock) == 0.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("-5") is None and parse_retry_after("tomorrow") is None


def test_balanced_sharding_picks_the_least_busy_worker() -> None:
    d = Dispatcher(3, window=10, sharding="balanced")
    for i in range(6):
        assert d.assign(Job(url="http://one.example/x", id=i), lambda r: None)
    assert [len(t) for t in d.in_flight] == [2, 2, 2]  # one host, spread evenly
    with pytest.raises(ValueError, match="sharding must be 'origin' or 'balanced'"):
        Dispatcher(2, window=1, sharding="random")
