"""BlockingClient receives a large body straight into its buffer: the first read of a
response takes at most 64 KiB, and the rest of a Content-Length body goes into the
body's own buffer with blocking ``recv_into(MSG_WAITALL)`` calls (plain TCP) or records
decrypted into it (TLS). ``read_timeout`` stays a limit on silence, a truncated or
stalled body fails with the usual errors, and the pooled connection carries the next
request cleanly.

Each test checks that the direct path ran (a count of ``read_into`` calls), so none of
them passes by going the old way."""

from __future__ import annotations

from typing import Any

import pytest

import aioduct
from aioduct.runtimes.blocking import BlockingStream
from aioduct.testing.nginx import Nginx, deterministic_bytes
from aioduct.testing.server import ScriptServer

from .large_bodies import SIZE, serve


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lengths read_into was asked to fill, one entry per call."""
    calls: list[int] = []
    read_into = BlockingStream.read_into

    async def counted(self: BlockingStream, view: memoryview, deadline: Any) -> int:
        calls.append(len(view))
        return await read_into(self, view, deadline)

    monkeypatch.setattr(BlockingStream, "read_into", counted)
    return calls


def test_large_bodies_arrive_whole_and_the_connection_carries_on(
    nginx: Nginx, direct: list[int]
) -> None:
    with aioduct.BlockingClient() as client:
        for _ in range(3):
            assert client.get(nginx.http_url + "/bytes/1m").content == deterministic_bytes(SIZE)
            assert client.get(nginx.http_url + "/bytes/64k").content == deterministic_bytes(
                64 << 10
            )
            assert client.get(nginx.http_url + "/small").content == b"Hello, World!"
    assert len(direct) >= 3  # the 1 MiB bodies went into their buffers


def test_tls_bodies_are_decrypted_into_their_buffer(
    nginx: Nginx, tls_ca: Any, direct: list[int]
) -> None:
    with aioduct.BlockingClient(verify=tls_ca.ca_pem_path, http2=False) as client:
        for _ in range(2):
            r = client.get(nginx.https_url + "/bytes/1m")
            assert (r.http_version, r.content) == ("HTTP/1.1", deterministic_bytes(SIZE))
            assert client.get(nginx.https_url + "/small").content == b"Hello, World!"
    assert len(direct) >= 2


def test_silence_mid_body_is_a_read_timeout_and_poisons_nothing(
    script_server: ScriptServer, direct: list[int]
) -> None:
    bodies = serve(script_server)
    with aioduct.BlockingClient(read_timeout=0.3) as client:
        with pytest.raises(aioduct.ReadTimeout, match="reading the body"):
            client.get(script_server.url + "/stall")
        # The stalled server's late 0xAA bytes must not reach any later body.
        for key, body in bodies.items():
            assert client.get(script_server.url + "/body?" + key).content == body
    assert direct


def test_a_slow_but_steady_body_is_not_silence(
    script_server: ScriptServer, direct: list[int]
) -> None:
    bodies = serve(script_server)
    # 1 s in all, never 0.3 s without bytes: each receive that brought some starts a
    # new read timeout.
    with aioduct.BlockingClient(read_timeout=0.3) as client:
        assert client.get(script_server.url + "/steady").content == bodies["0"]
    assert direct


def test_a_total_timeout_ends_a_steady_body(script_server: ScriptServer, direct: list[int]) -> None:
    serve(script_server)
    with (
        aioduct.BlockingClient(read_timeout=5, timeout=0.5) as client,
        pytest.raises(aioduct.TimeoutError),
    ):
        client.get(script_server.url + "/steady")
    assert direct


def test_a_body_cut_short_is_a_protocol_error(
    script_server: ScriptServer, direct: list[int]
) -> None:
    bodies = serve(script_server)
    with aioduct.BlockingClient() as client:
        with pytest.raises(aioduct.RemoteProtocolError):
            client.get(script_server.url + "/cut")
        assert client.get(script_server.url + "/body?1").content == bodies["1"]
    assert direct
