"""Run an ASGI application under hypercorn on loopback, on a thread of its own.

Why hypercorn: it is a real, independent server that speaks WebSockets over HTTP/1.1
*and* over HTTP/2 extended CONNECT (RFC 8441; it sends SETTINGS_ENABLE_CONNECT_PROTOCOL),
and h2c with prior knowledge -- the WebSocket client and the forwarding app are proven
against it rather than against code written alongside them.

Example::

    with ASGIServer(app) as srv:             # srv.url == "http://127.0.0.1:PORT"
        ...
    with ASGIServer(app, tls=tls_material) as srv:   # https://localhost:PORT, ALPN h2
        ...

The server runs its own asyncio loop on a daemon thread, so async and blocking tests can
both use it; leaving the block shuts it down.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .nginx import TLSMaterial

__all__ = ["ASGIApp", "ASGIServer", "echo_websocket_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ASGIServer:
    """hypercorn serving ``app`` on 127.0.0.1 (plain: h1 and h2c; ``tls``: ALPN h2/h1)."""

    def __init__(self, app: ASGIApp, *, tls: TLSMaterial | None = None, **config: Any) -> None:
        self.app = app
        self.tls = tls
        self.config = config
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1)

    def start(self) -> ASGIServer:
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"fd://{self._sock.fileno()}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.5
        if self.tls is not None:
            config.certfile = str(self.tls.files.cert_chain_pem)
            config.keyfile = str(self.tls.files.key_pem)
        for name, value in self.config.items():
            setattr(config, name, value)

        def run() -> None:
            from hypercorn.asyncio import serve

            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stop = asyncio.Event()
            loop.call_soon(self._ready.set)
            try:
                loop.run_until_complete(
                    serve(self.app, config, shutdown_trigger=self._stop.wait, mode="asgi")  # type: ignore[arg-type]
                )
            except BaseException as exc:  # reported by close()
                self._error = exc
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="asgi-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
            self._sock.detach()  # hypercorn owned (and closed) the listening descriptor
        else:
            self._sock.close()

    def __enter__(self) -> ASGIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def echo_websocket_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A WebSocket echo (text stays text, bytes stay bytes) at every path.

    ``/close/CODE`` closes with CODE right after accepting; an offered subprotocol is
    accepted when its name starts with ``echo``; plain HTTP requests get ``200 ok``.
    """
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    message = await receive()
    assert message["type"] == "websocket.connect"
    chosen = next((p for p in scope.get("subprotocols", []) if p.startswith("echo")), None)
    await send({"type": "websocket.accept", "subprotocol": chosen})
    path: str = scope["path"]
    if path.startswith("/close/"):
        await send({"type": "websocket.close", "code": int(path[7:]), "reason": "bye"})
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            text = message["text"]
            if text == "close-me":
                await send({"type": "websocket.close", "code": 1000, "reason": "asked to"})
                return
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
