"""Large bodies received straight into a worker's shared-memory ring, on both worker
loops: out-of-order completion, a full ring, and bodies that fail or are not the Result's
(redirect hops) giving their space back."""

from __future__ import annotations

import gzip
import random

import pytest

from aioduct import Job, LocalEngine
from aioduct.bodybuffers import DIRECT_MIN
from aioduct.local import shm
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

pytestmark = pytest.mark.skipif(not shm.supported(), reason="no memfd_create on this platform")


def head(length: int, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (length, extra)


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def serve_bodies(srv: ScriptServer, bodies: list[bytes]) -> None:
    """``/body?i``: the head and 5000 bytes, then -- the later ``i % 8``, the sooner --
    the rest: bodies received at the same time finish in the reverse order."""

    @srv.route("/body")
    async def body(conn: Conn, req: ServerRequest) -> None:
        i = int(req.query)
        await conn.send(head(len(bodies[i])) + bodies[i][:5000])
        await conn.sleep(0.01 * (8 - i % 8))
        await conn.send(bodies[i][5000:])


def test_concurrent_bodies_finishing_out_of_order(
    script_server: ScriptServer, loop_kind: str
) -> None:
    bodies = [payload(300_000 + 1000 * i, i) for i in range(32)]
    serve_bodies(script_server, bodies)
    jobs = [Job(url=f"{script_server.url}/body?{i}", id=i) for i in range(32)]
    with LocalEngine(workers=1, loop=loop_kind, concurrency=8) as engine:
        results = sorted(engine.map(jobs), key=lambda r: r.id)
        shared = engine.stats.shared_bodies
    assert [r.body for r in results] == bodies
    assert all(type(r.body) is bytes and r.size == len(r.body) for r in results)
    assert shared == len(bodies)  # 8 at a time never fill 32 MiB


def test_a_full_ring_receives_the_rest_inline(script_server: ScriptServer, loop_kind: str) -> None:
    bodies = [payload(300_000, i) for i in range(24)]
    serve_bodies(script_server, bodies)
    jobs = [Job(url=f"{script_server.url}/body?{i}", id=i) for i in range(24)]
    # Room for three bodies, eight received at a time: the others get buffers of their own.
    with LocalEngine(workers=1, loop=loop_kind, concurrency=8, shm_size=1 << 20) as engine:
        results = sorted(engine.map(jobs), key=lambda r: r.id)
        shared = engine.stats.shared_bodies
    assert [r.body for r in results] == bodies
    assert 0 < shared < len(bodies)


def test_bodies_at_the_thresholds(script_server: ScriptServer, loop_kind: str) -> None:
    sizes = [shm.DEFAULT_THRESHOLD - 1, shm.DEFAULT_THRESHOLD, DIRECT_MIN - 1, DIRECT_MIN]
    sizes += [DIRECT_MIN + 1, 1 << 20]
    bodies = [payload(size, size) for size in sizes]
    serve_bodies(script_server, bodies)
    jobs = [Job(url=f"{script_server.url}/body?{i}", id=i) for i in range(len(bodies))]
    with LocalEngine(workers=1, loop=loop_kind, concurrency=4) as engine:
        results = sorted(engine.map(jobs), key=lambda r: r.id)
        shared = engine.stats.shared_bodies
    assert [r.body for r in results] == bodies
    assert shared == len(sizes) - 1  # all but the one below the ring's threshold


def test_failed_and_unclaimed_bodies_give_their_space_back(
    script_server: ScriptServer, loop_kind: str
) -> None:
    """A ring of two bodies' room, and many 1 MiB bodies that fail or are not their
    job's Result body (compressed ones: the Result has the decoded body) first: if any of
    them kept its span, no later body could go through the ring."""
    size = 1 << 20
    good = payload(size, 99)
    packed = gzip.compress(good, compresslevel=1)  # random bytes: about as large

    @script_server.route("/reset")
    async def reset(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(size) + b"x" * 1000)
        await conn.sleep(0.02)
        await conn.send(b"y" * 200_000)
        await conn.sleep(0.02)
        conn.reset()

    @script_server.route("/short")
    async def short(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(size) + b"x" * 1000)
        await conn.sleep(0.02)
        await conn.send(b"y" * 200_000)
        conn.close()

    @script_server.route("/stall")
    async def stall(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(size) + b"x" * 1000)
        await conn.sleep(0.02)
        await conn.send(b"y" * 200_000)
        await conn.sleep(5)

    @script_server.route("/gzip")
    async def gzipped(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(len(packed), b"Content-Encoding: gzip\r\n") + packed[:1000])
        await conn.sleep(0.02)
        await conn.send(packed[1000:])

    @script_server.route("/good")
    async def ok(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(size) + good[:1000])
        await conn.sleep(0.02)
        await conn.send(good[1000:])

    failing = ["/reset", "/short", "/stall"] * 2
    jobs = [Job(url=script_server.url + path, id=i) for i, path in enumerate(failing)]
    jobs += [Job(url=script_server.url + "/gzip", id=10 + i) for i in range(3)]
    goods = [Job(url=script_server.url + "/good", id=20 + i) for i in range(3)]
    with LocalEngine(
        workers=1, loop=loop_kind, concurrency=1, shm_size=2 * size + 4096, read_timeout=0.3
    ) as engine:
        results = {r.id: r for r in engine.map(jobs)}
        before = engine.stats.shared_bodies
        results.update((r.id, r) for r in engine.map(goods))
        shared = engine.stats.shared_bodies - before
    for i, path in enumerate(failing):
        error = results[i].error
        assert error is not None and results[i].body is None, (path, results[i])
        kinds = {"/stall": {"ReadTimeout"}, "/short": {"RemoteProtocolError"}}
        assert error.kind in kinds.get(path, {"ReadError", "RemoteProtocolError"}), error
    for i in [*range(10, 13), *range(20, 23)]:
        assert results[i].error is None and results[i].body == good, results[i]
    assert shared >= 1


def test_a_length_above_max_body_size_takes_no_space(
    script_server: ScriptServer, loop_kind: str
) -> None:
    good = payload(200_000, 5)

    @script_server.route("/big")
    async def big(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(len(good)) + good[:1000])
        await conn.sleep(0.02)
        await conn.send(good[1000:])

    jobs = [Job(url=script_server.url + "/big", id=i) for i in range(4)]
    with LocalEngine(workers=1, loop=loop_kind, max_body_size=100_000) as engine:
        results = list(engine.map(jobs))
    assert all(r.error is not None and r.error.kind == "BodyTooLarge" for r in results)
    with LocalEngine(workers=1, loop=loop_kind, max_body_size=len(good)) as engine:
        results = list(engine.map(jobs))  # exactly at the limit
    assert all(r.body == good for r in results)


def test_bodies_after_reads_that_ended_mid_receive_are_intact(
    script_server: ScriptServer, loop_kind: str
) -> None:
    """A body that times out (read_timeout, or the job's total timeout) while the
    worker's loop receives it into a span: the span goes to the next body only once the
    kernel is done with it. The stalled servers resume while the next bodies are
    received into the same spans (first fit): their bytes must not land there."""
    size = 1 << 20
    bodies = [payload(size, 200 + i) for i in range(6)]

    @script_server.route("/stall")
    async def stall(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(size) + b"x" * 200_000)
        await conn.sleep(0.8)
        await conn.send(b"\xaa" * (size - 200_000))

    @script_server.route("/slow")
    async def slow(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(size) + b"x" * 1000)
        for _ in range(40):  # never silent for long, never done in time
            await conn.sleep(0.05)
            await conn.send(b"\xbb" * 20_000)

    @script_server.route("/body")
    async def body(conn: Conn, req: ServerRequest) -> None:
        data = bodies[int(req.query)]
        await conn.send(head(size) + data[:1000])
        for i in range(1000, size, 150_000):
            await conn.sleep(0.04)
            await conn.send(data[i : i + 150_000])

    failing = [
        Job(url=script_server.url + "/stall", id="stall"),
        Job(url=script_server.url + "/slow", id="slow", timeout=0.4),
    ]
    goods = [Job(url=f"{script_server.url}/body?{i}", id=i) for i in range(len(bodies))]
    with LocalEngine(
        workers=1, loop=loop_kind, concurrency=1, shm_size=2 * size + 4096, read_timeout=0.3
    ) as engine:
        for job in failing:
            (result,) = engine.map([job])
            assert result.error is not None and result.body is None, result
            assert result.error.kind.endswith("Timeout"), result.error
            results = list(engine.map(goods[:3] if job.id == "stall" else goods[3:]))
            for r in results:
                assert r.error is None and r.body == bodies[int(str(r.id))], r.id
        shared = engine.stats.shared_bodies
    assert shared == len(bodies)
