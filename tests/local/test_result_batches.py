"""A worker holds a small batch of Results back briefly, and never for a slow job.

Sending each loop turn's Results at once made a frame per one or two Results when
responses trickle in (HTTP/2 streams), and every frame costs the parent a wake-up; so
a worker with other jobs in hand lets a small batch wait up to ``_HOLD`` for more.
That wait must be bounded by time alone: a Result must reach the caller while the
worker's other jobs are still stuck, however long they stay stuck.
"""

from __future__ import annotations

import threading

from aioduct import Job, LocalEngine
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_finished_job_is_not_held_for_stuck_ones(
    script_server: ScriptServer, loop_kind: str
) -> None:
    release = threading.Event()

    @script_server.route("/stuck")
    async def stuck(conn: Conn, req: ServerRequest) -> None:
        while not release.is_set():  # until the test has the fast job's Result
            await conn.sleep(0.01)
        await conn.send(OK)

    @script_server.route("/fast")
    async def fast(conn: Conn, req: ServerRequest) -> None:
        await conn.send(OK)

    jobs = [Job(url=f"{script_server.url}/stuck", id=i) for i in range(3)]
    jobs.append(Job(url=f"{script_server.url}/fast", id="fast"))
    # No heartbeats (stall_timeout=None): a heartbeat sends held Results too, and would
    # hide a hold that waits for the other jobs (the test would then hang, and fail on
    # pytest's timeout, instead of passing after a beat).
    with LocalEngine(
        workers=1, loop=loop_kind, concurrency=8, timeout=60, stall_timeout=None
    ) as engine:
        results = engine.map(jobs)
        try:
            first = next(results)
            assert first.id == "fast" and first.status == 200
            assert not release.is_set()
        finally:
            release.set()
        rest = sorted(result.id for result in results)
    assert rest == [0, 1, 2]


def test_many_jobs_many_batches_every_result_once(
    script_server: ScriptServer, loop_kind: str
) -> None:
    """Results held and sent in batches of every size still come back exactly once."""

    @script_server.route("/n")
    async def numbered(conn: Conn, req: ServerRequest) -> None:
        if int(req.query) % 7 == 0:
            await conn.sleep(0.002)  # some later than others: batches of every size
        body = req.query.encode()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    jobs = [Job(url=f"{script_server.url}/n?{i}", id=i) for i in range(300)]
    with LocalEngine(workers=1, loop=loop_kind, concurrency=10) as engine:
        results = list(engine.map(jobs))
    assert sorted(r.id for r in results) == list(range(300))
    assert all(r.body == str(r.id).encode() for r in results)
