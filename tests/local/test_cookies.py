"""Cookies on the local engine: each worker keeps the jar of the sites it runs, and
with cookies on jobs are sharded by registrable domain, so a site's requests -- every
origin of it -- meet the same jar."""

from __future__ import annotations

import pytest

from aioduct import Job, LocalEngine, SendEngine
from aioduct.local.dispatch import Dispatcher
from aioduct.testing.nginx import Nginx

pytestmark = pytest.mark.nginx


def cookie(result_body: bytes | None) -> str:
    assert result_body is not None
    lines = dict(line.partition(": ")[::2] for line in result_body.decode().splitlines())
    return lines["cookie"]


def test_jobs_of_a_site_share_its_worker_and_its_cookies(nginx: Nginx, loop_kind: str) -> None:
    with LocalEngine(workers=2, loop=loop_kind, concurrency=4) as engine:
        first = engine.request("GET", nginx.http_url + "/set-cookie")
        assert first.status == 200
        same = engine.request("GET", nginx.http_url + "/echo/headers")
        other_port = engine.request("GET", nginx.alt_http_url + "/echo/headers")
        assert cookie(same.body) == "a=1" and cookie(other_port.body) == "a=1"
        assert first.worker == same.worker == other_port.worker
        # map() too: Results of later jobs of the site carry what earlier ones set
        results = list(
            engine.map([Job(url=nginx.http_url + "/echo/headers", id=i) for i in range(8)])
        )
        assert {cookie(r.body) for r in results} == {"a=1"}
        # per-request cookies travel in the Job's headers, next to the jar's
        r = engine.request("GET", nginx.http_url + "/echo/headers", headers={"Cookie": "b=2"})
        assert cookie(r.body) == "b=2; a=1"


def test_without_cookies_nothing_is_carried(nginx: Nginx, loop_kind: str) -> None:
    with LocalEngine(workers=2, loop=loop_kind, cookies=False) as engine:
        engine.request("GET", nginx.http_url + "/set-cookie")
        assert cookie(engine.request("GET", nginx.http_url + "/echo/headers").body) == ""


def test_sharding_by_site_keeps_a_site_on_one_worker() -> None:
    by_site = Dispatcher(8, window=1, by_site=True).shard
    by_origin = Dispatcher(8, window=1).shard
    site = [
        "https://example.co.uk/",
        "http://www.example.co.uk:8080/x",
        "https://api.eu.example.co.uk/y?z",
    ]
    assert len({by_site(Job(url=u)) for u in site}) == 1
    hosts = [f"https://host{i}.example.com/" for i in range(40)]
    assert len({by_site(Job(url=u)) for u in hosts}) == 1
    assert len({by_origin(Job(url=u)) for u in hosts}) > 1  # origins spread
    # sites under a public suffix are sites of their own
    users = [f"https://user{i}.github.io/" for i in range(40)]
    assert len({by_site(Job(url=u)) for u in users}) > 1
    # IP literals and unparsable URLs still get a worker
    assert 0 <= by_site(Job(url="http://10.0.0.1:81/")) < 8
    assert 0 <= by_site(Job(url="http://[::1]/")) < 8


def test_the_send_engine_carries_cookies_between_jobs(nginx: Nginx) -> None:
    with SendEngine(concurrency=4) as engine:
        assert engine.request("GET", nginx.http_url + "/set-cookie").status == 200
        results = list(engine.map([nginx.http_url + "/echo/headers"] * 4))
    assert {cookie(r.body) for r in results} == {"a=1"}
