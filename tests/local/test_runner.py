"""Job runner behaviour shared by both bulk engines: limits, pacing, retries, async use."""

from __future__ import annotations

import asyncio
import time

import pytest

import aioduct
from aioduct import Job, SendEngine
from aioduct.testing.nginx import Nginx
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

pytestmark = pytest.mark.nginx


def slow_counting_route(server: ScriptServer, path: str) -> dict[str, int]:
    """A route that holds each request 50 ms and records the peak number in flight."""
    seen = {"now": 0, "peak": 0, "total": 0}

    @server.route(path)
    async def handler(conn: Conn, req: ServerRequest) -> None:
        seen["now"] += 1
        seen["total"] += 1
        seen["peak"] = max(seen["peak"], seen["now"])
        await asyncio.sleep(0.05)
        seen["now"] -= 1
        await conn.send_response(200, [], b"ok")

    return seen


def test_per_host_concurrency_is_a_ceiling(script_server: ScriptServer, nginx: Nginx) -> None:
    seen = slow_counting_route(script_server, "/hold")
    urls = [script_server.url + "/hold"] * 12 + [nginx.http_url + "/small"] * 30
    with SendEngine(concurrency=20, per_host_concurrency=3) as engine:
        results = list(engine.map(urls))
    assert all(r.status == 200 for r in results) and len(results) == 42
    assert seen["total"] == 12 and seen["peak"] == 3


def test_a_busy_host_does_not_hold_every_lane(script_server: ScriptServer, nginx: Nginx) -> None:
    """With per-host limits, jobs of a host at its limit are parked, not waited for in
    a lane: another host's jobs queued behind them run meanwhile, and the limit holds."""
    seen = slow_counting_route(script_server, "/hold")
    slow = [script_server.url + "/hold"] * 12  # 12 x 50 ms, 2 at a time: ~300 ms
    fast = [nginx.http_url + "/small"] * 20
    with SendEngine(concurrency=8, per_host_concurrency=2) as engine:
        order = [r.url for r in engine.map(slow + fast)]
    assert sorted(order) == sorted(slow + fast)
    assert seen["peak"] == 2 and seen["total"] == 12
    last_fast = max(i for i, url in enumerate(order) if url in fast)
    # Waiting at the gate, the 8 lanes would all hold slow jobs until the last 6 started:
    # every fast job would finish after at least 4 slow ones.
    assert last_fast < order.index(slow[0]) + 3


def test_withdraw_forgets_parked_jobs_too(script_server: ScriptServer) -> None:
    from aioduct.client import Client
    from aioduct.runner import JobRunner, RunnerSettings

    slow_counting_route(script_server, "/hold")
    url = script_server.url + "/hold"

    async def main() -> None:
        async with Client() as client:
            runner = JobRunner(client, RunnerSettings(concurrency=4, per_host_concurrency=1))
            got: list[aioduct.Result] = []
            for i in range(3):
                runner.submit(Job(url=url, id=i), got.append)
            await asyncio.sleep(0.01)  # one runs, two are parked at the host's gate
            assert runner.queued == 0 and len(runner._gates) == 1
            await runner.withdraw(got.append)
            await asyncio.sleep(0.1)  # long enough for the held request to have ended
            assert not got and len(runner._gates) == 0 and not runner.queued
            assert runner._free == 4 and not runner._lanes

    asyncio.run(main())


def test_concurrency_is_a_ceiling_and_cancelled_waiters_give_their_slot_back(
    script_server: ScriptServer,
) -> None:
    from aioduct.client import Client
    from aioduct.runner import JobRunner, RunnerSettings

    seen = slow_counting_route(script_server, "/hold")
    url = script_server.url + "/hold"

    async def main() -> None:
        async with Client() as client:
            runner = JobRunner(client, RunnerSettings(concurrency=2))
            tasks = [asyncio.create_task(runner.run(Job(url=url, id=i))) for i in range(8)]
            await asyncio.sleep(0.01)
            tasks[5].cancel()  # waiting for a slot
            tasks[6].cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            statuses = [r.status for r in done if isinstance(r, aioduct.Result)]
            assert statuses == [200] * 6
            assert sum(isinstance(r, asyncio.CancelledError) for r in done) == 2
            assert runner._free == 2 and not runner._slot_waiters  # every slot came back

    asyncio.run(main())
    assert seen["peak"] == 2 and seen["total"] == 6


def test_lanes_share_the_ceiling_with_run_and_withdraw_one_owner(
    script_server: ScriptServer,
) -> None:
    """submit() runs jobs on at most `concurrency` lanes, counted with run() callers;
    withdraw(done) drops and cancels that owner's jobs only, and every slot comes back."""
    from aioduct.client import Client
    from aioduct.runner import JobRunner, RunnerSettings

    seen = slow_counting_route(script_server, "/hold")
    url = script_server.url + "/hold"

    async def main() -> None:
        async with Client() as client:
            runner = JobRunner(client, RunnerSettings(concurrency=3))
            kept: list[aioduct.Result] = []
            dropped: list[aioduct.Result] = []
            all_kept = asyncio.Event()

            def keep(result: aioduct.Result) -> None:
                assert len(runner._lanes) + (not solo.done()) <= 3
                kept.append(result)
                if len(kept) == 6:
                    all_kept.set()

            solo = asyncio.create_task(runner.run(Job(url=url, id=-1)))
            await asyncio.sleep(0)
            for i in range(6):
                runner.submit(Job(url=url, id=i), keep)
                runner.submit(Job(url=url, id=100 + i), dropped.append)
            assert runner.queued == 12 and len(runner._lanes) == 2  # run() holds the third
            await asyncio.sleep(0.01)
            assert runner.queued == 10  # each lane took one
            assert seen["peak"] <= 3  # (how many arrived by now depends on the machine)
            await runner.withdraw(dropped.append)
            assert not dropped and runner.queued <= 5
            assert all(item[1] == keep for item in runner._queue)
            assert (await solo).status == 200
            await all_kept.wait()
            assert sorted(r.id for r in kept) == list(range(6))  # type: ignore[type-var]
            assert all(r.status == 200 for r in kept)
            await asyncio.sleep(0)
            assert runner._free == 3 and not runner._lanes and not runner.queued

    asyncio.run(main())


