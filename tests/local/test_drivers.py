"""Every driver of the one pipeline gives the same Results for the same Jobs.

The same Jobs run through the send engine (a JobRunner on this process's loop), through a
local-engine worker process on each of its loops (io_uring and asyncio) and -- where no
retries or politeness are involved -- through BlockingClient on the blocking runtime,
and their Results must agree field by field (timings and the worker number aside). The
cases are the pipeline's whole surface as a crawler meets it: nginx's statuses, methods,
bodies, redirects (cross-origin credentials included), limits, retries and politeness,
https, and hostile servers whose errors must come out the same, with nothing hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest
from msgspec.structs import replace

from aioduct import AioductError, BlockingClient, Job, LocalEngine, RetryConfig, SendEngine, uring
from aioduct.client import Client
from aioduct.jobs import Result, error_result, job_url, response_result
from aioduct.runner import JobRunner, RunnerSettings, bulk_config
from aioduct.testing.nginx import GZIP_BODY, Nginx
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

#: Headers whose values legitimately differ between two runs against the same server.
_VOLATILE = frozenset(("date", "last-modified", "etag"))


def _run(loop_kind: str, coro: Coroutine[Any, Any, Any]) -> Any:
    if loop_kind == "uring":
        from aioduct.uring.loop import new_event_loop
    else:
        from aioduct.client import new_event_loop
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)


def _comparable(result: Result) -> dict[str, Any]:
    fields = {name: getattr(result, name) for name in Result.__struct_fields__}
    timings = fields.pop("timings")
    fields.pop("worker")
    fields["has_timings"] = timings is not None
    fields["headers"] = tuple(
        (name, "*" if name.lower() in _VOLATILE else value) for name, value in result.headers
    )
    return fields


def _engines() -> list[tuple[str, Callable[..., Any]]]:
    engines: list[tuple[str, Callable[..., Any]]] = [("send", SendEngine)]
    reason = uring.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    engines.append(("local-uring", lambda **kw: LocalEngine(workers=1, loop="uring", **kw)))
    engines.append(("local-asyncio", lambda **kw: LocalEngine(workers=1, loop="asyncio", **kw)))
    return engines


#: Job-runner settings: what a bulk engine takes beyond ClientConfig options.
_RUNNER_OPTIONS = frozenset(
    ("concurrency", "per_host_concurrency", "per_host_rate", "retry", "keep_body")
)


def _blocking_results(jobs: Sequence[Job], options: dict[str, Any]) -> list[Result]:
    """The jobs through BlockingClient (the blocking driver), one after another.

    The blocking client has no job runner (no retries or politeness): only runner-free
    cases run on it, each job converted as JobRunner converts an attempt.
    """
    config = bulk_config(None, {k: v for k, v in options.items() if k not in _RUNNER_OPTIONS}, 16)
    results = []
    with BlockingClient(config=config) as client:
        for job in jobs:
            try:
                url = job_url(job)
                response = client.request(job.method, url, **job.request_options())
            except AioductError as exc:
                results.append(error_result(job, exc))
            else:
                results.append(response_result(job, response))
    return results


def _differential(jobs: Sequence[Job], **options: Any) -> list[Result]:
    """Run ``jobs`` on every driver; assert equal Results; return the send engine's."""
    jobs = [job if job.id is not None else replace(job, id=i) for i, job in enumerate(jobs)]
    outcomes: dict[str, list[Result]] = {}
    for name, make in _engines():
        with make(**options) as engine:
            by_id = {result.id: result for result in engine.map(jobs)}
        outcomes[name] = [by_id[job.id] for job in jobs]
    if not _RUNNER_OPTIONS.intersection(options) - {"concurrency"}:
        outcomes["blocking"] = _blocking_results(jobs, options)
    reference = outcomes["send"]
    for name, results in outcomes.items():
        for job, want, got in zip(jobs, reference, results, strict=True):
            assert _comparable(got) == _comparable(want), (name, job, want, got)
            if got.error is None:
                assert got.timings is not None and got.timings.total > 0
    return reference


