"""The HTTP ``CONNECT`` handshake (RFC 9110 §9.3.6) as a sans-I/O state machine.

:class:`ConnectHandshake` asks an HTTP proxy for a tunnel to ``host:port`` and judges
its answer; it never touches a socket. Like every proxy handshake in aioduct (see
:mod:`aioduct.protocol.socks`) it has three calls::

    handshake = ConnectHandshake("example.org", 443, proxy_authorization="Basic ...")
    sock.sendall(handshake.data_to_send())
    while not handshake.done:
        handshake.receive_data(sock.recv(65536))   # b"" at EOF; raises ProxyError
        sock.sendall(handshake.data_to_send())

What it decides:

* The request carries only ``Host``, ``Proxy-Authorization`` (when the proxy URL has
  credentials) and ``User-Agent``: the user's own headers (``Authorization``,
  ``Cookie``) belong inside the tunnel, never in clear to the proxy (curl
  CVE-2015-3153).
* A 2xx answer opens the tunnel. Bytes after its head are refused: nothing may come
  from the far side before the client speaks (TLS, HTTP), so they can only be a
  smuggled response the proxy (or whoever sits in front of it) made up.
* 407 (or 401: a ``CONNECT`` answer can only be the proxy's) names the proxy's realm;
  any other status names the proxy's status line; a head
  larger than ``max_head_bytes`` or a line that is not HTTP is refused. 1xx interim
  responses are skipped.
"""

from __future__ import annotations

import re
from typing import Final

from ..errors import ProxyError

__all__ = ["ConnectHandshake", "authority"]

_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([^\r\n]*))?")
_REALM: Final = re.compile(r'realm="([^"]*)"|realm=([^\s,]+)', re.IGNORECASE)


def authority(host: str, port: int) -> str:
    """``host:port`` as a request-target and ``Host`` value (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ConnectHandshake:
    """One ``CONNECT`` exchange with an HTTP proxy (see the module docstring)."""

    __slots__ = ("_buffer", "_max_head", "_out", "_proxy", "done")

    def __init__(
        self,
        host: str,
        port: int,
        *,
        proxy: str,
        proxy_authorization: str | None = None,
        user_agent: str | None = None,
        max_head_bytes: int = 65536,
    ) -> None:
        """``proxy`` names the proxy in errors (without credentials)."""
        target = authority(host, port)
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if proxy_authorization is not None:
            lines.append(f"Proxy-Authorization: {proxy_authorization}")
        if user_agent is not None:
            lines.append(f"User-Agent: {user_agent}")
        self._out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._proxy = proxy
        self._buffer = bytearray()
        self._max_head = max_head_bytes
        #: The tunnel is open: from now on the stream carries the target's bytes.
        self.done = False

    def data_to_send(self) -> bytes:
        """Bytes to write to the proxy now (the request, once)."""
        out, self._out = self._out, b""
        return out

    def receive_data(self, data: bytes) -> None:
        """Bytes from the proxy (``b""`` at EOF). Raises :class:`ProxyError` on refusal."""
        if self.done:
            raise ProxyError(
                f"proxy {self._proxy} sent {len(data)} bytes after the tunnel was open"
            )
        if not data:
            raise ProxyError(
                f"proxy {self._proxy} closed the connection before answering CONNECT "
                f"({len(self._buffer)} bytes of a response received)"
            )
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self._max_head:
                    raise ProxyError(
                        f"proxy {self._proxy} sent a CONNECT response head larger than "
                        f"{self._max_head} bytes; refusing it"
                    )
                if buffer and not b"HTTP/1.".startswith(bytes(buffer[:7])):
                    raise self._not_http()
                return
            if end > self._max_head:
                raise ProxyError(
                    f"proxy {self._proxy} sent a CONNECT response head larger than "
                    f"{self._max_head} bytes; refusing it"
                )
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            status, reason, fields = self._parse(head)
            if 100 <= status < 200:
                continue  # interim: the real answer follows
            if 200 <= status < 300:
                if buffer:
                    raise ProxyError(
                        f"proxy {self._proxy} sent {len(buffer)} bytes after its "
                        f"'{status} {reason}' answer to CONNECT, before the tunnel carried "
                        "anything: refusing the tunnel (a smuggled response?)"
                    )
                self.done = True
                return
            raise self._refusal(status, reason, fields)

    def _not_http(self) -> ProxyError:
        start = bytes(self._buffer[:32])
        return ProxyError(
            f"proxy {self._proxy} did not answer CONNECT with HTTP (it sent {start!r}); "
            "is it an HTTP proxy? A SOCKS proxy needs a socks5:// or socks4:// URL"
        )

    def _parse(self, head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
        lines = head.split(b"\r\n")
        match = _STATUS_LINE.fullmatch(lines[0])
        if match is None:
            raise self._not_http()
        fields = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise ProxyError(
                    f"proxy {self._proxy} sent a malformed header line in its CONNECT "
                    f"response: {line[:64]!r}"
                )
            fields.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
        return int(match.group(1)), (match.group(2) or b"").decode("latin-1"), fields

    def _refusal(self, status: int, reason: str, fields: list[tuple[str, str]]) -> ProxyError:
        line = f"{status} {reason}".rstrip()
        if status in (407, 401):  # (tinyproxy 1.11 says 401 Unauthorized on CONNECT)
            realms = []
            for name, value in fields:
                if name in ("proxy-authenticate", "www-authenticate"):
                    found = _REALM.search(value)
                    realms.append(
                        (found.group(1) or found.group(2)) if found else value.split(" ")[0]
                    )
            realm = f" for realm {realms[0]!r}" if realms else ""
            return ProxyError(
                f"proxy {self._proxy} requires authentication{realm} ({line}): put the "
                "credentials in the proxy URL (http://user:password@host:port), or check "
                "them if they are there",
                status=status,
                realm=realms[0] if realms else None,
            )
        return ProxyError(
            f"proxy {self._proxy} refused the tunnel: it answered CONNECT with 'HTTP/1.1 {line}'",
            status=status,
        )
