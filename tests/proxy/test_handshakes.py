"""The sans-I/O proxy handshakes byte for byte: CONNECT, SOCKS5 (RFC 1928/1929),
SOCKS4 and SOCKS4a -- whole replies, replies split at every byte, refusals in words,
garbage, trailing bytes, and fields too long for the wire (refused, never truncated)."""

from __future__ import annotations

import pytest

from aioduct.errors import ProxyError
from aioduct.protocol.connect import ConnectHandshake
from aioduct.protocol.socks import Socks4Handshake, Socks5Handshake

P = "http://proxy:3128"


def feed(
    handshake: ConnectHandshake | Socks4Handshake | Socks5Handshake, data: bytes, step: int
) -> bytes:
    """Feed ``data`` in pieces of ``step`` bytes; return everything the handshake sent."""
    sent = handshake.data_to_send()
    for i in range(0, len(data), step):
        handshake.receive_data(data[i : i + step])
        sent += handshake.data_to_send()
    return sent


# -- CONNECT ---------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_connect_request_and_success(step: int) -> None:
    hs = ConnectHandshake("example.org", 443, proxy=P, proxy_authorization="Basic dTpw")
    assert hs.data_to_send() == (
        b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n"
        b"Proxy-Authorization: Basic dTpw\r\n\r\n"
    )
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 Connection established\r\nX: y\r\n\r\n"
    feed(hs, reply, step)
    assert hs.done


def test_connect_brackets_ipv6_and_sends_only_its_own_fields() -> None:
    hs = ConnectHandshake("::1", 8443, proxy=P, user_agent="aioduct/1")
    assert hs.data_to_send() == (
        b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\nUser-Agent: aioduct/1\r\n\r\n"
    )


def test_connect_refuses_bytes_after_the_head() -> None:
    hs = ConnectHandshake("example.org", 443, proxy=P)
    smuggled = b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
    with pytest.raises(ProxyError, match="bytes after its '200 OK' answer to CONNECT"):
        feed(hs, smuggled, 1000)
    assert not hs.done


def _feed_then_more(hs: ConnectHandshake, data: bytes) -> None:
    # Byte by byte the head completes first; the next byte is "after the tunnel opened".
    for i in range(len(data)):
        hs.receive_data(data[i : i + 1])
    raise AssertionError("not refused")


def test_connect_byte_by_byte_smuggling_is_refused_once_open() -> None:
    hs = ConnectHandshake("example.org", 443, proxy=P)
    with pytest.raises(ProxyError, match="after the tunnel was open"):
        _feed_then_more(hs, b"HTTP/1.1 200 OK\r\n\r\nX")


def test_connect_407_names_the_realm() -> None:
    hs = ConnectHandshake("example.org", 443, proxy=P)
    with pytest.raises(ProxyError, match="requires authentication for realm 'corp proxy'") as info:
        feed(
            hs,
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="corp proxy"\r\n\r\n',
            1000,
        )
    assert info.value.status == 407 and info.value.realm == "corp proxy"


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (
            b"HTTP/1.1 403 Forbidden\r\n\r\n",
            "refused the tunnel: it answered CONNECT with 'HTTP/1.1 403 Forbidden'",
        ),
        (b"HTTP/1.0 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad", "'HTTP/1.1 502 Bad Gateway'"),
        (b"\x05\x00", "did not answer CONNECT with HTTP"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "did not answer CONNECT with HTTP"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "did not answer CONNECT with HTTP"),
        (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\n", "closed the connection before answering"),
    ],
)
def test_connect_refusals(reply: bytes, match: str) -> None:
    hs = ConnectHandshake("example.org", 443, proxy=P)
    with pytest.raises(ProxyError, match=match):
        feed(hs, reply, 1000)
        hs.receive_data(b"")


def test_connect_huge_head_is_refused_early() -> None:
    hs = ConnectHandshake("example.org", 443, proxy=P, max_head_bytes=1024)
    hs.receive_data(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ProxyError, match="larger than 1024 bytes"):
        for _ in range(100):
            hs.receive_data(b"X-Filler: " + b"a" * 50 + b"\r\n")


# -- SOCKS5 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 2, 1000])
def test_socks5_no_auth_name(step: int) -> None:
    hs = Socks5Handshake("example.org", 443, proxy=P)
    sent = hs.data_to_send()
    assert sent == b"\x05\x01\x00"
    hs.receive_data(b"\x05\x00")
    assert hs.data_to_send() == b"\x05\x01\x00\x03\x0bexample.org\x01\xbb"
    feed(hs, b"\x05\x00\x00\x03\x04abcd\x00\x50", step)
    assert hs.done


@pytest.mark.parametrize("step", [1, 1000])
def test_socks5_username_password(step: int) -> None:
    hs = Socks5Handshake("10.0.0.1", 80, proxy=P, username="üser", password="pw")
    assert hs.data_to_send() == b"\x05\x02\x00\x02"
    replies = b"\x05\x02" + b"\x01\x00" + b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"
    sent = feed(hs, replies, step)
    user = "üser".encode()
    assert sent == (
        b"\x01"
        + bytes([len(user)])
        + user
        + b"\x02pw"
        + b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50"
    )
    assert hs.done


