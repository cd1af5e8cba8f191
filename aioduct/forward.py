"""Request forwarding: an ASGI application that reverse-proxies every request upstream.

::

    from aioduct.forward import asgi_app

    app = asgi_app(upstream="http://127.0.0.1:8080")   # serve it: hypercorn module:app

Each request goes to ``upstream`` + its path and query, and the answer comes back:

* **Streaming both ways.** The request body flows from the ASGI server into the upstream
  request as it arrives (an async iterator); the response body flows back chunk by chunk,
  as received (``aiter_raw``: a gzip body stays gzip, with its headers). Neither is held
  whole in memory.
* **Hop-by-hop headers** (RFC 9110 §7.6.1) are dropped both ways: ``Connection`` and
  every header any ``Connection`` field names (repeated fields too), ``Keep-Alive``,
  ``Proxy-Connection``, ``Proxy-Authenticate``, ``Proxy-Authorization``, ``TE``,
  ``Trailer``, ``Transfer-Encoding``, ``Upgrade``: nothing meant for one connection (a
  proxy credential, a framing header) is smuggled to the other side.
* **Forwarded** (RFC 7239) ``for=``/``proto=``/``host=`` and ``X-Forwarded-For``,
  ``-Proto``, ``-Host`` describe the request *as this proxy received it*. Values the
  client sent are dropped (they are whatever the client claims: spoofing), unless
  ``trust_forwarded=True`` says a trusted proxy stands in front of this one: then this
  proxy appends its element to theirs.
* **Upstream failures** answer ``502 Bad Gateway`` (connect, protocol, read errors) or
  ``504 Gateway Timeout`` (a deadline) with an RFC 9457 Problem Details body
  (``application/problem+json``); the detail names the failure, never the upstream's
  address. A failure after the response started cannot change its status: the
  connection to the client is broken off instead, so a cut body never looks complete.
* Redirects are passed back, not followed; nothing is decompressed; the client adds no
  default headers and keeps no cookie jar (``Cookie`` and ``Set-Cookie`` pass through:
  a shared jar would give one user's cookies to the next).

``h2c=True`` speaks HTTP/2 with prior knowledge to a cleartext upstream (gRPC and
friends). ``client=`` supplies a configured :class:`~aioduct.Client` (its layers,
timeouts and TLS settings apply; redirects are never followed); by default the app makes
its own on first use (on the server's loop) and closes it at lifespan shutdown.
WebSocket requests are relayed: a WebSocket is opened upstream (HTTP/1.1 Upgrade, or
extended CONNECT over HTTP/2) and messages are copied both ways until one side closes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .errors import AioductError, InvalidURL, TimeoutError
from .forwarded import format_forwarded
from .headers import Headers
from .models import Request
from .url import URL

if TYPE_CHECKING:
    from .client import Client

__all__ = ["HOP_BY_HOP", "ForwardApp", "asgi_app", "forwarded_element"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
HOP_BY_HOP: Final = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)
_FORWARDING: Final = frozenset(
    ("forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")
)
_log = logging.getLogger("aioduct.forward")


def forwarded_element(for_: str | None, proto: str, host: str | None) -> str:
    """One ``Forwarded`` element: ``for=...;proto=...;host=...`` (RFC 7239 §4), written
    by :func:`aioduct.format_forwarded` (IPv6 bracketed and quoted, ``unknown`` for an
    unknown client, non-tokens quoted)."""
    return format_forwarded(for_=for_ or "unknown", proto=proto, host=host or None)


def _connection_names(headers: list[tuple[str, str]]) -> set[str]:
    """The headers named by every ``Connection`` field (repeated fields included)."""
    return {
        token.strip().lower()
        for name, value in headers
        if name == "connection"
        for token in value.split(",")
        if token.strip()
    }


def _end_to_end(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without hop-by-hop fields and those named in ``Connection``."""
    named = _connection_names(headers)
    return [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in named]


