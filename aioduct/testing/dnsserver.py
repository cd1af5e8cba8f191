"""Loopback DNS servers for tests: DNS over HTTPS, DNS over TLS, and a blackholed port.

:class:`Zone` answers DNS queries (dnspython builds the messages) from a dict of names,
and misbehaves on request per name (``SERVFAIL``, garbage bytes, an answer to another
question, silence). :func:`serve_doh` puts a zone behind a :class:`ScriptServer` route
(RFC 8484 GET and POST); :class:`DoTServer` serves it over TLS with two-byte length
framing (RFC 7858). :func:`blackhole` gives a port whose SYNs go unanswered, for happy
eyeballs tests: a listening socket that never accepts, its backlog full.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from .server import Conn, ScriptServer, ServerRequest, start_loop_thread

__all__ = ["DoTServer", "Zone", "blackhole", "serve_doh"]

#: Special values of :attr:`Zone.records` that make the server misbehave for a name.
MISBEHAVIOURS = ("servfail", "nxdomain", "garbage", "mismatch", "silent", "truncated")


class Zone:
    """Names and their addresses; a name mapped to one of :data:`MISBEHAVIOURS` gets that.

    Names not in ``records`` get NXDOMAIN. ``queries`` records ``(name, type)`` asked.
    """

    def __init__(self, records: dict[str, list[str] | str], *, ttl: int = 300) -> None:
        self.records = records
        self.ttl = ttl
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def answer(self, wire: bytes) -> bytes | None:
        """The reply to a query message, or ``None`` to say nothing."""
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self.queries.append((name, kind))
        entry = self.records.get(name)
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.RA
        if entry is None or entry == "nxdomain":
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif entry == "servfail":
            reply.set_rcode(dns.rcode.SERVFAIL)
        elif entry == "garbage":
            return b"\x13\x37 this is not a DNS message"
        elif entry == "truncated":
            return wire[:5]
        elif entry == "silent":
            return None
        elif entry == "mismatch":
            other = dns.message.make_query("elsewhere.test", question.rdtype)
            other.id = query.id
            reply = dns.message.make_response(other)
            reply.answer.append(
                dns.rrset.from_text("elsewhere.test.", self.ttl, "IN", "A", "192.0.2.1")
            )
        else:
            assert isinstance(entry, list)
            family = "AAAA" if question.rdtype == dns.rdatatype.AAAA else "A"
            ips = [ip for ip in entry if (":" in ip) == (family == "AAAA")]
            if question.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and ips:
                reply.answer.append(
                    dns.rrset.from_text(question.name, self.ttl, "IN", family, *ips)
                )
        return reply.to_wire()


def serve_doh(server: ScriptServer, zone: Zone, path: str = "/dns-query") -> str:
    """Answer RFC 8484 queries at ``path`` of ``server``; returns the DoH URL."""

    async def handle(conn: Conn, req: ServerRequest) -> None:
        if req.method == "GET":
            params = dict(p.partition("=")[::2] for p in req.query.split("&") if p)
            encoded = params.get("dns", "")
            wire = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        else:
            wire = req.body
        answer = zone.answer(wire)
        if answer is None:
            await conn.sleep(30)
            return
        await conn.send_response(200, [("Content-Type", "application/dns-message")], answer)

    server.add_route(path, handle)
    return server.url + path


class DoTServer:
    """DNS over TLS on ``127.0.0.1`` (or ``host``), answering from a :class:`Zone`."""

    def __init__(self, zone: Zone, tls: ssl.SSLContext, *, host: str = "127.0.0.1") -> None:
        self.zone = zone
        self.tls = tls
        self.host = host
        self.port = 0
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                answer = self.zone.answer(await reader.readexactly(size))
                if answer is not None:
                    writer.write(len(answer).to_bytes(2, "big") + answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def start(self) -> DoTServer:
        self._loop, self._thread = start_loop_thread(
            self._listen, name="dot-server", on_error=lambda _ctx: None
        )
        return self

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return

        async def stop() -> None:
            if self._server is not None:
                self._server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)

    def __enter__(self) -> DoTServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def blackhole(host: str = "127.0.0.1") -> Iterator[int]:
    """A port on ``host`` where connects hang: a listener that never accepts, its
    backlog filled first, so the kernel drops further SYNs (no RST, no answer)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind((host, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):
            filler = socket.socket(family, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex((host, port))
            fillers.append(filler)
        time.sleep(0.05)  # let the handshakes of the fillers complete
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
