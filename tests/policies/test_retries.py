"""Retries as a client layer, on every driver, against the scriptable server and nginx.

Sleeps are read from a recording runtime (drivers.RecordingRuntime), never timed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

import aioduct
from aioduct.testing.nginx import Nginx
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

from .drivers import Driver, skip_unless_local_usable

NO_JITTER = {"jitter": 0.0, "initial_backoff": 0.25, "backoff_multiplier": 2.0}


def flaky(server: ScriptServer, path: str, failures: int, *, retry_after: str | None = None,
          status: int = 503) -> dict[str, int]:  # fmt: skip
    """``path`` answers ``status`` ``failures`` times, then 200 ``fine``; counts calls."""
    calls = {"n": 0}

    @server.route(path)
    async def handler(conn: Conn, req: ServerRequest) -> None:
        calls["n"] += 1
        if calls["n"] <= failures:
            headers = [("Retry-After", retry_after)] if retry_after is not None else []
            await conn.send_response(status, headers, b"busy")
        else:
            await conn.send_response(200, [], b"fine")

    return calls


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_503_and_429_are_retried_with_backoff_or_retry_after(
    script_server: ScriptServer, kind: str
) -> None:
    flaky(script_server, "/backoff", 2)
    flaky(script_server, "/after", 1, retry_after="2", status=429)
    retry = aioduct.RetryConfig(max_retries=3, **NO_JITTER)
    with Driver(kind, record=True, retry=retry) as client:
        r = client.get(script_server.url + "/backoff")
        assert (r.status, r.content, r.attempts) == (200, b"fine", 3)
        assert client.sleeps == [0.25, 0.5]
        r = client.get(script_server.url + "/after")
        assert (r.status, r.attempts) == (200, 2)
        assert client.sleeps[2:] == [2.0]  # the server's time, not the backoff
        # every retried response was drained: one connection served all five sends
        assert script_server.connections_accepted == 1


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_a_streamed_response_is_drained_before_the_retry(
    script_server: ScriptServer, kind: str
) -> None:
    flaky(script_server, "/streamed", 2)
    with Driver(kind, record=True, retry=aioduct.RetryConfig(**NO_JITTER)) as client:
        status, chunks = client.stream_bytes(script_server.url + "/streamed")
        assert (status, b"".join(chunks), client.sleeps) == (200, b"fine", [0.25, 0.5])
        assert script_server.connections_accepted == 1  # drained: the connection was reused
        assert client.pool().idle_connections() == 1


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_gives_up_after_max_retries_with_the_last_response(
    script_server: ScriptServer, kind: str
) -> None:
    calls = flaky(script_server, "/down", 100)
    retry = aioduct.RetryConfig(max_retries=2, **NO_JITTER)
    with Driver(kind, record=True, retry=retry) as client:
        r = client.get(script_server.url + "/down")
    assert (r.status, r.content, r.attempts, calls["n"]) == (503, b"busy", 3, 3)


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_post_is_not_retried_unless_opted_in(script_server: ScriptServer, kind: str) -> None:
    calls = flaky(script_server, "/submit", 1)
    with Driver(kind, record=True, retry=aioduct.RetryConfig(**NO_JITTER)) as client:
        r = client.request("POST", script_server.url + "/submit", content=b"order")
        assert (r.status, r.attempts, calls["n"]) == (503, 1, 1)
    calls["n"] = 0
    retry = aioduct.RetryConfig(methods=None, **NO_JITTER)
    with Driver(kind, record=True, retry=retry) as client:
        r = client.request("POST", script_server.url + "/submit", content=b"order")
        assert (r.status, r.attempts, calls["n"]) == (200, 2, 2)
    calls["n"] = 0
    retry = aioduct.RetryConfig(methods=["post"], **NO_JITTER)  # any case, any sequence
    with Driver(kind, record=True, retry=retry) as client:
        assert client.request("POST", script_server.url + "/submit", content=b"o").attempts == 2


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_a_request_that_never_left_is_retried_whatever_its_method(kind: str) -> None:
    with Driver(kind, record=True, retry=aioduct.RetryConfig(max_retries=2, **NO_JITTER)) as c:
        with pytest.raises(aioduct.ConnectError) as caught:
            c.request("POST", "http://127.0.0.1:1/", content=b"x")
        assert caught.value.attempts == 3 and c.sleeps == [0.25, 0.5]


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_reset_mid_response_is_retried_for_get(script_server: ScriptServer, kind: str) -> None:
    calls = {"n": 0}

    @script_server.route("/reset")
    async def reset(conn: Conn, req: ServerRequest) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            await asyncio.sleep(0.05)
            conn.reset()
        else:
            await conn.send_response(200, [], b"whole")

    with Driver(kind, record=True, retry=aioduct.RetryConfig(**NO_JITTER)) as client:
        r = client.get(script_server.url + "/reset")
        assert (r.content, r.attempts) == (b"whole", 2)
        pool = client.pool()
        assert pool is not None and pool.open_connections == 1  # the broken one is gone


def test_a_streamed_request_body_is_sent_once(script_server: ScriptServer) -> None:
    calls = flaky(script_server, "/upload", 5)

    async def body() -> AsyncIterator[bytes]:
        yield b"one-"
        yield b"shot"

    async def main() -> None:
        retry = aioduct.RetryConfig(**NO_JITTER)
        async with aioduct.Client(retry=retry) as client:
            r = await client.put(script_server.url + "/upload", content=body())
            assert (r.status, r.attempts) == (503, 1)
            with pytest.raises(aioduct.ConnectError) as caught:
                await client.put("http://127.0.0.1:1/", content=body())
            assert caught.value.attempts == 1
            assert any("one-shot stream" in note for note in caught.value.__notes__)

    asyncio.run(main())
    assert calls["n"] == 1


@pytest.mark.parametrize(
    "value",
    [
        "9999999999",  # OverflowError in time.sleep for urllib3 (PR #3743)
        "9" * 400,  # more than a float holds: inf
        "3600",
        "Fri, 31 Dec 9999 23:59:59 GMT",  # far in the future
    ],
)
@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_retry_after_overflow_is_capped(script_server: ScriptServer, kind: str, value: str) -> None:
    flaky(script_server, "/later", 1, retry_after=value)
    retry = aioduct.RetryConfig(max_retry_after=0.5, **NO_JITTER)
    with Driver(kind, record=True, retry=retry) as client:
        r = client.get(script_server.url + "/later")
        assert (r.status, r.attempts) == (200, 2)
        assert client.sleeps == [0.5]


@pytest.mark.parametrize("value", ["-5", "1e9", "0x10", "+3", "soon", ""])
def test_retry_after_garbage_falls_back_to_the_backoff(
    script_server: ScriptServer, value: str
) -> None:
    flaky(script_server, "/garbage", 1, retry_after=value)
    with Driver("blocking", record=True, retry=aioduct.RetryConfig(**NO_JITTER)) as client:
        assert client.get(script_server.url + "/garbage").attempts == 2
        assert client.sleeps == [0.25]


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_no_retry_sleeps_past_the_total_deadline(script_server: ScriptServer, kind: str) -> None:
    calls = flaky(script_server, "/slowly", 5, retry_after="30")
    retry = aioduct.RetryConfig(max_retry_after=60, **NO_JITTER)
    with Driver(kind, record=True, retry=retry, timeout=10) as client:
        r = client.get(script_server.url + "/slowly")
        assert (r.status, r.attempts, client.sleeps, calls["n"]) == (503, 1, [], 1)
        r = client.get(script_server.url + "/slowly", timeout=None)  # no deadline: it waits
        assert r.attempts == 4 and client.sleeps == [30.0, 30.0, 30.0]


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_budget_keeps_a_failing_host_from_being_hammered(
    script_server: ScriptServer, kind: str
) -> None:
    calls = flaky(script_server, "/failing", 10_000)
    retry = aioduct.RetryConfig(max_retries=3, budget=0.2, **NO_JITTER)
    with Driver(kind, record=True, retry=retry) as client:
        attempts = [client.get(script_server.url + "/failing").attempts for _ in range(20)]
    # without a budget: 20 * 4 sends; with it, retries stay within 20% of the requests
    assert calls["n"] == sum(attempts) and calls["n"] - 20 <= 0.2 * 20
    assert calls["n"] > 20  # ... but some retries were allowed


def test_jitter_spreads_the_backoff(script_server: ScriptServer) -> None:
    flaky(script_server, "/jitter", 1000)
    retry = aioduct.RetryConfig(max_retries=1, initial_backoff=1.0, jitter=0.5)
    with Driver("blocking", record=True, retry=retry) as client:
        for _ in range(20):
            client.get(script_server.url + "/jitter")
        sleeps = client.sleeps
    assert len(sleeps) == 20 and all(0.5 <= s <= 1.0 for s in sleeps)
    assert len(set(sleeps)) > 1


@pytest.mark.parametrize("kind", ["async", "blocking", "local"])
def test_every_driver_retries_against_nginx(nginx: Nginx, kind: str) -> None:
    skip_unless_local_usable(kind)
    retry = aioduct.RetryConfig(max_retries=2, initial_backoff=0.001)
    with Driver(kind, retry=retry) as client:
        r = client.get(nginx.http_url + "/status/503")
        assert (r.status, r.attempts) == (503, 3)
        assert client.get(nginx.http_url + "/status/404").attempts == 1
        ok = client.get(nginx.http_url + "/redirect/302/small")
        assert (ok.content, ok.attempts) == (b"Hello, World!", 1)
        with pytest.raises(aioduct.ConnectError) as caught:
            client.get("http://127.0.0.1:1/")
        assert caught.value.attempts == 3


def test_local_engine_results_count_the_layer_attempts(script_server: ScriptServer) -> None:
    skip_unless_local_usable("local")
    flaky(script_server, "/flaky", 2, retry_after="0")
    resets = {"n": 0}

    @script_server.route("/reset")
    async def reset(conn: Conn, req: ServerRequest) -> None:
        resets["n"] += 1
        if resets["n"] == 1:
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            conn.reset()
        else:
            await conn.send_response(200, [], b"whole")

    retry = aioduct.RetryConfig(max_retries=4, initial_backoff=0.001)
    with aioduct.LocalEngine(workers=1, retry=retry) as engine:
        r = engine.request("GET", script_server.url + "/flaky")
        assert (r.status, r.body, r.attempts) == (200, b"fine", 3)
        r = engine.request("GET", script_server.url + "/reset")
        assert (r.status, r.body, r.attempts) == (200, b"whole", 2)
        posted = engine.request("POST", script_server.url + "/flaky")
        assert posted.attempts == 1  # idempotent methods only, as on every client
    with pytest.raises(ValueError, match="set it once"):
        aioduct.LocalEngine(workers=1, retry=2, config=aioduct.ClientConfig(retry=3))


def test_retry_shorthands_and_refusals() -> None:
    assert aioduct.ClientConfig(retry=2).retry == aioduct.RetryConfig(max_retries=2)
    assert aioduct.ClientConfig(retry=0).retry is None
    with pytest.raises(TypeError, match="retry must be"):
        aioduct.ClientConfig(retry="often")
    with pytest.raises(TypeError, match="not the string"):
        aioduct.RetryConfig(methods="GET")
    with pytest.raises(ValueError, match="jitter"):
        aioduct.RetryConfig(jitter=2)
    with pytest.raises(TypeError, match="did you mean 'max_retries'"):
        aioduct.RetryConfig(max_retry=2)


def test_sends_count_for_history_hops_separately(script_server: ScriptServer) -> None:
    """A redirect's target is retried on its own hop: attempts are the final hop's."""
    counter = itertools.count()

    @script_server.route("/start")
    async def start(conn: Conn, req: ServerRequest) -> None:
        await conn.send_response(302, [("Location", "/target")], b"")

    @script_server.route("/target")
    async def target(conn: Conn, req: ServerRequest) -> None:
        status = 503 if next(counter) < 2 else 200
        await conn.send_response(status, [], b"t")

    with Driver("blocking", record=True, retry=aioduct.RetryConfig(**NO_JITTER)) as client:
        r = client.get(script_server.url + "/start")
    assert (r.status, r.attempts, [h.status for h in r.history]) == (200, 3, [302])
