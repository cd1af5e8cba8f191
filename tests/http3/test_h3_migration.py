"""Client-side QUIC connection migration (RFC 9000 §9) against aioquic's server on
loopback: the same QUIC connection moves to a new local UDP socket -- on request
(``migrate_http3``) or when sending fails because the local path broke -- and the
server, having validated the new path, answers on it."""

from __future__ import annotations

import errno

import pytest

import aioduct
from aioduct.http3 import HTTP3Connection
from aioduct.runtimes import Datagrams
from aioduct.testing.h3server import H3Server
from aioduct.testing.nginx import TLSMaterial, deterministic_bytes

from .conftest import options


def only_connection(engine: object) -> HTTP3Connection:
    pool = engine.pool  # type: ignore[attr-defined]
    (conn,) = pool.shared_connections()
    assert isinstance(conn, HTTP3Connection)
    return conn


class PathDown:
    """Fault injection around a real socket: sending fails as when the interface
    the socket is bound to went away (receiving still works, as it would briefly)."""

    def __init__(self, real: Datagrams) -> None:
        self.real = real
        self.failed = 0

    def send(self, data: bytes) -> None:
        self.failed += 1
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    async def recv(self, deadline: float | None) -> list[bytes]:
        return await self.real.recv(deadline)

    def wake(self) -> None:
        self.real.wake()

    def close(self) -> None:
        self.real.close()

    @property
    def peer_address(self) -> tuple[str, int]:
        return self.real.peer_address


async def test_migrate_keeps_the_quic_connection(
    h3: H3Server, tls_ca: TLSMaterial, quic_backend: str
) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]
        before = await client.get(h3.url + "/peer")
        conn = only_connection(client._engine)
        first_cid = conn.quic._peer_cid.cid if quic_backend == "aioquic" else None
        assert await client.migrate_http3() == 1
        after = await client.get(h3.url + "/peer")
        assert only_connection(client._engine) is conn and conn.migrations == 1
        if first_cid is not None:  # a fresh connection id for the new path
            assert conn.quic._peer_cid.cid != first_cid
    assert before.status == after.status == 200
    assert before.text != after.text  # the server saw another client port
    assert h3.connections_accepted == 1 and len(h3.handshakes) == 1  # no new handshake


async def test_migrate_with_a_download_in_flight(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]
        async with client.stream("GET", h3.url + "/bytes/4000000") as r:
            received = bytearray()
            async for chunk in r.aiter_raw():
                received += chunk
                if len(received) > 1_000_000 and not only_connection(client._engine).migrations:
                    assert await client.migrate_http3() == 1
        peer = await client.get(h3.url + "/peer")
        assert only_connection(client._engine).migrations == 1
    assert bytes(received) == deterministic_bytes(4_000_000)
    assert peer.status == 200 and h3.connections_accepted == 1


async def test_a_broken_path_moves_to_a_new_socket(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]
        before = await client.get(h3.url + "/peer")
        conn = only_connection(client._engine)
        broken = PathDown(conn.udp)
        conn.udp = broken
        after = await client.get(h3.url + "/peer")  # its first datagram fails to go out
        assert only_connection(client._engine) is conn
    assert broken.failed >= 1 and conn.migrations == 1
    assert before.text != after.text and h3.connections_accepted == 1


async def test_no_migration_before_the_handshake_or_after_close(
    h3: H3Server, tls_ca: TLSMaterial
) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]
        assert await client.migrate_http3() == 0  # nothing pooled yet
        await client.get(h3.url + "/small")
        conn = only_connection(client._engine)
        conn.close()
        assert not await conn.migrate()
    assert conn.migrations == 0


def test_blocking_client_migrates(h3: H3Server, tls_ca: TLSMaterial) -> None:
    with aioduct.BlockingClient(**options(tls_ca)) as client:  # type: ignore[arg-type]
        before = client.get(h3.url + "/peer")
        engine = client._engine()
        conn = only_connection(engine)
        assert client.migrate_http3() == 1
        moved = client.get(h3.url + "/peer")
        conn.udp = PathDown(conn.udp)  # and once more, by a send error
        again = client.get(h3.url + "/peer")
        assert only_connection(engine) is conn and conn.migrations == 2
    assert len({before.text, moved.text, again.text}) == 3
    assert h3.connections_accepted == 1


async def test_migration_disabled_by_the_server(h3: H3Server, tls_ca: TLSMaterial) -> None:
    """With disable_active_migration (RFC 9000 §18.2) the connection stays put: no move
    on request, and a broken path fails it (WriteError) instead; the next request gets
    a new connection."""
    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]
        await client.get(h3.url + "/small")
        conn = only_connection(client._engine)
        conn.quic.migration_disabled = True  # as if the transport parameter said so
        assert await client.migrate_http3() == 0
        conn.udp = PathDown(conn.udp)
        with pytest.raises(aioduct.WriteError, match="unreachable"):
            await client.get(h3.url + "/small")  # the server may have seen it: not resent
        r = await client.get(h3.url + "/small")
        assert only_connection(client._engine) is not conn
    assert r.status == 200 and conn.migrations == 0
    assert h3.connections_accepted == 2


def test_transport_parameter_is_read() -> None:
    """The server's disable_active_migration reaches ``migration_disabled``."""
    from aioquic.buffer import Buffer
    from aioquic.quic.packet import QuicTransportParameters, push_quic_transport_parameters

    from aioduct.config import Http3Config
    from aioduct.http3 import quic_configuration
    from aioduct.quic import load_backend

    config = Http3Config(backend="aioquic")
    quic = load_backend("aioquic").connection(
        quic_configuration(config, "localhost", verify=False, cafile=None), None
    )
    for disabled in (True, False):
        buf = Buffer(capacity=512)
        push_quic_transport_parameters(
            buf, QuicTransportParameters(disable_active_migration=disabled)
        )
        try:
            quic._parse_transport_parameters(buf.data)
        except Exception:  # aioquic goes on to check parameters this one lacks
            pass
        assert quic.migration_disabled is disabled
