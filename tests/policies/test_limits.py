"""rate_limit and max_download_speed on every driver.

Pacing is checked through the sleeps the pipeline asks of the runtime (a recording
runtime that sleeps none of them), never by timing: how many, how long in total, and how
evenly spread.
"""

from __future__ import annotations

import pytest

import aioduct
from aioduct.testing.nginx import GZIP_BODY, Nginx, deterministic_bytes

from .drivers import Driver, skip_unless_local_usable

pytestmark = pytest.mark.nginx

MB = 1 << 20
SPEED = 1_000_000  # bytes/s: a 1 MiB body takes about 1.05 s
PIECE = SPEED // 20


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_rate_limit_per_host_spaces_sends_to_one_origin(nginx: Nginx, kind: str) -> None:
    limit = aioduct.RateLimit(1, per=10.0)  # one send per 10 s per origin
    with Driver(kind, record=True, rate_limit=limit, timeout=1.0) as client:
        for _ in range(3):
            assert client.get(nginx.http_url + "/small").status == 200
        # the first send goes at once; each later one waits its ~10 s, and that wait
        # is not part of timeout=1.0
        assert len(client.sleeps) == 2 and all(9.0 < s <= 10.0 for s in client.sleeps)
        assert client.get(nginx.alt_http_url + "/small").status == 200  # its own budget
        assert len(client.sleeps) == 2


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_rate_limit_for_the_whole_client_with_a_burst(nginx: Nginx, kind: str) -> None:
    limit = aioduct.RateLimit(2, per=10.0, burst=2, per_host=False)
    with Driver(kind, record=True, rate_limit=limit) as client:
        for url in (nginx.http_url, nginx.alt_http_url, nginx.http_url, nginx.alt_http_url):
            client.get(url + "/small")
        # two go at once (the burst), then one per 5 s whatever the origin
        assert len(client.sleeps) == 2 and all(4.0 < s <= 5.0 for s in client.sleeps)


def test_every_redirect_hop_takes_a_token(nginx: Nginx) -> None:
    with Driver("blocking", record=True, rate_limit=aioduct.RateLimit(1, per=10.0)) as client:
        assert client.get(nginx.http_url + "/chain/2").text == "done"
        assert len(client.sleeps) == 2


def check_paced(sleeps: list[float], size: int) -> None:
    """The body's bytes were handed on at SPEED: in total within 10%, in even steps."""
    expected = (size - PIECE) / SPEED
    assert sum(sleeps) == pytest.approx(expected, rel=0.1)
    assert len(sleeps) >= size // PIECE - 2
    assert max(sleeps) <= 1.1 * PIECE / SPEED  # no burst followed by a long stall


@pytest.mark.parametrize("kind", ["async", "blocking"])
@pytest.mark.parametrize("origin", ["http_url", "h2c_url"])
def test_buffered_download_is_paced(nginx: Nginx, kind: str, origin: str) -> None:
    options = {"http2_prior_knowledge": True} if origin == "h2c_url" else {}
    with Driver(kind, record=True, max_download_speed=SPEED, **options) as client:
        r = client.get(getattr(nginx, origin) + "/bytes/1m")
        assert r.content == deterministic_bytes(MB)
        assert r.http_version == ("HTTP/2" if origin == "h2c_url" else "HTTP/1.1")
        check_paced(client.sleeps, MB)


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_streamed_download_is_paced_in_small_pieces(nginx: Nginx, kind: str) -> None:
    with Driver(kind, record=True, max_download_speed=SPEED) as client:
        status, chunks = client.stream_bytes(nginx.http_url + "/bytes/1m")
        assert status == 200 and b"".join(chunks) == deterministic_bytes(MB)
        assert max(map(len, chunks)) <= PIECE
        check_paced(client.sleeps, MB)
        # the connection went back to the pool once the body was read
        assert client.pool().idle_connections() == 1


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_pacing_stays_within_the_total_deadline(nginx: Nginx, kind: str) -> None:
    with Driver(kind, record=True, max_download_speed=SPEED, timeout=0.5) as client:
        with pytest.raises(aioduct.TotalTimeout, match="max_download_speed"):
            client.get(nginx.http_url + "/bytes/1m")
        assert sum(client.sleeps) <= 0.5
        assert client.get(nginx.http_url + "/small").content == b"Hello, World!"
        assert client.pool().open_connections == 1  # the abandoned one was closed


def test_redirect_and_gzip_bodies_are_paced_and_decoded(nginx: Nginx) -> None:
    with Driver("blocking", record=True, max_download_speed=SPEED) as client:
        r = client.get(nginx.http_url + "/redirect/302/gzip")
        assert r.headers.get("content-encoding") == "gzip" and r.content == GZIP_BODY
        assert client.get(nginx.http_url + "/small", follow_redirects=False).status == 200


@pytest.mark.parametrize("kind", ["local"])
def test_local_engine_applies_both_limits_in_its_worker(nginx: Nginx, kind: str) -> None:
    skip_unless_local_usable(kind)
    options = {"max_download_speed": 16 * SPEED, "rate_limit": aioduct.RateLimit(100)}
    with Driver(kind, **options) as client:
        assert client.get(nginx.http_url + "/bytes/1m").content == deterministic_bytes(MB)
        assert client.get(nginx.http_url + "/small").content == b"Hello, World!"


def test_per_host_rate_is_a_rate_limit_alias() -> None:
    engine = aioduct.SendEngine(per_host_rate=4.0)
    assert engine.config.rate_limit == aioduct.RateLimit(4.0, per_host=True)
    with pytest.raises(ValueError, match="set one of them"):
        aioduct.SendEngine(per_host_rate=4.0, rate_limit=aioduct.RateLimit(9))