def test_nginx_jobs(nginx: Nginx) -> None:
    base = nginx.http_url
    post_bodies = [b"", b"x", b"y" * 5000, b"z" * 65536]
    jobs = [
        Job(url=base + "/small", id="small", meta={"m": 1}),
        Job(url=base + "/", id="root"),
        Job(url=base + "/text"),
        Job(url=base + "/json"),
        Job(url=base + "/bytes/64k"),
        Job(url=base + "/bytes/1m"),
        *(Job(url=f"{base}/status/{code}") for code in (200, 201, 204, 304, 404, 418, 500, 503)),
        Job(url=base + "/small", method="HEAD"),
        Job(url=base + "/bytes/64k", method="HEAD"),
        *(Job(url=base + "/post", method="POST", body=b) for b in post_bodies),
        Job(url=base + "/post", method="PUT", body=b"put"),
        Job(url=base + "/post", method="DELETE"),
        Job(url=base + "/post", method="PATCH", body=b"{}"),
        Job(url=base + "/post", method="OPTIONS"),
        *(Job(url=f"{base}/redirect/{code}/small") for code in (301, 302, 303, 307, 308)),
        *(
            Job(url=f"{base}/redirect/{code}/post", method="POST", body=b"abc")
            for code in (301, 302, 303, 307, 308)
        ),
        Job(url=base + "/redirect/302/small", method="HEAD"),
        Job(url=base + "/redirect/302/small", follow_redirects=False),
        Job(url=base + "/redirect/302/small?q=1#frag"),
        Job(
            url=base + "/cross/302/echo/headers",
            headers={"Authorization": "Bearer secret", "Cookie": "a=1", "X-Test": "kept"},
        ),
        Job(url=base + "/redirect/302/echo/headers", headers={"Authorization": "Bearer same"}),
        Job(url=base + "/chain/5"),
        Job(url=base + "/loop"),
        Job(url=base + "/redirect-scheme"),
        Job(url=base + "/redirect-empty"),
        Job(url=base + "/redirect-missing"),
        Job(url=base + "/close"),
        Job(url=base + "/close", method="HEAD"),
        Job(url=base + "/gzip", headers={"Accept-Encoding": "gzip"}),  # chunked
        Job(url=base + "/headers/many"),
        Job(url=base + "/echo/headers", headers=[("X-Test", "a"), ("User-Agent", "mine")]),
        Job(url="http://127.0.0.1:1/", id="refused"),
        Job(url="ftp://example.org/", id="scheme"),
        Job(url="not a url", id="garbage"),
        Job(url="http://", id="nohost"),
    ]
    # (A Job with a bad header cannot be built: tests/test_invalid_requests.py.)
    results = _differential(jobs, concurrency=16)
    by_id = {r.id: r for r in results if r.id is not None}
    assert by_id["small"].body == b"Hello, World!" and by_id["small"].meta == {"m": 1}
    assert by_id["small"].http_version == "HTTP/1.1"
    kinds = {key: by_id[key].error.kind for key in ("refused", "scheme", "garbage")}  # type: ignore[union-attr]
    assert kinds == {
        "refused": "ConnectError",
        "scheme": "InvalidURL",
        "garbage": "InvalidURL",
    }
    by_url = {r.url: r for r in results}
    assert by_url[base + "/loop"].error.kind == "TooManyRedirects"  # type: ignore[union-attr]
    cross = by_url[base + "/cross/302/echo/headers"]
    assert cross.final_url == nginx.alt_http_url + "/echo/headers"
    assert b"secret" not in (cross.body or b"") and b"kept" in (cross.body or b"")


