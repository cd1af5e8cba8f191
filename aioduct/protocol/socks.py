"""SOCKS4, SOCKS4a (no RFC; the NEC/OpenSSH descriptions) and SOCKS5 (RFC 1928, with
RFC 1929 username/password) client handshakes as sans-I/O state machines.

Each handshake has the interface of :class:`~aioduct.protocol.connect.ConnectHandshake`:
:meth:`data_to_send` (bytes for the proxy), :meth:`receive_data` (bytes from it, ``b""``
at EOF; raises :class:`~aioduct.errors.ProxyError`), and :attr:`done` once the proxy
relays the stream to the destination. Replies may arrive one byte at a time or all at
once; each reply's length is known, so bytes beyond the last reply -- which nothing on
the far side may send before the client speaks -- are refused rather than guessed at.

Everything that would not fit the protocol's one-byte length fields (a host name or
credential over 255 bytes, curl CVE-2023-38545) or its NUL-terminated strings is refused
when the handshake is *built*, before any byte goes to the proxy: never truncated.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Final

from ..errors import ProxyError

__all__ = ["SOCKS4_REPLIES", "SOCKS5_REPLIES", "Socks4Handshake", "Socks5Handshake"]

#: RFC 1928 §6 reply codes, in words.
SOCKS5_REPLIES: Final = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}
#: SOCKS4 reply codes (CD field), in words.
SOCKS4_REPLIES: Final = {
    0x5B: "request rejected or failed",
    0x5C: "request rejected: the proxy cannot reach the client's identd",
    0x5D: "request rejected: identd reports a different user ID",
}

_NO_AUTH: Final = 0x00
_USER_PASS: Final = 0x02
_NO_ACCEPTABLE: Final = 0xFF


def _field(value: str, what: str, proxy: str) -> bytes:
    """A 1..255-byte field of the SOCKS5 wire format, or a ProxyError saying why not."""
    data = value.encode("utf-8")
    if len(data) > 255:
        raise ProxyError(
            f"the {what} is {len(data)} bytes long; SOCKS5 carries at most 255 "
            f"(proxy {proxy}): nothing was sent"
        )
    return data


class Socks5Handshake:
    """Greeting, optional RFC 1929 authentication, then ``CONNECT`` to the destination.

    ``host`` is an IP address (``socks5://``: resolved here) or a name the proxy
    resolves (``socks5h://``).
    """

    __slots__ = (
        "_buffer",
        "_out",
        "_password",
        "_proxy",
        "_request",
        "_state",
        "_username",
        "done",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        proxy: str,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._proxy = proxy
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is None:
            name = host.encode("idna") if not host.isascii() else host.encode("ascii")
            if len(name) > 255:
                raise ProxyError(
                    f"the destination host name is {len(name)} bytes long, too long to be "
                    f"resolved remotely by the SOCKS5 proxy {proxy} (at most 255): "
                    "nothing was sent"
                )
            if not name:
                raise ProxyError(f"empty destination host for SOCKS5 proxy {proxy}")
            address = b"\x03" + bytes([len(name)]) + name
        elif ip.version == 4:
            address = b"\x01" + ip.packed
        else:
            address = b"\x04" + ip.packed
        self._request = b"\x05\x01\x00" + address + struct.pack("!H", port)
        self._username: bytes | None = None
        self._password = b""
        if username is not None:
            self._username = _field(username, "SOCKS5 username", proxy)
            self._password = _field(password or "", "SOCKS5 password", proxy)
            if not self._username:
                raise ProxyError(f"the SOCKS5 username for proxy {proxy} is empty")
            methods = bytes([_NO_AUTH, _USER_PASS])
        else:
            methods = bytes([_NO_AUTH])
        self._out = b"\x05" + bytes([len(methods)]) + methods
        self._buffer = bytearray()
        self._state = "method"
        self.done = False

    def data_to_send(self) -> bytes:
        out, self._out = self._out, b""
        return out

    def receive_data(self, data: bytes) -> None:
        if not data:
            step = {
                "method": "choosing an authentication method",
                "auth": "checking the username/password",
                "reply": "answering the CONNECT request",
            }.get(self._state, "the handshake")
            raise ProxyError(f"SOCKS5 proxy {self._proxy} closed the connection while {step}")
        buffer = self._buffer
        buffer += data
        while buffer:
            if self.done:
                raise ProxyError(
                    f"SOCKS5 proxy {self._proxy} sent {len(buffer)} unexpected bytes after "
                    "its reply, before the connection carried anything: refusing it"
                )
            if buffer[0] != (0x01 if self._state == "auth" else 0x05):
                raise ProxyError(
                    f"proxy {self._proxy} did not answer as a SOCKS5 server (it sent "
                    f"{bytes(buffer[:16])!r}); is it a SOCKS5 proxy?"
                )
            if self._state == "method":
                if len(buffer) < 2:
                    return
                method = buffer[1]
                del buffer[:2]
                if method == _NO_AUTH:
                    self._state = "reply"
                    self._out += self._request
                elif method == _USER_PASS and self._username is not None:
                    self._state = "auth"
                    user, password = self._username, self._password
                    self._out += (
                        b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password
                    )
                elif method == _NO_ACCEPTABLE:
                    raise ProxyError(
                        f"SOCKS5 proxy {self._proxy} accepts none of the offered "
                        "authentication methods"
                        + (
                            " (no authentication, username/password)"
                            if self._username is not None
                            else " (no authentication): it needs a username and password "
                            "in the proxy URL (socks5://user:password@host:port)"
                        )
                    )
                else:
                    raise ProxyError(
                        f"SOCKS5 proxy {self._proxy} chose authentication method "
                        f"{method:#04x}, which was not offered"
                    )
            elif self._state == "auth":
                if len(buffer) < 2:
                    return
                status = buffer[1]
                del buffer[:2]
                if status != 0:
                    raise ProxyError(
                        f"SOCKS5 proxy {self._proxy} rejected the username/password "
                        f"(status {status}): check the credentials in the proxy URL"
                    )
                self._state = "reply"
                self._out += self._request
            else:
                if len(buffer) < 5:
                    return
                code, atyp = buffer[1], buffer[3]
                if code != 0:
                    words = SOCKS5_REPLIES.get(code, "unknown reply code")
                    raise ProxyError(
                        f"SOCKS5 proxy {self._proxy} could not connect to the destination: "
                        f"{words} (reply {code:#04x})"
                    )
                if atyp == 0x01:
                    size = 4 + 6
                elif atyp == 0x04:
                    size = 4 + 18
                elif atyp == 0x03:
                    size = 4 + 1 + buffer[4] + 2
                else:
                    raise ProxyError(
                        f"SOCKS5 proxy {self._proxy} sent a reply with address type "
                        f"{atyp:#04x}, which does not exist"
                    )
                if len(buffer) < size:
                    return
                del buffer[:size]
                self.done = True


class Socks4Handshake:
    """One SOCKS4 ``CONNECT`` (an IPv4 address) or SOCKS4a one (a name the proxy resolves).

    ``user_id`` is the proxy URL's user name (SOCKS4 has no password).
    """

    __slots__ = ("_buffer", "_out", "_proxy", "done")

    def __init__(
        self, host: str, port: int, *, proxy: str, remote_dns: bool, user_id: str | None = None
    ) -> None:
        self._proxy = proxy
        user = (user_id or "").encode("utf-8")
        if b"\x00" in user:
            raise ProxyError(f"the SOCKS4 user ID for proxy {proxy} contains a NUL byte")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            if ip.version != 4:
                raise ProxyError(
                    f"SOCKS4 proxy {proxy} cannot reach the IPv6 address {host}: SOCKS4 "
                    "carries only IPv4 (use a socks5:// proxy)"
                )
            request = b"\x04\x01" + struct.pack("!H", port) + ip.packed + user + b"\x00"
        elif remote_dns:
            name = host.encode("idna") if not host.isascii() else host.encode("ascii")
            if b"\x00" in name or not name:
                raise ProxyError(f"invalid destination host {host!r} for SOCKS4a proxy {proxy}")
            request = (
                b"\x04\x01"
                + struct.pack("!H", port)
                + b"\x00\x00\x00\x01"
                + user
                + b"\x00"
                + name
                + b"\x00"
            )
        else:
            raise ProxyError(f"SOCKS4 needs an IPv4 address, not {host!r} (proxy {proxy})")
        self._out = request
        self._buffer = bytearray()
        self.done = False

    def data_to_send(self) -> bytes:
        out, self._out = self._out, b""
        return out

    def receive_data(self, data: bytes) -> None:
        if not data:
            raise ProxyError(
                f"SOCKS4 proxy {self._proxy} closed the connection before answering the "
                "CONNECT request"
            )
        if self.done:
            raise ProxyError(
                f"SOCKS4 proxy {self._proxy} sent {len(data)} unexpected bytes after its "
                "reply, before the connection carried anything: refusing it"
            )
        buffer = self._buffer
        buffer += data
        if buffer[0] != 0x00:
            raise ProxyError(
                f"proxy {self._proxy} did not answer as a SOCKS4 server (it sent "
                f"{bytes(buffer[:16])!r}); is it a SOCKS4 proxy?"
            )
        if len(buffer) < 8:
            return
        code = buffer[1]
        if code != 0x5A:
            words = SOCKS4_REPLIES.get(code, "unknown reply code")
            raise ProxyError(
                f"SOCKS4 proxy {self._proxy} could not connect to the destination: "
                f"{words} (reply {code:#04x})"
            )
        if len(buffer) > 8:
            raise ProxyError(
                f"SOCKS4 proxy {self._proxy} sent {len(buffer) - 8} unexpected bytes after "
                "its reply, before the connection carried anything: refusing it"
            )
        self.done = True
