"""The sans-I/O TLS layer, pumped into a server instance of itself in memory.

No sockets: a client and a server :class:`TLSLayer` exchange ``data_to_send()`` until
neither has anything to say, which is all a runtime does with a transport in between.
"""

from __future__ import annotations

import ssl

import pytest

from aioduct.protocol.tls import MAX_RECORD_PLAINTEXT, TLSLayer
from aioduct.testing.nginx import TLSMaterial


@pytest.fixture(scope="module")
def server_context(tls_ca: TLSMaterial) -> ssl.SSLContext:
    ctx = tls_ca.server_ssl_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


@pytest.fixture(scope="module")
def client_context(tls_ca: TLSMaterial) -> ssl.SSLContext:
    ctx = tls_ca.client_ssl_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def pump(client: TLSLayer, server: TLSLayer) -> None:
    """Deliver everything either side has to send, until both are quiet."""
    while client.bytes_to_send or server.bytes_to_send:
        if client.bytes_to_send:
            server.receive_data(client.data_to_send())
        if server.bytes_to_send:
            client.receive_data(server.data_to_send())


def handshake(client: TLSLayer, server: TLSLayer) -> None:
    for _ in range(10):
        client_done = client.do_handshake()
        pump(client, server)
        server_done = server.do_handshake()
        pump(client, server)
        if client_done and server_done:
            return
    raise AssertionError("the handshake did not finish in 10 rounds")


def connect(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    session: ssl.SSLSession | None = None,
) -> tuple[TLSLayer, TLSLayer]:
    client = TLSLayer(client_context, server_hostname="localhost", session=session)
    server = TLSLayer(server_context, server_side=True)
    handshake(client, server)
    return client, server


def read_all(layer: TLSLayer, size: int = 1 << 21) -> bytes:
    buf = bytearray(size)
    n = layer.read_into(memoryview(buf))
    return bytes(buf[:n])


