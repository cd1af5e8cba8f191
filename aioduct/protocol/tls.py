"""TLS as a sans-I/O state machine: ``ssl.SSLObject`` between two ``ssl.MemoryBIO``\\ s.

:class:`TLSLayer` never touches a socket. Ciphertext from the peer goes in with
:meth:`~TLSLayer.receive_data` (``b""`` when the transport reached EOF); the handshake
advances with :meth:`~TLSLayer.do_handshake`; plaintext comes out of
:meth:`~TLSLayer.read_into`; plaintext to send goes in with :meth:`~TLSLayer.encrypt`,
which hands back the records to put on the wire; :meth:`~TLSLayer.data_to_send` holds
whatever else the layer has to say (handshake messages, alerts, ``close_notify``)::

    tls = TLSLayer(context, server_hostname="example.org")
    while not tls.do_handshake():
        sock.sendall(tls.data_to_send())
        tls.receive_data(sock.recv(65536))
    sock.sendall(tls.data_to_send() + tls.encrypt(b"GET / HTTP/1.1\\r\\n..."))

This is how a runtime that owns its transport (an asyncio ``BufferedProtocol``, a ring)
does TLS without ``loop.start_tls``: it moves bytes, the layer does the rest, and the
same layer can be tested by pumping a client and a server instance into each other in
memory. It is trio's ``SSLStream`` without the I/O.

What the layer decides, so that its callers do not have to know ``ssl``'s quirks:

* ``SSLWantReadError`` never escapes: it means "no complete record yet", which is a
  return value (``False`` from :meth:`do_handshake`, ``0`` from :meth:`read_into`).
* The end of the peer's data is :attr:`closed`, with :attr:`close_notify_received`
  telling a ``close_notify`` from a bare transport EOF. A bare EOF between records is
  taken as the end (Python's ``suppress_ragged_eofs``, asyncio's ``sslproto``): HTTP
  frames its messages, and its own framing catches a truncated body.
* A bare EOF *during the handshake* is an error (``ssl.SSLEOFError``), as is every
  certificate, protocol or alert failure (``ssl.SSLError`` subclasses, which are
  ``OSError``\\ s): :func:`aioduct.tls.tls_error` words them for users.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Final, TypeAlias

__all__ = ["MAX_RECORD_OVERHEAD", "MAX_RECORD_PLAINTEXT", "TLSLayer"]

#: The most plaintext one TLS record carries (RFC 8446 §5.1).
MAX_RECORD_PLAINTEXT: Final = 16384
#: The most a record's ciphertext exceeds its plaintext (RFC 8446 §5.2: 256 bytes).
MAX_RECORD_OVERHEAD: Final = 256

Bytes: TypeAlias = bytes | bytearray | memoryview


class TLSLayer:
    """One side (client, or server for tests) of a TLS connection; see the module doc."""

    __slots__ = (
        "_incoming",
        "_outgoing",
        "_read",
        "_write",
        "close_notify_received",
        "closed",
        "handshake_complete",
        "ssl_object",
    )

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_hostname: str | None = None,
        server_side: bool = False,
        session: ssl.SSLSession | None = None,
    ) -> None:
        """Raises ``ValueError`` if ``session`` comes from another context (OpenSSL would
        refuse it, and resuming under other verification settings must never happen)."""
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object: ssl.SSLObject = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
            session=session,
        )
        # Records are read and written through the C object under ``ssl.SSLObject``:
        # its Python methods only forward, and a forwarding call per record is a
        # measurable share of a small response.
        sslobj = getattr(self.ssl_object, "_sslobj", self.ssl_object)
        # (typeshed says bytes; with a buffer, read returns the count written into it)
        self._read: Callable[[int, memoryview], int] = sslobj.read  # type: ignore[assignment]
        self._write: Callable[[Bytes], int] = sslobj.write
        self.handshake_complete = False
        #: No more plaintext will come: the peer sent ``close_notify`` or the transport
        #: reached EOF (and every complete record before it was read).
        self.closed = False
        self.close_notify_received = False

    # -- bytes from the peer ---------------------------------------------------------------

    def receive_data(self, data: Bytes) -> None:
        """Ciphertext received from the peer; ``b""`` means the transport reached EOF."""
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    # -- handshake ---------------------------------------------------------------------------

    def do_handshake(self) -> bool:
        """Advance the handshake with the bytes received so far; ``True`` once complete.

        Send :meth:`data_to_send` after every call, also when it raises: a failed
        handshake leaves an alert there for the peer. Raises ``ssl.SSLError`` (e.g.
        ``SSLCertVerificationError``; ``SSLEOFError`` if the transport ended first).
        """
        if self.handshake_complete:
            return True
        try:
            self.ssl_object.do_handshake()
        except ssl.SSLWantReadError:
            if self._incoming.eof:
                # No bytes will come to finish it (OpenSSL only says "want read" when
                # the EOF arrived before any handshake record).
                raise ssl.SSLEOFError(
                    ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol"
                ) from None
            return False
        self.handshake_complete = True
        return True

    # -- plaintext out -----------------------------------------------------------------------

    def read_into(self, buffer: memoryview, data: Bytes | None = None) -> int:
        """Decrypt every complete record received so far into ``buffer``; bytes written.

        ``data``, if given, is ciphertext just received (as for :meth:`receive_data`,
        in the same call: this is the once-per-receive path). ``0`` means nothing to
        read until more ciphertext arrives, or the end (see :attr:`closed`). It stops
        early only when ``buffer`` is full: call again with room. Records without data
        (TLS 1.3 session tickets) are consumed on the way. Use after the handshake.
        """
        incoming = self._incoming
        if data is not None:
            if data:
                incoming.write(data)
            else:
                incoming.write_eof()
        if self.closed:
            return 0
        read = self._read
        size = len(buffer)
        filled = 0
        try:
            # SSL_read returns one record's data at a time, all of it when it fits. Read
            # again only while ciphertext (or the EOF) waits: a read that must fail
            # costs an exception, and a one-record response stays at one call.
            n = filled = read(size, buffer)
            while n and filled < size and (incoming.pending or incoming.eof):
                n = read(size - filled, buffer[filled:])
                filled += n
            if not n:  # CPython's answer to a close_notify once OpenSSL has seen it
                self.closed = self.close_notify_received = True
        except ssl.SSLWantReadError:
            if incoming.eof and not incoming.pending:
                self.closed = True  # transport EOF between records: the end
        except ssl.SSLZeroReturnError:
            self.closed = self.close_notify_received = True
        except ssl.SSLEOFError:
            self.closed = True  # EOF without close_notify (see the module doc)
        return filled

    def pending_plaintext(self) -> bool:
        """Whether :meth:`read_into` may have something (for a caller whose buffer filled)."""
        return not self.closed and bool(self._incoming.pending or self.ssl_object.pending())

    # -- plaintext in ------------------------------------------------------------------------

    def encrypt(self, data: Bytes) -> bytes:
        """Encrypt application data; the records to send (after anything already queued).

        Raises ``ssl.SSLError`` if the connection was closed by :meth:`close` or failed.
        """
        self._write(data)
        return self._outgoing.read()

    def data_to_send(self) -> bytes:
        """Records the layer wants sent: handshake messages, alerts, ``close_notify``."""
        return self._outgoing.read()

    @property
    def bytes_to_send(self) -> int:
        """Size of :meth:`data_to_send` (checked without copying)."""
        return self._outgoing.pending

    def close(self) -> bytes:
        """Queue our ``close_notify`` and return what to send; the peer's is not awaited.

        HTTP needs no answer: the connection is closed right after. Returns ``b""`` if
        the handshake never completed (there is no session to close).
        """
        if self.handshake_complete:
            try:
                self.ssl_object.unwrap()
            except ssl.SSLWantReadError:
                pass  # sent ours; the peer's close_notify is what it would wait for
            except ssl.SSLError:
                pass  # already failed or closed: nothing more to say
        return self._outgoing.read()
