"""The local engine's pure parts: framing, sharding, in-flight bookkeeping, retry math."""

from __future__ import annotations

import datetime

import pytest

from aioduct import ClientConfig, Job, Result, RetryConfig
from aioduct.errors import ConnectError, ReadTimeout, TLSError, WorkerCrashed
from aioduct.local import wire
from aioduct.local.dispatch import Dispatcher
from aioduct.retries import parse_retry_after
from aioduct.runner import RunnerSettings


def frames_bytes() -> bytes:
    out = bytearray()
    hello = wire.Hello(worker=1, cpu=0, config=ClientConfig(timeout=5), settings=RunnerSettings())
    wire.append_frame(out, wire.HELLO, 0, hello)
    wire.append_frame(out, wire.JOB, 7, Job(url="http://a/x", headers={"X": "1"}, meta=[1, "m"]))
    wire.append_frame(out, wire.RESULT, 7, Result(id=3, url="http://a/x", status=200, body=b"\0"))
    wire.append_frame(out, wire.STOP, 0, None)
    wire.append_frame(out, wire.FATAL, 0, "no ring")
    return bytes(out)


def test_frames_survive_any_split() -> None:
    data = frames_bytes()
    whole = wire.FrameReader().feed(data)
    assert [(k, s) for k, s, _ in whole] == [(1, 0), (2, 7), (11, 7), (3, 0), (12, 0)]
    assert whole[1][2] == Job(url="http://a/x", headers=(("X", "1"),), meta=[1, "m"])
    assert whole[2][2].body == b"\0" and whole[4][2] == "no ring"
    for cut in range(len(data)):
        reader = wire.FrameReader()
        got = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert got == whole and reader.pending == 0
    reader = wire.FrameReader()
    assert [f for b in data for f in reader.feed(bytes([b]))] == whole


def test_bad_frames_are_refused() -> None:
    with pytest.raises(wire.WireError, match="bad frame length"):
        wire.FrameReader().feed(b"\0\0\0\1" + bytes(20))
    with pytest.raises(wire.WireError, match="unknown frame kind 99"):
        wire.FrameReader().feed(b"\0\0\0\x0a\x63" + bytes(9))
    out = bytearray()
    wire.append_frame(out, wire.JOB, 1, {"not": "a job"})
    with pytest.raises(wire.WireError, match="malformed frame of kind 2"):
        wire.FrameReader().feed(out)


def test_jobs_are_sharded_by_origin() -> None:
    d = Dispatcher(4, window=2)
    same = {d.shard(Job(url=f"http://Host.example:80/p/{i}")) for i in range(20)}
    assert same == {d.shard(Job(url="http://host.example/"))}  # default port, case folded
    spread = {d.shard(Job(url=f"http://h{i}.example/")) for i in range(64)}
    assert spread == {0, 1, 2, 3}
    assert d.shard(Job(url="not a url")) in range(4)  # the worker reports InvalidURL


def test_window_completion_and_attempts() -> None:
    d = Dispatcher(2, window=2)
    got: list[Result] = []
    a = d.assign(0, Job(url="http://a/1", id=1), got.append)
    d.assign(0, Job(url="http://a/2", id=2), got.append)
    assert not d.has_room(0) and d.has_room(1) and d.total_in_flight == 2
    sink = d.complete(0, a, Result(id=1, url="http://a/1", status=200))
    assert sink is not None and d.has_room(0)
    assert d.complete(0, a, Result(id=1, url="http://a/1")) is None  # already done
    assert d.stats.completed == 1 and d.stats.errors == 0


def test_a_dead_workers_jobs_are_resent_then_given_up() -> None:
    d = Dispatcher(1, window=8, max_crashes=2)
    sinks: list[Result] = []
    d.assign(0, Job(url="http://a/1", id="one"), sinks.append)
    for round_ in (1, 2):
        resend, failed = d.orphaned(0)
        assert failed == [] and len(resend) == 1 and resend[0][1].id == "one"
        assert d.total_in_flight == 1 and d.stats.crashes == round_
    seq = resend[0][0]
    result = Result(id="one", url="http://a/1", status=200)
    assert d.complete(0, seq, result) is not None and result.attempts == 3
    d.assign(0, Job(url="http://a/2", id="two"), sinks.append)
    d.orphaned(0), d.orphaned(0)
    resend, failed = d.orphaned(0)
    assert resend == [] and len(failed) == 1
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
    picks = []
    for i in range(6):
        job = Job(url="http://one.example/x", id=i)
        worker = d.shard(job)
        d.assign(worker, job, lambda r: None)
        picks.append(worker)
    assert sorted(picks) == [0, 0, 1, 1, 2, 2]  # one host, spread evenly
    with pytest.raises(ValueError, match="sharding must be 'origin' or 'balanced'"):
        Dispatcher(2, window=1, sharding="random")
