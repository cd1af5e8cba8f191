"""aioduct: a fast HTTP client driving sans-I/O protocol engines on asyncio and io_uring.

>>> import aioduct
>>> async def main():
...     async with aioduct.Client(timeout=30) as client:
...         response = await client.get("https://example.org/")
...         return response.status, response.text
"""

from __future__ import annotations

__version__ = "0.1.0"

import typing as _typing

from .auth import BasicAuth, BearerAuth
from .client import BlockingClient, Client, run
from .config import CacheConfig, ClientConfig, Http2Config, Http3Config, Timeout
from .cookies import Cookie, CookieJar
from .digest import DigestAuth
from .dns import DoHResolver, DoTResolver, Resolver, SystemResolver
from .download import Download
from .errors import (
    AioductError,
    AuthError,
    BodyTooLarge,
    ClientClosed,
    ConnectError,
    ConnectTimeout,
    DecodeError,
    DownloadError,
    EngineUnavailable,
    InvalidURL,
    LocalProtocolError,
    PoolTimeout,
    ProcessError,
    ProtocolError,
    ProxyError,
    ReadError,
    ReadTimeout,
    RedirectError,
    RemoteProtocolError,
    StatusError,
    TimeoutError,
    TLSError,
    TooManyRedirects,
    TotalTimeout,
    TransportError,
    WebSocketClosed,
    WebSocketError,
    WebSocketHandshakeError,
    WorkerCrashed,
    WriteError,
    WriteTimeout,
)
from .headers import Headers
from .hsts import HSTSStore
from .jobs import Job, JobError, Result
from .layers import Layer
from .limits import RateLimit
from .local import EngineStats, LocalEngine
from .models import Request, Response, Timings
from .oneshot import delete, get, head, options, patch, post, put, request
from .redirects import RedirectPolicy, same_origin_only
from .retries import RetryConfig
from .runner import SendEngine
from .upgrade import Upgraded
from .url import URL

if _typing.TYPE_CHECKING:
    from .cache import Cache
    from .forwarded import format_forwarded, parse_forwarded
    from .multipart import Multipart
    from .problem import Problem
    from .sse import EventSource, ServerSentEvent, SSEError
    from .websocket import BlockingWebSocket, WebSocket

#: Exports imported on first use: programs that never touch them do not load their
#: modules (every module's objects make each garbage collection pass longer).
_LAZY = {
    "Cache": "cache",
    "EventSource": "sse",
    "Multipart": "multipart",
    "Problem": "problem",
    "SSEError": "sse",
    "ServerSentEvent": "sse",
    "WebSocket": "websocket",  # wsproto costs ~30 ms to import
    "BlockingWebSocket": "websocket",
    "format_forwarded": "forwarded",
    "parse_forwarded": "forwarded",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aioduct' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "URL",
    "AioductError",
    "AuthError",
    "BasicAuth",
    "BearerAuth",
    "BlockingClient",
    "BlockingWebSocket",
    "BodyTooLarge",
    "Cache",
    "CacheConfig",
    "Client",
    "ClientClosed",
    "ClientConfig",
    "ConnectError",
    "ConnectTimeout",
    "Cookie",
    "CookieJar",
    "DecodeError",
    "DigestAuth",
    "DoHResolver",
    "DoTResolver",
    "Download",
    "DownloadError",
    "EngineStats",
    "EngineUnavailable",
    "EventSource",
    "HSTSStore",
    "Headers",
    "Http2Config",
    "Http3Config",
    "InvalidURL",
    "Job",
    "JobError",
    "Layer",
    "LocalEngine",
    "LocalProtocolError",
    "Multipart",
    "PoolTimeout",
    "Problem",
    "ProcessError",
    "ProtocolError",
    "ProxyError",
    "RateLimit",
    "ReadError",
    "ReadTimeout",
    "RedirectError",
    "RedirectPolicy",
    "RemoteProtocolError",
    "Request",
    "Resolver",
    "Response",
    "Result",
    "RetryConfig",
    "SSEError",
    "SendEngine",
    "ServerSentEvent",
    "StatusError",
    "SystemResolver",
    "TLSError",
    "Timeout",
    "TimeoutError",
    "Timings",
    "TooManyRedirects",
    "TotalTimeout",
    "TransportError",
    "Upgraded",
    "WebSocket",
    "WebSocketClosed",
    "WebSocketError",
    "WebSocketHandshakeError",
    "WorkerCrashed",
    "WriteError",
    "WriteTimeout",
    "__version__",
    "delete",
    "format_forwarded",
    "get",
    "head",
    "options",
    "parse_forwarded",
    "patch",
    "post",
    "put",
    "request",
    "run",
    "same_origin_only",
]
