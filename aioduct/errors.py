"""The exception hierarchy.

Every failure aioduct raises is an :class:`AioductError`; catch that to catch everything.
The tree is shaped by what a caller can *do* about an error::

    AioductError
    ├── InvalidURL                 the URL cannot be requested at all (also a ValueError)
    ├── TransportError             the bytes did not get through
    │   ├── ConnectError           no connection could be made
    │   │   ├── TLSError           ... because the TLS handshake failed (names the cause)
    │   │   └── ProxyError         ... because the proxy refused or failed
    │   ├── ReadError              the connection broke while reading the response
    │   ├── WriteError             the connection broke while sending the request
    │   └── ProtocolError          a peer broke HTTP's rules
    │       ├── RemoteProtocolError    the server sent something invalid
    │       └── LocalProtocolError     we were asked to send something invalid
    ├── TimeoutError               a deadline passed (also the builtin TimeoutError)
    │   ├── ConnectTimeout  ReadTimeout  WriteTimeout  PoolTimeout  TotalTimeout
    ├── RedirectError              a redirect could not be followed
    │   └── TooManyRedirects       ... because the chain exceeded max_redirects
    ├── AuthError                  an authentication exchange could not be completed
    ├── StatusError                raise_for_status() on a 4xx/5xx response
    ├── DecodeError                the body could not be decoded (charset, JSON, encoding)
    ├── BodyTooLarge               a body exceeded the configured limit
    ├── ClientClosed               the client was used after close()
    └── EngineUnavailable          the engine asked for cannot run here (says why)

The bulk engines add ``WorkerCrashed`` (a TransportError): the local-engine worker
process running a request died on every attempt it was given; and ``ProcessError``: a
``process=`` function could not be imported, raised, or returned a value msgpack cannot
carry (on a Result, its ``error.kind`` is ``"ProcessError"``).

``is_timeout`` and ``is_connect`` answer the two questions retry logic asks most.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Response

__all__ = [
    "AioductError",
    "AuthError",
    "BodyTooLarge",
    "ClientClosed",
    "ConnectError",
    "ConnectTimeout",
    "DecodeError",
    "EngineUnavailable",
    "InvalidURL",
    "LocalProtocolError",
    "PoolTimeout",
    "ProcessError",
    "ProtocolError",
    "ProxyError",
    "ReadError",
    "ReadTimeout",
    "RedirectError",
    "RemoteProtocolError",
    "StatusError",
    "TLSError",
    "TimeoutError",
    "TooManyRedirects",
    "TotalTimeout",
    "TransportError",
    "WorkerCrashed",
    "WriteError",
    "WriteTimeout",
]


class AioductError(Exception):
    """Base of every error aioduct raises.

    ``method`` and ``url`` name the request that failed once the pipeline knows them.
    """

    method: str | None = None
    url: str | None = None
    attempts: int = 1
    """Times the request was sent before this error (more than 1 after retries)."""

    def __init__(self, message: str = "", *, method: str | None = None, url: str | None = None):
        super().__init__(message)
        if method is not None:
            self.method = method
        if url is not None:
            self.url = url

    @property
    def is_timeout(self) -> bool:
        """True when a deadline passed (connect, read, write, pool or total)."""
        return isinstance(self, TimeoutError)

    @property
    def is_connect(self) -> bool:
        """True when no connection could be established (including connect timeouts)."""
        return isinstance(self, ConnectError | ConnectTimeout)

    def _with_request(self, method: str, url: str) -> AioductError:
        if self.method is None:
            self.method = method
        if self.url is None:
            self.url = url
        return self

    def __str__(self) -> str:
        text = super().__str__()
        if self.url is not None and self.url not in text:
            request = self.url if self.method is None else f"{self.method} {self.url}"
            return f"{text} ({request})"
        return text


class InvalidURL(AioductError, ValueError):
    """The URL is malformed or uses a scheme aioduct cannot request."""


class TransportError(AioductError):
    """The exchange failed below HTTP semantics: connection, TLS, or framing."""


class ConnectError(TransportError):
    """No connection could be established (DNS, refused, unreachable)."""


class TLSError(ConnectError):
    """The TLS handshake failed; the message names the cause (expired, wrong host, unknown CA)."""


class ProxyError(ConnectError):
    """The proxy refused the connection or failed to relay it; the message names the step
    (connecting to the proxy, its TLS, authentication, the tunnel or SOCKS request).

    ``status`` is the proxy's HTTP status when it answered ``CONNECT`` with a refusal,
    ``realm`` the realm of its ``407`` challenge.
    """

    status: int | None = None
    realm: str | None = None

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        realm: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, method=method, url=url)
        self.status = status
        self.realm = realm


class WorkerCrashed(TransportError):
    """The local engine's worker process died while running the request, on every try."""


class ProcessError(AioductError):
    """A bulk engine's ``process=`` function failed: it could not be imported (raised by
    ``map()`` before any job runs), or it raised or returned something msgpack cannot
    encode (then its job's Result carries ``JobError("ProcessError", ...)``)."""


class ReadError(TransportError):
    """The connection failed while the response was being received."""


class WriteError(TransportError):
    """The connection failed while the request was being sent."""


class ProtocolError(TransportError):
    """One side broke HTTP's framing rules; the connection is discarded."""


class RemoteProtocolError(ProtocolError):
    """The server sent bytes that are not valid HTTP (or exceed configured limits)."""


class LocalProtocolError(ProtocolError):
    """The request could not be serialised as valid HTTP (e.g. CR/LF in a header value)."""


class TimeoutError(AioductError, builtins.TimeoutError):
    """A deadline passed. Catching the builtin ``TimeoutError`` catches this too."""


class ConnectTimeout(TimeoutError):
    """Connecting (TCP plus TLS handshake) took longer than ``connect_timeout``."""


class ReadTimeout(TimeoutError):
    """The server sent nothing for ``read_timeout`` seconds."""


class WriteTimeout(TimeoutError):
    """The request could not be written within ``write_timeout``."""


class PoolTimeout(TimeoutError):
    """No pooled connection became free within ``pool_timeout``."""


class TotalTimeout(TimeoutError):
    """The whole request took longer than ``timeout``."""


class RedirectError(AioductError):
    """A redirect response could not be followed (bad Location, unsupported scheme)."""


class TooManyRedirects(RedirectError):
    """The redirect chain was longer than ``max_redirects``.

    ``history`` holds the responses of the chain, oldest first.
    """

    def __init__(self, message: str, *, history: list[Response], **kw: Any):
        super().__init__(message, **kw)
        self.history = history


class AuthError(AioductError):
    """An authentication exchange (a Digest challenge) could not be completed, e.g.
    because the request body was a one-shot stream that cannot be sent again."""


class StatusError(AioductError):
    """Raised by ``Response.raise_for_status()`` for a 4xx or 5xx response."""

    def __init__(self, message: str, *, response: Response, **kw: Any):
        super().__init__(message, **kw)
        self.response = response

    @property
    def status(self) -> int:
        return self.response.status


class DecodeError(AioductError):
    """A body could not be decoded: bad charset, invalid JSON, corrupt compression."""


class BodyTooLarge(AioductError):
    """A body exceeded the configured size limit."""


class ClientClosed(AioductError):
    """The client (or its pool) was used after it was closed."""


class EngineUnavailable(AioductError, RuntimeError):
    """The engine asked for cannot run on this machine; the message says why."""