def test_handshake_negotiates_tls13_and_alpn(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    client, server = connect(client_context, server_context)
    assert client.handshake_complete and server.handshake_complete
    assert client.ssl_object.version() == "TLSv1.3"
    assert client.ssl_object.selected_alpn_protocol() == "http/1.1"
    assert client.ssl_object.getpeercert()["subjectAltName"]  # verified, so it is known
    assert not client.ssl_object.session_reused


def test_tls12_handshake(tls_ca: TLSMaterial, client_context: ssl.SSLContext) -> None:
    server_context = tls_ca.server_ssl_context()
    server_context.maximum_version = ssl.TLSVersion.TLSv1_2
    client, server = connect(client_context, server_context)
    assert client.ssl_object.version() == "TLSv1.2"
    server.receive_data(client.encrypt(b"ping"))
    assert read_all(server) == b"ping"


def test_records_both_ways_including_many_records(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    client, server = connect(client_context, server_context)
    server.receive_data(client.encrypt(b"GET / HTTP/1.1\r\n\r\n"))
    assert read_all(server) == b"GET / HTTP/1.1\r\n\r\n"
    body = bytes(range(256)) * 4096  # 1 MiB: 64 records
    wire = server.encrypt(body)
    assert len(wire) > len(body)
    client.receive_data(wire)
    assert read_all(client) == body
    assert not client.closed


def test_session_tickets_are_consumed_without_data(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    """TLS 1.3 tickets arrive after the handshake as records without data: reading them
    yields nothing, raises nothing and does not end the stream."""
    client, _server = connect(client_context, server_context)
    # connect() delivered the server's tickets: the client has ciphertext, no plaintext.
    assert client.pending_plaintext()
    assert read_all(client) == b""
    assert not client.closed and not client.pending_plaintext()
    assert client.ssl_object.session is not None and client.ssl_object.session.has_ticket


def test_ciphertext_split_at_every_byte(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    client, server = connect(client_context, server_context)
    read_all(client)  # the tickets
    wire = server.encrypt(b"hello") + server.encrypt(b" world")
    buf = bytearray(64)
    got = bytearray()
    for i in range(len(wire)):
        client.receive_data(wire[i : i + 1])
        got += buf[: client.read_into(memoryview(buf))]
    assert got == b"hello world"


def test_a_full_buffer_leaves_the_rest_for_the_next_read(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    client, server = connect(client_context, server_context)
    client.receive_data(server.encrypt(b"x" * 3 * MAX_RECORD_PLAINTEXT))
    small = bytearray(1000)
    assert client.read_into(memoryview(small)) == 1000
    assert client.pending_plaintext()
    assert len(read_all(client)) == 3 * MAX_RECORD_PLAINTEXT - 1000
    assert not client.pending_plaintext()


def test_close_notify_ends_the_stream_after_the_data_before_it(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    client, server = connect(client_context, server_context)
    client.receive_data(server.encrypt(b"last words") + server.close())
    assert read_all(client) == b"last words"
    assert client.closed and client.close_notify_received
    assert read_all(client) == b""
    with pytest.raises(ssl.SSLError):
        server.encrypt(b"after close")


def test_our_close_notify_reaches_the_peer(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    client, server = connect(client_context, server_context)
    server.receive_data(client.close())
    assert read_all(server) == b""
    assert server.closed and server.close_notify_received


def test_close_before_the_handshake_says_nothing(client_context: ssl.SSLContext) -> None:
    client = TLSLayer(client_context, server_hostname="localhost")
    assert client.close() == b""


def test_transport_eof_between_records_is_the_end(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    """No close_notify, as many servers do: the end, like ``suppress_ragged_eofs``."""
    client, server = connect(client_context, server_context)
    client.receive_data(server.encrypt(b"body"))
    client.receive_data(b"")
    assert read_all(client) == b"body"
    assert client.closed and not client.close_notify_received


def test_transport_eof_inside_a_record_is_the_end_too(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    """A truncated record yields nothing of it; HTTP's framing reports the short body."""
    client, server = connect(client_context, server_context)
    read_all(client)
    wire = server.encrypt(b"complete") + server.encrypt(b"truncated")
    client.receive_data(wire[:-5])
    client.receive_data(b"")
    assert read_all(client) == b"complete"
    assert client.closed and not client.close_notify_received


def test_eof_during_the_handshake_is_an_error(client_context: ssl.SSLContext) -> None:
    client = TLSLayer(client_context, server_hostname="localhost")
    assert not client.do_handshake()
    assert client.data_to_send().startswith(b"\x16\x03")  # a ClientHello record
    client.receive_data(b"")
    with pytest.raises(ssl.SSLEOFError):
        client.do_handshake()


def test_plain_http_instead_of_tls(client_context: ssl.SSLContext) -> None:
    client = TLSLayer(client_context, server_hostname="localhost")
    client.do_handshake()
    client.data_to_send()
    client.receive_data(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ssl.SSLError) as info:
        client.do_handshake()
    assert info.value.reason == "WRONG_VERSION_NUMBER"


def test_a_tampered_record_fails_the_connection(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    client, server = connect(client_context, server_context)
    read_all(client)
    wire = bytearray(server.encrypt(b"integrity matters"))
    wire[-1] ^= 0x01  # the authentication tag
    client.receive_data(bytes(wire))
    with pytest.raises(ssl.SSLError) as info:
        read_all(client)
    assert not isinstance(info.value, ssl.SSLEOFError | ssl.SSLZeroReturnError)
    assert client.bytes_to_send  # the alert for the server


def test_certificate_for_another_host_is_refused_and_the_server_told(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    client = TLSLayer(client_context, server_hostname="example.org")
    server = TLSLayer(server_context, server_side=True)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        handshake(client, server)
    assert info.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
    assert client.bytes_to_send  # a bad_certificate alert
    server.receive_data(client.data_to_send())
    with pytest.raises(ssl.SSLError, match="ALERT_BAD_CERTIFICATE"):
        server.do_handshake()


def test_unknown_ca_is_refused(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    stranger = ssl.create_default_context()  # system roots: not our test CA
    client = TLSLayer(stranger, server_hostname="localhost")
    server = TLSLayer(server_context, server_side=True)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        handshake(client, server)
    assert info.value.verify_code in (19, 20, 21)


def test_session_resumption(client_context: ssl.SSLContext, server_context: ssl.SSLContext) -> None:
    first, _ = connect(client_context, server_context)
    read_all(first)  # the tickets
    session = first.ssl_object.session
    assert session is not None and session.has_ticket
    second, server = connect(client_context, server_context, session)
    assert second.ssl_object.session_reused and server.ssl_object.session_reused
    server.receive_data(second.encrypt(b"resumed"))
    assert read_all(server) == b"resumed"


def test_a_session_is_only_offered_where_it_came_from(
    tls_ca: TLSMaterial, client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    first, _ = connect(client_context, server_context)
    read_all(first)
    session = first.ssl_object.session
    assert session is not None
    other = tls_ca.client_ssl_context()  # same CA, other settings object
    with pytest.raises(ValueError, match="different SSLContext"):
        TLSLayer(other, server_hostname="localhost", session=session)
