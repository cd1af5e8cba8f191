"""The worker's fast path against the pipeline: same Jobs, same Results.

Every case runs the same Jobs through :class:`~aioduct.local.scheduler.JobScheduler`
(fast path for plain http) and through :class:`~aioduct.runner.JobRunner` (the pipeline)
in this process, on each worker loop kind, and compares the Results field by field
(timing values aside). Hostile servers additionally check that the error kinds are the
right ones, nothing hangs, and a connection that failed is not pooled again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aioduct import ClientConfig, Job, RetryConfig
from aioduct.client import Client
from aioduct.jobs import Result
from aioduct.local.fastpath import FastPath, unsupported_reason
from aioduct.local.scheduler import JobScheduler
from aioduct.runner import JobRunner, RunnerSettings, bulk_config
from aioduct.testing.nginx import Nginx
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
    fields["has_timings"] = timings is not None
    fields["headers"] = tuple(
        (name, "*" if name.lower() in _VOLATILE else value) for name, value in result.headers
    )
    return fields


async def _both(
    jobs: Sequence[Job],
    config: ClientConfig,
    settings: RunnerSettings,
) -> tuple[list[Result], list[Result], JobScheduler]:
    fast_client = Client(config=config)
    pipe_client = Client(config=config)
    scheduler = JobScheduler(fast_client, settings, lambda seq, r: None, worker=3)
    runner = JobRunner(pipe_client, settings, worker=3)
    try:
        async with asyncio.timeout(60):
            fast = await asyncio.gather(*(scheduler.run(job) for job in jobs))
            pipe = await asyncio.gather(*(runner.run(job) for job in jobs))
        return list(fast), list(pipe), scheduler
    finally:
        await scheduler.aclose()
        await fast_client.aclose()
        await pipe_client.aclose()


def _differential(
    loop_kind: str,
    jobs: Sequence[Job],
    *,
    config: ClientConfig | None = None,
    settings: RunnerSettings | None = None,
) -> tuple[list[Result], JobScheduler]:
    config = config or bulk_config(None, {}, 16)
    settings = settings or RunnerSettings(concurrency=16)
    fast, pipe, scheduler = _run(loop_kind, _both(jobs, config, settings))
    for job, f, p in zip(jobs, fast, pipe, strict=True):
        assert _comparable(f) == _comparable(p), (job, f, p)
        if f.error is None:
            assert f.timings is not None and f.timings.total > 0
    return fast, scheduler


def test_nginx_jobs_give_the_pipelines_results(nginx: Nginx, loop_kind: str) -> None:
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
    # (A Job with a bad header cannot be built: tests/test_request_validation.py.)
    results, scheduler = _differential(loop_kind, jobs)
    by_id = {r.id: r for r in results if r.id is not None}
    assert by_id["small"].body == b"Hello, World!" and by_id["small"].meta == {"m": 1}
    assert by_id["small"].worker == 3 and by_id["small"].http_version == "1.1"
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
    assert scheduler.pipeline_attempts == 0  # every attempt above ran on the fast path
    assert scheduler.fast_attempts >= len(jobs) - 3


def test_config_limits_give_the_pipelines_results(nginx: Nginx, loop_kind: str) -> None:
    base = nginx.http_url
    config = bulk_config(
        None,
        {"max_redirects": 2, "max_body_size": 1000, "follow_redirects": False, "timeout": 5},
        16,
    )
    jobs = [
        Job(url=base + "/chain/5", follow_redirects=True),
        Job(url=base + "/chain/2", follow_redirects=True),
        Job(url=base + "/chain/1"),
        Job(url=base + "/bytes/64k"),
        Job(url=base + "/small"),
        Job(url=base + "/bytes/64k", method="HEAD"),
    ]
    results, _ = _differential(loop_kind, jobs, config=config)
    kinds = [r.error.kind if r.error else r.status for r in results]
    assert kinds == ["TooManyRedirects", 200, 302, "BodyTooLarge", 200, 200]


def test_keep_body_retries_and_politeness(nginx: Nginx, loop_kind: str) -> None:
    base = nginx.http_url
    settings = RunnerSettings(
        concurrency=4,
        per_host_concurrency=2,
        per_host_rate=200.0,
        retry=RetryConfig(max_retries=2, initial_backoff=0.01),
        keep_body=False,
    )
    jobs = [
        Job(url=base + "/status/503"),
        Job(url=base + "/status/429"),
        Job(url=base + "/status/404"),
        Job(url="http://127.0.0.1:1/"),
        *(Job(url=f"{base}/small?{i}") for i in range(12)),
    ]
    results, _ = _differential(loop_kind, jobs, settings=settings)
    assert [r.attempts for r in results[:4]] == [3, 3, 1, 3]
    assert all(r.body is None and r.size == 13 for r in results[4:])


def test_https_and_unusual_jobs_take_the_pipeline(
    nginx: Nginx, loop_kind: str, tls_ca: Any, script_server: ScriptServer
) -> None:
    script_server.route_raw(
        "/to-https",
        b"HTTP/1.1 302 Found\r\nLocation: "
        + nginx.https_url.encode()
        + b"/small\r\nContent-Length: 0\r\n\r\n",
    )
    config = bulk_config(None, {"verify": tls_ca.ca_pem_path}, 16)
    jobs = [
        Job(url=nginx.https_url + "/small"),  # https: pipeline
        Job(url=nginx.http_url + "/post", method="POST", body=b"b" * 100_000),  # big body
        Job(url=script_server.url + "/to-https"),  # fast hop, then a pipeline hop
        Job(url=nginx.http_url + "/small"),
    ]
    results, scheduler = _differential(loop_kind, jobs, config=config)
    assert [r.status for r in results] == [200, 200, 200, 200]
    assert results[2].final_url == nginx.https_url + "/small"
    assert scheduler.pipeline_attempts == 2 and scheduler.fast_attempts == 2


def test_scope_decisions() -> None:
    from aioduct.url import URL

    def accepts(**kw: Any) -> bool:
        job = Job(**{"url": "http://h/x", **kw})
        return FastPath.accepts(job, URL(job.url))

    assert accepts() and accepts(method="POST", body=b"x" * 65536)
    assert not accepts(url="https://h/x")
    assert not accepts(url="http://u:p@h/x")
    assert not accepts(method="CONNECT")
    assert not accepts(body=b"x" * 65537)
    assert not accepts(headers={"Upgrade": "websocket"})
    assert unsupported_reason(ClientConfig(), 64) is None
    assert unsupported_reason(ClientConfig(https_only=True), 64) is not None
    assert unsupported_reason(ClientConfig(local_address="127.0.0.1"), 64) is not None
    assert unsupported_reason(ClientConfig(max_connections=10), 64) is not None
    h2c = unsupported_reason(ClientConfig(http2_prior_knowledge=True), 64)
    assert h2c is not None and "HTTP/1.1 only" in h2c
    assert unsupported_reason(ClientConfig(max_connections_per_host=2), 64) is not None


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


def test_hostile_servers_give_the_pipelines_errors(
    script_server: ScriptServer, loop_kind: str
) -> None:
    urls = _script(script_server)
    config = bulk_config(None, {"read_timeout": 0.3, "max_response_head_bytes": 1024}, 16)
    jobs = [Job(url=url, id=name) for name, url in urls.items()]
    jobs.append(Job(url=urls["silent"], id="total", timeout=0.2))
    results, _ = _differential(loop_kind, jobs, config=config)
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
    assert by_id["http10"].http_version == "1.0"


def _fast_only(
    loop_kind: str,
    body: Callable[[JobScheduler], Coroutine[Any, Any, Any]],
    *,
    config: ClientConfig | None = None,
) -> Any:
    async def main() -> Any:
        client = Client(config=config or bulk_config(None, {"read_timeout": 0.3}, 8))
        scheduler = JobScheduler(client, RunnerSettings(concurrency=8), lambda s, r: None)
        try:
            async with asyncio.timeout(30):
                return await body(scheduler)
        finally:
            await scheduler.aclose()
            await client.aclose()

    return _run(loop_kind, main())


def test_failed_connections_are_not_pooled(script_server: ScriptServer, loop_kind: str) -> None:
    urls = _script(script_server)
    script_server.route_respond("/ok", body=b"fine")
    ok = script_server.url + "/ok"

    async def body(scheduler: JobScheduler) -> None:
        fast = scheduler.fast
        assert fast is not None
        assert (await scheduler.run(Job(url=ok))).body == b"fine"
        assert fast.idle_connections() == 1
        for name in ("truncated", "bad-chunk", "reset-mid-body", "stall-body", "extra", "http10"):
            # Runs on the idle /ok connection, which must not go back to the pool.
            result = await scheduler.run(Job(url=urls[name]))
            assert (fast.idle_connections(), fast.open_connections) == (0, 0), (name, result)
            again = await scheduler.run(Job(url=ok))  # a new connection, pooled after
            assert again.body == b"fine" and again.error is None
            assert (fast.idle_connections(), fast.open_connections) == (1, 1)
        assert len(script_server.conns) == 7

    _fast_only(loop_kind, body)


def test_stale_connection_is_replayed_once_for_idempotent_methods(
    script_server: ScriptServer, loop_kind: str
) -> None:
    _script(script_server)
    stale = script_server.url + "/stale"

    async def body(scheduler: JobScheduler) -> list[Result]:
        out = [await scheduler.run(Job(url=stale))]
        out.append(await scheduler.run(Job(url=stale)))  # reused: closed unanswered, replayed
        out.append(await scheduler.run(Job(url=stale, method="POST", body=b"p")))  # not replayed
        return out

    first, replayed, post = _fast_only(loop_kind, body)
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

    async def body(scheduler: JobScheduler) -> list[Result]:
        assert scheduler.fast is not None
        first = await scheduler.run(Job(url=url))
        await asyncio.sleep(0.3)
        assert scheduler.fast.open_connections == 0  # noticed while idle, slot freed
        return [first, await scheduler.run(Job(url=url))]

    results = _fast_only(loop_kind, body)
    assert [r.body for r in results] == [b"bye", b"bye"]
    assert all(r.error is None for r in results)