def test_config_limits(nginx: Nginx) -> None:
    base = nginx.http_url
    options = {"max_redirects": 2, "max_body_size": 1000, "follow_redirects": False, "timeout": 5}
    jobs = [
        Job(url=base + "/chain/5", follow_redirects=True),
        Job(url=base + "/chain/2", follow_redirects=True),
        Job(url=base + "/chain/1"),
        Job(url=base + "/bytes/64k"),
        Job(url=base + "/small"),
        Job(url=base + "/bytes/64k", method="HEAD"),
    ]
    results = _differential(jobs, concurrency=16, **options)
    kinds = [r.error.kind if r.error else r.status for r in results]
    assert kinds == ["TooManyRedirects", 200, 302, "BodyTooLarge", 200, 200]


def test_keep_body_retries_and_politeness(nginx: Nginx) -> None:
    base = nginx.http_url
    settings = {
        "concurrency": 4,
        "per_host_concurrency": 2,
        "per_host_rate": 200.0,
        "retry": RetryConfig(max_retries=2, initial_backoff=0.01),
        "keep_body": False,
    }
    jobs = [
        Job(url=base + "/status/503"),
        Job(url=base + "/status/429"),
        Job(url=base + "/status/404"),
        Job(url="http://127.0.0.1:1/"),
        *(Job(url=f"{base}/small?{i}") for i in range(12)),
    ]
    results = _differential(jobs, **settings)
    assert [r.attempts for r in results[:4]] == [3, 3, 1, 3]
    assert all(r.body is None and r.size == 13 for r in results[4:])


def test_https_big_bodies_and_scheme_changing_redirects(
    nginx: Nginx, tls_ca: Any, script_server: ScriptServer
) -> None:
    script_server.route_raw(
        "/to-https",
        b"HTTP/1.1 302 Found\r\nLocation: "
        + nginx.https_url.encode()
        + b"/small\r\nContent-Length: 0\r\n\r\n",
    )
    jobs = [
        Job(url=nginx.https_url + "/small"),
        Job(url=nginx.https_url + "/bytes/1m"),
        Job(url=nginx.http_url + "/post", method="POST", body=b"b" * 100_000),
        Job(url=script_server.url + "/to-https"),
        Job(url=nginx.http_url + "/small"),
    ]
    results = _differential(jobs, concurrency=16, verify=tls_ca.ca_pem_path)
    assert [r.status for r in results] == [200, 200, 200, 200, 200]
    assert results[3].final_url == nginx.https_url + "/small"


# -- hostile servers ------------------------------------------------------------------------------