def test_socks5_ipv6_destination() -> None:
    hs = Socks5Handshake("::1", 443, proxy=P)
    hs.data_to_send()
    hs.receive_data(b"\x05\x00")
    assert hs.data_to_send() == b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01\x01\xbb"
    hs.receive_data(b"\x05\x00\x00\x04" + b"\x00" * 16 + b"\x00\x00")
    assert hs.done


def test_socks5_255_byte_fields_go_out_exactly() -> None:
    name = ".".join(["a" * 63] * 4)[:255]
    assert len(name) == 255
    hs = Socks5Handshake(name, 80, proxy=P, username="u" * 255, password="p" * 255)
    hs.data_to_send()
    hs.receive_data(b"\x05\x02")
    assert hs.data_to_send() == b"\x01\xff" + b"u" * 255 + b"\xff" + b"p" * 255
    hs.receive_data(b"\x01\x00")
    assert hs.data_to_send() == b"\x05\x01\x00\x03\xff" + name.encode() + b"\x00\x50"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"host": "a" * 256}, "256 bytes long, too long to be resolved remotely"),
        ({"host": "h", "username": "u" * 256, "password": "p"}, "SOCKS5 username is 256 bytes"),
        ({"host": "h", "username": "u", "password": "p" * 256}, "SOCKS5 password is 256 bytes"),
        ({"host": "h", "username": "", "password": "p"}, "username .* is empty"),
    ],
)
def test_socks5_fields_too_long_are_refused_before_sending(
    kwargs: dict[str, str], match: str
) -> None:
    host = kwargs.pop("host")
    with pytest.raises(ProxyError, match=match):
        Socks5Handshake(host, 80, proxy=P, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (1, "general SOCKS server failure"),
        (2, "connection not allowed by ruleset"),
        (3, "network unreachable"),
        (4, "host unreachable"),
        (5, "connection refused"),
        (6, "TTL expired"),
        (7, "command not supported"),
        (8, "address type not supported"),
        (0x42, "unknown reply code"),
    ],
)
def test_socks5_reply_codes_in_words(code: int, words: str) -> None:
    hs = Socks5Handshake("example.org", 443, proxy=P)
    hs.data_to_send()
    hs.receive_data(b"\x05\x00")
    with pytest.raises(ProxyError, match=words):
        hs.receive_data(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))


@pytest.mark.parametrize(
    ("replies", "match"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "did not answer as a SOCKS5 server"),
        (b"\x04\x5a", "did not answer as a SOCKS5 server"),
        (b"\x05\xff", "accepts none of the offered authentication methods"),
        (b"\x05\x02", "chose authentication method 0x02, which was not offered"),
        (b"\x05\x00\x05\x00\x00\x09\x00", "address type 0x09"),
        (b"\x05\x00\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00!", "unexpected bytes after its reply"),
        (b"\x05", "closed the connection while choosing an authentication method"),
        (b"\x05\x00\x05\x00\x00\x01\x00", "closed the connection while answering the CONNECT"),
    ],
)
def test_socks5_garbage_and_early_close(replies: bytes, match: str) -> None:
    hs = Socks5Handshake("example.org", 443, proxy=P)
    with pytest.raises(ProxyError, match=match):
        feed(hs, replies, 1000)
        hs.receive_data(b"")


def test_socks5_auth_rejected() -> None:
    hs = Socks5Handshake("example.org", 443, proxy=P, username="u", password="bad")
    with pytest.raises(ProxyError, match="rejected the username/password"):
        feed(hs, b"\x05\x02\x01\x01", 1)


# -- SOCKS4 / 4a -----------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 1000])
def test_socks4_and_4a(step: int) -> None:
    hs = Socks4Handshake("10.1.2.3", 80, proxy=P, remote_dns=False, user_id="bob")
    assert hs.data_to_send() == b"\x04\x01\x00\x50\x0a\x01\x02\x03bob\x00"
    feed(hs, b"\x00\x5a" + b"\x00" * 6, step)
    assert hs.done
    hs = Socks4Handshake("example.org", 443, proxy=P, remote_dns=True)
    assert hs.data_to_send() == b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00example.org\x00"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("::1", False, None), "carries only IPv4"),
        (("example.org", False, None), "needs an IPv4 address"),
        (("10.0.0.1", False, "a\x00b"), "NUL"),
        (("exa\x00mple", True, None), "invalid destination host"),
    ],
)
def test_socks4_refuses_what_it_cannot_carry(
    args: tuple[str, bool, str | None], match: str
) -> None:
    host, remote, user = args
    with pytest.raises(ProxyError, match=match):
        Socks4Handshake(host, 80, proxy=P, remote_dns=remote, user_id=user)


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"\x00\x5b\x00\x00\x00\x00\x00\x00", "request rejected or failed"),
        (b"\x00\x5c\x00\x00\x00\x00\x00\x00", "identd"),
        (b"\x00\x5d\x00\x00\x00\x00\x00\x00", "different user ID"),
        (b"\x05\x00", "did not answer as a SOCKS4 server"),
        (b"\x00\x5a\x00\x00\x00\x00\x00\x00HTTP", "unexpected bytes"),
        (b"\x00\x5a\x00", "closed the connection before answering"),
    ],
)
def test_socks4_replies(reply: bytes, match: str) -> None:
    hs = Socks4Handshake("10.0.0.1", 80, proxy=P, remote_dns=False)
    with pytest.raises(ProxyError, match=match):
        feed(hs, reply, 1000)
        hs.receive_data(b"")