def test_a_bug_below_the_runner_becomes_that_jobs_error_result(nginx: Nginx) -> None:
    """An unexpected exception in the pipeline (here a middleware bug) fails its job
    with an InternalError Result; the lane goes on with the next jobs."""
    from aioduct.client import Client
    from aioduct.runner import JobRunner, RunnerSettings

    async def buggy(request: aioduct.Request, call_next: object) -> aioduct.Response:
        if "bug" in str(request.url):
            raise RuntimeError("a bug in a middleware")
        return await call_next(request)  # type: ignore[operator, no-any-return]

    async def main() -> list[aioduct.Result]:
        async with Client(middleware=[buggy]) as client:
            runner = JobRunner(client, RunnerSettings(concurrency=1))
            results: list[aioduct.Result] = []
            finished = asyncio.Event()

            def done(result: aioduct.Result) -> None:
                results.append(result)
                if len(results) == 3:
                    finished.set()

            for i, path in enumerate(["/small", "/small?bug", "/small"]):
                runner.submit(Job(url=nginx.http_url + path, id=i), done)
            await asyncio.wait_for(finished.wait(), 30)  # without the catch: job 1 never ends
            return results

    results = asyncio.run(main())
    assert [r.status for r in results] == [200, 0, 200]
    error = results[1].error
    assert error is not None and error.kind == "InternalError"
    assert "RuntimeError: a bug in a middleware" in error.message


def test_per_host_rate_spaces_request_starts(script_server: ScriptServer) -> None:
    script_server.route_respond("/r", body=b"ok")
    with SendEngine(concurrency=10, per_host_rate=20.0) as engine:
        started = time.monotonic()
        results = list(engine.map([script_server.url + "/r"] * 6))
        elapsed = time.monotonic() - started
    assert [r.status for r in results] == [200] * 6
    assert elapsed >= 5 / 20.0 * 0.9  # 6 starts, 50 ms apart: at least ~250 ms (a floor)


def test_retries_honour_retry_after_and_stop_at_the_limit(script_server: ScriptServer) -> None:
    calls = {"n": 0}

    @script_server.route("/flaky")
    async def flaky(conn: Conn, req: ServerRequest) -> None:
        calls["n"] += 1
        if calls["n"] < 3:
            await conn.send_response(503, [("Retry-After", "0")], b"busy")
        else:
            await conn.send_response(200, [], b"fine")

    retry = aioduct.RetryConfig(max_retries=5, initial_backoff=0.01)
    with SendEngine(retry=retry) as engine:
        r = engine.request("GET", script_server.url + "/flaky")
        assert (r.status, r.body, r.attempts) == (200, b"fine", 3)
        gone = engine.request("GET", "http://127.0.0.1:1/")
        assert gone.error is not None and gone.error.kind == "ConnectError" and gone.attempts == 6
    with SendEngine(retry=0) as engine:
        assert engine.request("GET", "http://127.0.0.1:1/").attempts == 1
    with pytest.raises(TypeError, match="retry must be a RetryConfig"):
        SendEngine(retry="often")  # type: ignore[arg-type]


async def test_amap_with_an_async_source_and_arequest(nginx: Nginx) -> None:
    async def jobs():
        for i in range(50):
            yield (
                Job(url=f"{nginx.http_url}/small?{i}", meta=i)
                if i % 2
                else f"{nginx.http_url}/json"
            )

    for engine in (SendEngine(concurrency=8), aioduct.LocalEngine(workers=1, loop="asyncio")):
        async with engine:
            results = [r async for r in engine.amap(jobs())]
            one = await engine.arequest("GET", nginx.http_url + "/small")
        assert sorted(r.id for r in results) == list(range(50))  # type: ignore[type-var]
        assert all(r.status == 200 for r in results)
        assert {r.meta for r in results if r.id % 2} == set(range(1, 50, 2))  # type: ignore[operator]
        assert one.body == b"Hello, World!"


def test_breaking_out_of_map_leaves_the_engine_usable(nginx: Nginx) -> None:
    with aioduct.LocalEngine(workers=1, loop="asyncio", concurrency=4) as engine:
        for n, _ in enumerate(engine.map(nginx.http_url + f"/small?{i}" for i in range(10_000))):
            if n == 20:
                break
        assert engine.request("GET", nginx.http_url + "/small").status == 200
        assert [r.status for r in engine.map([nginx.http_url + "/small"] * 3)] == [200] * 3


def test_blocking_calls_do_not_format_their_results(
    nginx: Nginx, monkeypatch: pytest.MonkeyPatch
) -> None:
    """map()/request() must not go through Runner.run: on 3.11 it reprs the task's result
    (whole response bodies) on every call."""
    import asyncio.base_tasks

    calls: list[object] = []
    original = asyncio.base_tasks._task_repr_info
    monkeypatch.setattr(
        asyncio.base_tasks, "_task_repr_info", lambda t: calls.append(t) or original(t)
    )
    with SendEngine(concurrency=4) as engine:
        assert [r.status for r in engine.map([nginx.http_url + "/bytes/1m"] * 3)] == [200] * 3
        assert engine.request("GET", nginx.http_url + "/small").status == 200
    assert calls == []
