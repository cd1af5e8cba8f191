"""BlockingClient: the same API, synchronous, shared between threads."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import aioduct
from aioduct.testing.nginx import Nginx, deterministic_bytes
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

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


# -- the blocking runtime: the pipeline in the calling thread -------------------------------------


def test_runs_in_the_calling_thread_over_tls_and_http2(nginx: Nginx, tls_ca: Any) -> None:
    before = threading.active_count()
    with aioduct.BlockingClient(verify=tls_ca.ca_pem_path) as client:
        r = client.get(nginx.https_url + "/small")
        assert (r.http_version, r.content) == ("HTTP/2", b"Hello, World!")
        with client.stream("GET", nginx.https_url + "/bytes/1m") as r:
            # 1 MiB through 64 KiB-ish windows: the request itself reads and credits them
            assert b"".join(r.iter_bytes()) == deterministic_bytes(1 << 20)
        r = client.get(nginx.https_url + "/small", version="1.1")
        assert (r.http_version, r.content) == ("HTTP/1.1", b"Hello, World!")
        assert threading.active_count() == before  # no loop thread, no helper thread


def test_connections_are_reused_per_thread(nginx: Nginx) -> None:
    mark = nginx.log_position()
    with aioduct.BlockingClient() as client:
        for _ in range(5):
            assert client.get(nginx.http_url + "/small?reuse").status == 200
        other = threading.Thread(target=lambda: client.get(nginx.http_url + "/small?reuse"))
        other.start()
        other.join()
    log = nginx.requests_log(since=mark, uri_contains="reuse", min_entries=6)
    assert len({entry.connection for entry in log}) == 2  # one per thread


def test_timeouts_and_a_stale_connection(script_server: ScriptServer) -> None:
    @script_server.route("/silent")
    async def silent(conn: Conn, req: ServerRequest) -> None:
        await conn.sleep(30)

    @script_server.route("/stale")
    async def stale(conn: Conn, req: ServerRequest) -> None:
        if len(conn.requests) > 1:  # the connection's second request: hang up unanswered
            conn.close()
            return
        await conn.send_response(200, [], b"fresh")

    with aioduct.BlockingClient(read_timeout=0.2) as client:
        with pytest.raises(aioduct.ReadTimeout, match=r"read_timeout=0\.2s"):
            client.get(script_server.url + "/silent")
        with pytest.raises(aioduct.TotalTimeout):
            client.get(script_server.url + "/silent", timeout=0.1)
        assert client.get(script_server.url + "/stale").content == b"fresh"
        assert client.get(script_server.url + "/stale").content == b"fresh"  # replayed once
        with pytest.raises(aioduct.ReadError, match="reused connection"):
            client.post(script_server.url + "/stale", content=b"not idempotent")


def test_open_responses_holding_every_connection_is_a_clear_pool_timeout(nginx: Nginx) -> None:
    with aioduct.BlockingClient(max_connections=1) as client:
        with (
            client.stream("GET", nginx.http_url + "/bytes/64k"),
            pytest.raises(aioduct.PoolTimeout, match="read or close them first"),
        ):
            client.get(nginx.alt_http_url + "/small")
        assert client.get(nginx.alt_http_url + "/small").status == 200


def test_run_sync_refuses_a_coroutine_that_waits_for_a_loop() -> None:
    from aioduct.runtimes.blocking import run_sync

    async def needs_a_loop() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="suspended"):
        run_sync(needs_a_loop())


def test_an_ended_threads_pool_goes_with_it(nginx: Nginx) -> None:
    import gc

    with aioduct.BlockingClient() as client:
        worker = threading.Thread(target=lambda: client.get(nginx.http_url + "/small"))
        worker.start()
        worker.join()
        gc.collect()
        assert len(client._engines) == 0
        assert client.get(nginx.http_url + "/small").status == 200
        assert len(client._engines) == 1


def test_blocking_streams_can_acknowledge_at_once() -> None:
    """HTTP/2 bodies call quick_ack(): without it nginx's corked output stalls ~40 ms."""
    import socket

    from aioduct.runtimes.blocking import BlockingStream

    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        with peer:
            stream = BlockingStream(client)
            try:
                stream.quick_ack()
                assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
            finally:
                stream.close()