def _script(srv: ScriptServer) -> dict[str, str]:
    """Routes for the hostile cases; returns their URLs by name."""

    def raw(path: str, data: bytes, *, close: bool = True) -> None:
        srv.route_raw(path, data, close=close)

    raw("/truncated", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    raw("/bad-chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
    raw("/chunk-eof", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
    big = b"X-Big: " + b"a" * 3000
    raw("/huge-head", b"HTTP/1.1 200 OK\r\n" + big + b"\r\nContent-Length: 0\r\n\r\n")
    raw("/eof-body", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
    raw("/http10", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", close=False)
    raw("/garbage", b"SPDY/9 200 nope\r\n\r\n")
    raw("/nothing", b"")
    raw("/both", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
    raw(
        "/chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n1;ext=1\r\nd\r\n0\r\nX-Trailer: t\r\n\r\n",
        close=False,
    )
    raw("/extra", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", close=False)

    @srv.route("/reset-mid-body")
    async def reset(conn: Conn, req: ServerRequest) -> None:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await conn.sleep(0.05)
        conn.reset()

    @srv.route("/silent")
    async def silent(conn: Conn, req: ServerRequest) -> None:
        await conn.sleep(30)

    @srv.route("/drip")
    async def drip(conn: Conn, req: ServerRequest) -> None:
        await conn.drip(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", chunk_size=7)

    @srv.route("/stall-body")
    async def stall(conn: Conn, req: ServerRequest) -> None:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await conn.sleep(30)

    @srv.route("/stale")
    async def stale(conn: Conn, req: ServerRequest) -> None:
        if len(conn.requests) > 1:  # the connection's second request: hang up unanswered
            conn.close()
            return
        await conn.send_response(200, [("Content-Type", "text/plain")], b"fresh")

    return {
        name: srv.url + "/" + name
        for name in (
            "truncated",
            "bad-chunk",
            "chunk-eof",
            "huge-head",
            "eof-body",
            "http10",
            "garbage",
            "nothing",
            "both",
            "chunked",
            "extra",
            "reset-mid-body",
            "silent",
            "drip",
            "stall-body",
        )
    }


def test_hostile_servers(script_server: ScriptServer) -> None:
    urls = _script(script_server)
    jobs = [Job(url=url, id=name) for name, url in urls.items()]
    jobs.append(Job(url=urls["silent"], id="total", timeout=0.2))
    results = _differential(jobs, concurrency=16, read_timeout=0.3, max_response_head_bytes=1024)
    got = {r.id: (r.error.kind if r.error else r.status) for r in results}
    assert got == {
        "truncated": "RemoteProtocolError",
        "bad-chunk": "RemoteProtocolError",
        "chunk-eof": "RemoteProtocolError",
        "huge-head": "RemoteProtocolError",
        "eof-body": 200,
        "http10": 200,
        "garbage": "RemoteProtocolError",
        "nothing": "RemoteProtocolError",
        "both": "RemoteProtocolError",
        "chunked": 200,
        "extra": 200,
        "reset-mid-body": "ReadError",
        "silent": "ReadTimeout",
        "drip": 200,
        "stall-body": "ReadTimeout",
        "total": "TotalTimeout",
    }
    by_id = {r.id: r for r in results}
    assert by_id["eof-body"].body == b"until the end"
    assert by_id["chunked"].body == b"abcd"
    assert by_id["http10"].http_version == "HTTP/1.0"


# -- compressed bodies ----------------------------------------------------------------------------


def test_compressed_bodies(nginx: Nginx, script_server: ScriptServer) -> None:
    """Every driver decodes alike: a Result's body is the decoded body and its size the
    decoded length; corrupt streams, bombs and long chains are the same errors."""
    from tests.decompress.bodies import GIB, bomb, encode, encode_chain

    data = b"".join(b"%d: compressible line\n" % i for i in range(2000))
    srv = script_server
    for name, coding in (
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("deflate-raw", "deflate"),
        ("br", "br"),
        ("zstd", "zstd"),
    ):
        srv.route_respond(
            "/" + name, headers=[("Content-Encoding", coding)], body=encode(name, data)
        )
    stack = ["gzip", "br"]
    srv.route_respond(
        "/stack", headers=[("Content-Encoding", "gzip, br")], body=encode_chain(stack, data)
    )
    srv.route_respond("/corrupt", headers=[("Content-Encoding", "zstd")], body=b"not zstd at all")
    srv.route_respond("/chain", headers=[("Content-Encoding", "gzip")] * 6, body=b"")
    srv.route_respond("/bomb", headers=[("Content-Encoding", "br")], body=bomb("br", GIB))
    srv.route_respond("/unknown", headers=[("Content-Encoding", "snappy")], body=b"as sent")
    compressed = ["gzip", "deflate", "deflate-raw", "br", "zstd", "stack"]
    jobs = [Job(url=f"{srv.url}/{name}", id=name) for name in compressed]
    jobs += [
        Job(url=f"{srv.url}/{name}", id=name) for name in ("corrupt", "chain", "bomb", "unknown")
    ]
    jobs += [
        Job(url=nginx.http_url + "/gzip-static", id="static"),
        Job(url=nginx.http_url + "/gzip", id="dynamic"),
        Job(url=nginx.http_url + "/gzip-static", method="HEAD", id="head"),
    ]
    results = _differential(jobs, concurrency=8, max_body_size=1 << 20)
    by_id = {r.id: r for r in results}
    for name in compressed:
        assert by_id[name].body == data and by_id[name].size == len(data), name
    for name in ("static", "dynamic"):
        assert by_id[name].body == GZIP_BODY and by_id[name].size == len(GZIP_BODY)
    assert by_id["head"].body == b"" and ("content-encoding", "gzip") in [
        (k.lower(), v) for k, v in by_id["head"].headers
    ]
    assert by_id["unknown"].body == b"as sent"
    errors = {key: by_id[key].error for key in ("corrupt", "chain", "bomb")}
    assert {key: e.kind if e else None for key, e in errors.items()} == {
        "corrupt": "DecodeError",
        "chain": "DecodeError",
        "bomb": "BodyTooLarge",
    }


# -- the pool under hostile servers, on each worker loop ----------------------------------------


def _with_runner(loop_kind: str, body: Callable[[JobRunner], Coroutine[Any, Any, Any]]) -> Any:
    async def main() -> Any:
        client = Client(config=bulk_config(None, {"read_timeout": 0.3}, 8))
        runner = JobRunner(client, RunnerSettings(concurrency=8))
        try:
            async with asyncio.timeout(30):
                return await body(runner)
        finally:
            await client.aclose()

    return _run(loop_kind, main())


def _pool_counts(runner: JobRunner) -> tuple[int, int]:
    pool = runner.client._engine.pool  # type: ignore[union-attr]
    assert pool is not None
    return pool.idle_connections(), pool.open_connections


def test_failed_connections_are_not_pooled(script_server: ScriptServer, loop_kind: str) -> None:
    urls = _script(script_server)
    script_server.route_respond("/ok", body=b"fine")
    ok = script_server.url + "/ok"

    async def body(runner: JobRunner) -> None:
        assert (await runner.run(Job(url=ok))).body == b"fine"
        assert _pool_counts(runner) == (1, 1)
        for name in ("truncated", "bad-chunk", "reset-mid-body", "stall-body", "extra", "http10"):
            # Runs on the idle /ok connection, which must not go back to the pool.
            result = await runner.run(Job(url=urls[name]))
            assert _pool_counts(runner) == (0, 0), (name, result)
            again = await runner.run(Job(url=ok))  # a new connection, pooled after
            assert again.body == b"fine" and again.error is None
            assert _pool_counts(runner) == (1, 1)
        assert len(script_server.conns) == 7

    _with_runner(loop_kind, body)


def test_stale_connection_is_replayed_once_for_idempotent_methods(
    script_server: ScriptServer, loop_kind: str
) -> None:
    _script(script_server)
    stale = script_server.url + "/stale"

    async def body(runner: JobRunner) -> list[Result]:
        out = [await runner.run(Job(url=stale))]
        out.append(await runner.run(Job(url=stale)))  # reused: closed unanswered, replayed
        out.append(await runner.run(Job(url=stale, method="POST", body=b"p")))  # not replayed
        return out

    first, replayed, post = _with_runner(loop_kind, body)
    assert first.body == b"fresh" and replayed.body == b"fresh" and replayed.attempts == 1
    assert post.error is not None and post.error.kind == "StaleConnection"
    assert "reused connection was closed by the server" in post.error.message
    assert len(script_server.conns) == 2  # the replay opened the second one; POST reused it


def test_idle_connection_closed_by_the_server_is_dropped(
    script_server: ScriptServer, loop_kind: str
) -> None:
    @script_server.route("/then-close")
    async def then_close(conn: Conn, req: ServerRequest) -> None:
        await conn.send_response(200, [], b"bye")
        await conn.sleep(0.05)
        conn.close()

    url = script_server.url + "/then-close"

    async def body(runner: JobRunner) -> list[Result]:
        first = await runner.run(Job(url=url))
        await asyncio.sleep(0.3)  # the server hangs up while the connection is idle
        return [first, await runner.run(Job(url=url))]

    results = _with_runner(loop_kind, body)
    assert [r.body for r in results] == [b"bye", b"bye"]
    assert all(r.error is None and r.attempts == 1 for r in results)
    assert len(script_server.conns) == 2  # not sent on the dead one, not replayed