def _problem(status: int, title: str, detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = msgspec.json.encode(
        {"type": "about:blank", "title": title, "status": status, "detail": detail}
    )
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    return headers, body


class _ClientGone(Exception):
    """The downstream client disconnected while its body was being forwarded."""


class ForwardApp:
    """The ASGI application :func:`asgi_app` returns."""

    def __init__(
        self,
        upstream: str,
        *,
        client: Client | None = None,
        h2c: bool = False,
        trust_forwarded: bool = False,
        preserve_host: bool = False,
        **client_options: Any,
    ) -> None:
        base = URL(upstream)
        if base.scheme not in ("http", "https"):
            raise InvalidURL(f"upstream must be an http:// or https:// URL, not {upstream!r}")
        if base.query:
            raise InvalidURL(f"upstream must not have a query string: {upstream!r}")
        if h2c and base.scheme != "http":
            raise ValueError("h2c=True is HTTP/2 over cleartext: it needs an http:// upstream")
        if client is not None and client_options:
            raise TypeError("pass client options or client=, not both")
        self.upstream = base
        self._prefix = str(base).rstrip("/")  # + the request's own path, from its "/"
        self._client = client
        self._own = client is None
        self._options = {
            "follow_redirects": False,
            "decompress": False,
            "default_headers": False,
            # One client serves every downstream user: a jar would hand one user's
            # cookies to the next. Cookie headers pass through untouched instead.
            "cookies": False,
            **client_options,
        }
        if h2c:  # a WebSocket opened upstream takes the same road as requests
            self._options.setdefault("http2_prior_knowledge", True)
        self.h2c = h2c
        self.trust_forwarded = trust_forwarded
        self.preserve_host = preserve_host

    def _get_client(self) -> Client:
        if self._client is None:
            from .client import Client

            self._client = Client(**self._options)
        return self._client

    async def aclose(self) -> None:
        """Close the client this app made (a client passed in stays open)."""
        if self._own and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- one request -----------------------------------------------------------------------

    def _upstream(self, scope: Scope) -> tuple[URL, list[tuple[str, str]], list[tuple[str, str]]]:
        """The upstream URL, the headers to send there, and the incoming ones."""
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        target = self._prefix + raw_path.decode("latin-1")
        query = scope.get("query_string") or b""
        if query:
            target += "?" + query.decode("latin-1")
        incoming = [
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in scope["headers"]
        ]
        host = next((v for n, v in incoming if n == "host"), None)
        kept = _end_to_end(incoming)
        url = URL(target)
        pairs: list[tuple[str, str]] = [
            ("Host", host if self.preserve_host and host else url.host_header)
        ]
        previous_forwarded: list[str] = []
        previous_for: list[str] = []
        for name, value in kept:
            if name == "host":
                continue
            if name in _FORWARDING:
                if self.trust_forwarded:
                    if name == "forwarded":
                        previous_forwarded.append(value)
                    elif name == "x-forwarded-for":
                        previous_for.append(value)
                continue
            pairs.append((name, value))
        client_addr = scope.get("client")
        peer = client_addr[0] if client_addr else None
        scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), "http")
        if scope.get("scheme") in ("http", "https"):
            scheme = scope["scheme"]
        element = forwarded_element(peer, scheme, host)
        pairs.append(("Forwarded", ", ".join([*previous_forwarded, element])))
        pairs.append(("X-Forwarded-For", ", ".join([*previous_for, peer or "unknown"])))
        pairs.append(("X-Forwarded-Proto", scheme))
        if host:
            pairs.append(("X-Forwarded-Host", host))
        return url, pairs, incoming

    def _request(self, scope: Scope, receive: Receive) -> Request:
        url, pairs, incoming = self._upstream(scope)
        has_body = any(n in ("content-length", "transfer-encoding") for n, _ in incoming)
        if any(n == "content-length" and v.strip() == "0" for n, v in incoming):
            has_body = False
        body = _body(receive) if has_body else None
        return Request(
            scope["method"],
            url,
            headers=Headers(pairs),
            stream=body,
            version="2" if self.h2c else None,
        )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            request = self._request(scope, receive)
        except (AioductError, ValueError) as exc:
            await _answer(send, 400, "Bad Request", f"the request cannot be forwarded: {exc}")
            return
        client = self._get_client()
        try:
            response = await client._engine.send(request, stream=True, follow_redirects=False)
        except _ClientGone:
            return
        except TimeoutError as exc:
            await _answer(
                send,
                504,
                "Gateway Timeout",
                f"the upstream server did not answer in time ({type(exc).__name__})",
            )
            return
        except AioductError as exc:
            await _answer(
                send,
                502,
                "Bad Gateway",
                "the upstream server could not be reached or answered invalidly "
                f"({type(exc).__name__})",
            )
            return
        try:
            headers = [
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in _end_to_end(
                    [(n.lower(), v) for n, v in response.headers.multi_items()]
                )
            ]
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except AioductError as exc:
            # Too late for a 502: break the downstream connection so the cut is visible.
            _log.warning("upstream failed mid-response for %s: %s", scope.get("path"), exc)
            raise
        finally:
            await response.aclose()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Relay a WebSocket: open one upstream (same path, subprotocols and end-to-end
        headers), accept the client's with the upstream's subprotocol, then copy
        messages both ways until either side closes (its close code is passed on)."""
        import asyncio

        from .websocket import connect

        message = await receive()
        if message["type"] != "websocket.connect":
            return
        try:
            url, pairs, _ = self._upstream(scope)
            skip = {"host", "sec-websocket-key", "sec-websocket-version"}
            skip |= {"sec-websocket-extensions", "sec-websocket-protocol"}
            headers = [(n, v) for n, v in pairs if n.lower() not in skip]
            client = self._get_client()
            upstream = await connect(
                client,
                client._engine,
                url,
                subprotocols=list(scope.get("subprotocols") or ()),
                headers=headers,
            )
        except (AioductError, ValueError) as exc:
            _log.warning("upstream WebSocket for %s failed: %s", scope.get("path"), exc)
            await send({"type": "websocket.close", "code": 1011})  # before accept: a 403
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

        async def downstream_to_upstream() -> None:
            while True:
                event = await receive()
                if event["type"] == "websocket.disconnect":
                    code = int(event.get("code") or 1000)
                    await upstream.close(code if code not in (1005, 1006) else 1000)
                    return
                if event.get("text") is not None:
                    await upstream.send_text(event["text"])
                elif event.get("bytes") is not None:
                    await upstream.send_bytes(event["bytes"])

        async def upstream_to_downstream() -> None:
            try:
                async for data in upstream:
                    if isinstance(data, str):
                        await send({"type": "websocket.send", "text": data})
                    else:
                        await send({"type": "websocket.send", "bytes": data})
            except AioductError:
                pass
            code = upstream.close_code or 1000
            await send(
                {
                    "type": "websocket.close",
                    "code": 1011 if code == 1006 else code,
                    "reason": upstream.close_reason or "",
                }
            )

        tasks = [
            asyncio.ensure_future(downstream_to_upstream()),
            asyncio.ensure_future(upstream_to_downstream()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not upstream.closed:
                with contextlib.suppress(AioductError):
                    await upstream.close()


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    """The downstream request body, as the ASGI server hands it over."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _answer(send: Send, status: int, title: str, detail: str) -> None:
    headers, body = _problem(status, title, detail)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def asgi_app(
    upstream: str,
    *,
    client: Client | None = None,
    h2c: bool = False,
    trust_forwarded: bool = False,
    preserve_host: bool = False,
    **client_options: Any,
) -> ForwardApp:
    """An ASGI app reverse-proxying every request to ``upstream`` (module docstring).

    ``client_options`` configure the client the app makes (``read_timeout=``,
    ``verify=``, ...) when no ``client`` is given. ``preserve_host`` sends the
    downstream ``Host`` upstream instead of the upstream's own.
    """
    return ForwardApp(
        upstream,
        client=client,
        h2c=h2c,
        trust_forwarded=trust_forwarded,
        preserve_host=preserve_host,
        **client_options,
    )
