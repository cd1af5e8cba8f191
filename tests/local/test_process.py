"""``map(jobs, process=...)``: user functions run where the response is, values come back."""

from __future__ import annotations

import hashlib
import os
import re
import signal

import pytest

import aioduct
from aioduct import Job, LocalEngine, SendEngine

pytestmark = pytest.mark.nginx

Bodies = tuple[str, dict[str, bytes]]
DIGEST = "tests.local.processes:digest"
SCALED = "tests.local.processes:scaled"


def expected_digest(body: bytes, job_id: object, meta: object) -> dict[str, object]:
    return {
        "sha256": hashlib.sha256(body).hexdigest(),
        "length": len(body),
        "type": "application/octet-stream",
        "id": job_id,
        "meta": meta,
    }


def test_workers_send_back_only_the_value(bodies: Bodies, loop_kind: str) -> None:
    origin, files = bodies
    paths = sorted(files)
    jobs = [Job(url=origin + p, meta={"path": p}) for p in paths]
    jobs.append(Job(url="http://127.0.0.1:1/", id="refused"))
    with LocalEngine(workers=2, loop=loop_kind, sharding="balanced") as engine:
        got = {r.id: r for r in engine.map(jobs, process=DIGEST)}
        plain = engine.request("GET", origin + paths[0])  # maps without process= unchanged
    assert len(got) == len(jobs)
    for i, path in enumerate(paths):
        r = got[i]
        assert r.value == expected_digest(files[path], i, {"path": path}), path
        assert r.body is None and r.headers == () and r.status == 200 and r.ok
        assert r.size == len(files[path]) and r.meta == {"path": path}
    refused = got["refused"]  # no response: not passed to the function
    assert refused.value is None and refused.error is not None
    assert refused.error.kind == "ConnectError"
    assert plain.body == files[paths[0]] and plain.value is None


def test_a_failing_function_fails_its_job_not_the_worker(bodies: Bodies, loop_kind: str) -> None:
    origin, files = bodies
    urls = [origin + "/f0"] * 20
    with LocalEngine(workers=1, loop=loop_kind) as engine:
        got = {r.id: r for r in engine.map(urls, process="tests.local.processes:fails_on_odd_ids")}
        odd = engine.map(urls[:2], process="tests.local.processes:unencodable")
        bad_values = list(odd)
        assert engine.stats.crashes == 0
    for i in range(20):
        r = got[i]
        assert r.status == 200 and r.body is None
        if i % 2:
            assert r.error is not None and r.error.kind == "ProcessError" and not r.ok
            assert f"ValueError: odd id {i}" in r.error.message
            assert "processes.py:" in r.error.message and "fails_on_odd_ids" in r.error.message
        else:
            assert r.error is None and r.value == len(files["/f0"])
    for r in bad_values:
        assert r.error is not None and r.error.kind == "ProcessError"
        assert "returned a object, which msgpack cannot encode" in r.error.message
    exc = aioduct.jobs.error_to_exception(got[1].error)  # type: ignore[arg-type]
    assert isinstance(exc, aioduct.ProcessError)


def test_import_errors_are_raised_by_map_before_any_job(nginx: aioduct.testing.nginx.Nginx) -> None:
    with LocalEngine(workers=2, loop="asyncio") as engine:
        cases = [
            ("tests.local.no_such_module:f", "No module named 'tests.local.no_such_module'"),
            ("tests.local.process_broken:f", "RuntimeError: this module is broken on purpose"),
            ("tests.local.processes:missing", "has no attribute 'missing'"),
            ("tests.local.processes:not_a_function", "is a int, not a function"),
        ]
        for spec, message in cases:
            with pytest.raises(aioduct.ProcessError, match=re.escape(message)) as raised:
                engine.map([nginx.http_url + "/small"], process=spec)
            assert spec in str(raised.value)
        with pytest.raises(ValueError, match=r"must look like 'package\.module:function'"):
            engine.map([], process="tests.local.processes")
        with pytest.raises(TypeError, match="import string"):
            engine.map([], process=len)  # type: ignore[arg-type]
        assert engine.stats.submitted == 0
        r = engine.request("GET", nginx.http_url + "/small")  # the engine is still fine
    assert r.body == b"Hello, World!"


def test_a_replaced_worker_loads_the_function_again(bodies: Bodies) -> None:
    origin, files = bodies
    urls = [origin + "/f1"] * 300
    seen = []
    with LocalEngine(workers=1, loop="asyncio", concurrency=4) as engine:
        victim = engine.pids[0]
        for r in engine.map(urls, process=DIGEST):
            seen.append(r)
            if len(seen) == 50:
                os.kill(victim, signal.SIGKILL)
        assert engine.stats.crashes == 1
    assert sorted(r.id for r in seen) == list(range(300))
    assert all(r.error is None and r.value["length"] == len(files["/f1"]) for r in seen)


async def test_amap_and_the_send_engine_give_equal_results(bodies: Bodies) -> None:
    origin, files = bodies
    jobs = [Job(url=origin + p, id=p, meta=[1, 2]) for p in sorted(files)]
    async with LocalEngine(workers=1, loop="asyncio") as engine:
        local = {r.id: r for r in [r async for r in engine.amap(jobs, process=DIGEST)]}
    async with SendEngine() as send:
        sent = {r.id: r for r in [r async for r in send.amap(jobs, process=DIGEST)]}
    for p in files:
        assert local[p].value == sent[p].value == expected_digest(files[p], p, [1, 2])
        assert sent[p].body is None and sent[p].headers == () and sent[p].status == 200


def test_the_blocking_send_engine_runs_functions_in_process(bodies: Bodies) -> None:
    origin, files = bodies
    with SendEngine() as engine:
        got = {r.id: r for r in engine.map([origin + "/f2"] * 3, process=DIGEST)}
        with pytest.raises(aioduct.ProcessError, match=r"No module named 'tests\.local\.nope'"):
            engine.map([origin + "/f2"], process="tests.local.nope:f")
    assert [got[i].value for i in range(3)] == [
        expected_digest(files["/f2"], i, None) for i in range(3)
    ]


def test_process_options_are_keyword_arguments(bodies: Bodies) -> None:
    origin, files = bodies
    urls = [origin + "/f0", origin + "/f5"]
    expected = {0: [len(files["/f0"]) * 3, "x"], 1: [len(files["/f5"]) * 3, "x"]}
    options = {"factor": 3, "label": "x"}
    with LocalEngine(workers=1, loop="asyncio") as engine:
        got = {r.id: r.value for r in engine.map(urls, process=SCALED, process_options=options)}
        again = {
            r.id: r.value for r in engine.map(urls, process=SCALED, process_options={"factor": 1})
        }
        with pytest.raises(TypeError, match="process_options= needs a process= function"):
            engine.map(urls, process_options=options)
        with pytest.raises(TypeError, match="process_options= must be msgpack-encodable"):
            engine.map(urls, process=SCALED, process_options={"factor": object()})
    with SendEngine() as send:
        sent = {r.id: r.value for r in send.map(urls, process=SCALED, process_options=options)}
    assert got == sent == expected
    assert again == {0: [len(files["/f0"]), ""], 1: [len(files["/f5"]), ""]}
