"""Every way a body received into a worker's shared-memory ring can end without
becoming its job's Result body -- a ``process=`` function, a job's total timeout, a
redirect hop, a HEAD or 304 announcing a length -- gives its span back: with room for
exactly one body, one leaked span would send every later body inline."""

from __future__ import annotations

import hashlib

import pytest

from aioduct import Job, LocalEngine
from aioduct.local import shm
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

from .test_big_bodies import head, payload

pytestmark = pytest.mark.skipif(not shm.supported(), reason="no memfd_create on this platform")

DIGEST = "tests.local.processes:digest"


def test_bodies_that_do_not_become_results_free_their_span(
    script_server: ScriptServer, loop_kind: str
) -> None:
    size = 1 << 20
    good = payload(size, 7)

    @script_server.route("/good")
    async def ok(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(size) + good[:1000])
        await conn.sleep(0.02)
        await conn.send(good[1000:])

    @script_server.route("/moved")
    async def moved(conn: Conn, req: ServerRequest) -> None:
        await conn.send(
            b"HTTP/1.1 302 Found\r\nLocation: /good\r\nContent-Length: %d\r\n\r\n" % size
            + good[:1000]
        )
        await conn.sleep(0.02)
        await conn.send(good[1000:])

    @script_server.route("/stall")
    async def stall(conn: Conn, req: ServerRequest) -> None:
        await conn.send(head(size) + good[:1000])
        await conn.sleep(0.02)
        await conn.send(good[1000:300_000])
        await conn.sleep(5)

    script_server.route_raw("/head", head(size))
    script_server.route_raw(
        "/nc", b"HTTP/1.1 304 Not Modified\r\nContent-Length: %d\r\n\r\n" % size
    )

    url = script_server.url
    with LocalEngine(
        workers=1, loop=loop_kind, concurrency=1, shm_size=size + 4096, read_timeout=5
    ) as engine:
        digests = list(engine.map([Job(url=url + "/good", id=i) for i in range(3)], process=DIGEST))
        assert all(r.value["sha256"] == hashlib.sha256(good).hexdigest() for r in digests)  # type: ignore[index]
        others = [
            Job(url=url + "/stall", id="stall", timeout=0.5),
            Job(url=url + "/head", id="head", method="HEAD"),
            Job(url=url + "/nc", id="nc"),
            Job(url=url + "/moved", id="moved"),
        ]
        results = {r.id: r for r in engine.map(others)}
        assert results["stall"].error is not None, results["stall"]
        assert results["head"].status == 200 and not results["head"].body
        assert results["nc"].status == 304 and not results["nc"].body
        assert results["moved"].status == 200 and results["moved"].body == good
        before = engine.stats.shared_bodies
        goods = list(engine.map([Job(url=url + "/good", id=i) for i in range(4)]))
        shared = engine.stats.shared_bodies - before
    assert all(r.body == good for r in goods)
    assert shared >= 1, "a span was never given back: every body went inline"
