"""BlockingClient: the same API, synchronous, shared between threads."""

from __future__ import annotations

import threading

import pytest

import aioduct
from aioduct.testing.nginx import Nginx, deterministic_bytes

pytestmark = pytest.mark.nginx


def test_methods_and_streaming(nginx: Nginx) -> None:
    with aioduct.BlockingClient() as client:
        r = client.get(nginx.http_url + "/small")
        assert r.content == b"Hello, World!" and r.status_code == 200
        assert client.post(nginx.http_url + "/post", content=b"x" * 4096).text == "POST 4096"
        assert client.head(nginx.http_url + "/bytes/64k").headers["content-length"] == "65536"
        with client.stream("GET", nginx.http_url + "/bytes/1m") as r:
            assert b"".join(r.iter_bytes()) == deterministic_bytes(1 << 20)
        with client.stream("GET", nginx.http_url + "/text") as r:
            assert list(r.iter_lines()) == ["héllo wörld ✓"]
        with client.stream("GET", nginx.http_url + "/json") as r:
            r.read()
            assert r.json()["count"] == 42


def test_threads_share_one_client(nginx: Nginx) -> None:
    failures: list[BaseException] = []
    with aioduct.BlockingClient(max_connections=4) as client:

        def work() -> None:
            try:
                for _ in range(25):
                    assert client.get(nginx.http_url + "/small").content == b"Hello, World!"
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []


def test_errors_propagate_and_close_is_final(nginx: Nginx) -> None:
    client = aioduct.BlockingClient()
    with pytest.raises(aioduct.ConnectError):
        client.get("http://127.0.0.1:1/")
    client.close()
    with pytest.raises(aioduct.ClientClosed):
        client.get(nginx.http_url + "/small")
    client.close()


def test_async_response_refuses_blocking_reads() -> None:
    r = aioduct.Response(200)
    with pytest.raises(RuntimeError, match="async client"):
        r.read()
