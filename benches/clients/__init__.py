"""Client adapters, one module per library, imported only inside that client's subprocess.

This registry names them without importing them, so the runner process never loads a client
library and no two clients ever share an interpreter.

An adapter module provides exactly one of:

- ``open_async(target) -> AsyncContextManager[AsyncFetch]``: one client shared by
  ``target.concurrency`` asyncio tasks, on the event loop named by ``ClientInfo.loop``;
- ``open_sync(target) -> ContextManager[SyncFetch]``: one session per thread, with
  ``target.concurrency`` threads (a ThreadPool, as sync libraries are used concurrently);

- ``bulk_loop(target, workers) -> ThreadLoop``: one thread feeds a bulk engine (the local
  engine's ``map()``), which keeps ``target.concurrency`` requests in flight itself, on
  ``workers`` processes (``None``: one per CPU the client may use);

and optionally ``multi_loop(target) -> ThreadLoop`` (replaces the N threads by one
event-driven loop, e.g. libcurl's multi interface), ``unsupported(target) -> str | None`` (a
reason printed as ``n/a``) and ``describe() -> str`` (extra version detail for the JSON).
A fetch performs one complete request, reads the whole body and returns ``(status, payload)``
where payload is the body (bytes-like), the decoded text, or the decoded JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from benches.scenarios import Target


@dataclass(frozen=True)
class ClientInfo:
    """How to run one client: its adapter module, event loop (None = threads) and setup."""

    name: str
    module: str
    dist: str
    loop: Literal["asyncio", "uvloop"] | None
    config: str
    workers: int | None = None
    """For bulk engines: worker processes (None: one per CPU the client subprocess gets)."""
    cpus: Literal["one", "free"] = "one"
    """The client subprocess's CPUs when pinning: one, or every CPU but nginx's."""


CLIENTS: dict[str, ClientInfo] = {
    c.name: c
    for c in (
        ClientInfo(
            "aioduct-uvloop",
            "benches.clients.aioduct_client",
            "aioduct",
            "uvloop",
            "aioduct.Client() on uvloop; no_pool: Client(pool_max_idle_per_host=0)",
        ),
        ClientInfo(
            "aioduct-asyncio",
            "benches.clients.aioduct_client",
            "aioduct",
            "asyncio",
            "aioduct.Client() on the stock asyncio loop; no_pool as above",
        ),
        ClientInfo(
            "aioduct-blocking",
            "benches.clients.aioduct_blocking_client",
            "aioduct",
            None,
            "aioduct.BlockingClient() shared by the threads: the pipeline on plain sockets "
            "in each calling thread, a pool per thread",
        ),
        ClientInfo(
            "aioduct-local-1",
            "benches.clients.aioduct_local_client",
            "aioduct",
            None,
            "aioduct.LocalEngine(workers=1) on io_uring, fed by engine.map(); the scenario's "
            "concurrency is the engine's",
            workers=1,
        ),
        ClientInfo(
            "aioduct-local-N",
            "benches.clients.aioduct_local_client",
            "aioduct",
            None,
            "aioduct.LocalEngine(workers=N): N = CPUs free of nginx, concurrency split "
            "over them; jobs spread over mirror origins (other nginx ports) so each "
            "worker gets its share (the engine shards by origin)",
            cpus="free",
        ),
        ClientInfo(
            "aioduct-aioquic",
            "benches.clients.aioduct_aioquic_client",
            "aioduct",
            "uvloop",
            "aioduct-uvloop with HTTP/3 on aioquic (pure Python QUIC) instead of the default "
            "(qh3 when installed); h3_* scenarios only",
        ),
        ClientInfo(
            "aiohttp",
            "benches.clients.aiohttp_client",
            "aiohttp",
            "uvloop",
            "one ClientSession + TCPConnector on uvloop; no_pool: TCPConnector(force_close=True)",
        ),
        ClientInfo(
            "httpx",
            "benches.clients.httpx_client",
            "httpx",
            "uvloop",
            "AsyncClient (HTTP/1.1) on uvloop; no_pool: Limits(max_keepalive_connections=0)",
        ),
        ClientInfo(
            "niquests",
            "benches.clients.niquests_client",
            "niquests",
            None,
            "sync Session per thread (faster here than AsyncSession); no_pool: Connection: close; "
            "TLS h2: one h2 connection per thread's Session",
        ),
        ClientInfo(
            "niquests-async",
            "benches.clients.niquests_async_client",
            "niquests",
            "uvloop",
            "AsyncSession on uvloop (not in the default set: slower than Session here)",
        ),
        ClientInfo(
            "pycurl",
            "benches.clients.pycurl_client",
            "pycurl",
            None,
            "one reused Curl handle; concurrent: CurlMulti with N handles; "
            "no_pool: FORBID_REUSE+FRESH_CONNECT",
        ),
        ClientInfo(
            "pyreqwest",
            "benches.clients.pyreqwest_client",
            "pyreqwest",
            "uvloop",
            "async Client (reqwest/tokio, default single-thread runtime) on uvloop; "
            "no_pool: pool_max_idle_per_host(0)",
        ),
        ClientInfo(
            "requests",
            "benches.clients.requests_client",
            "requests",
            None,
            "Session per thread; no_pool: Connection: close",
        ),
    )
}

DEFAULT_CLIENTS: tuple[str, ...] = (
    "aioduct-uvloop",
    "aioduct-asyncio",
    "aioduct-blocking",
    "aioduct-local-1",
    "aioduct-local-N",
    "aiohttp",
    "httpx",
    "niquests",
    "pycurl",
    "pyreqwest",
    "requests",
)


def quic_prior_knowledge(target: Target) -> dict[tuple[str, int], tuple[str, int]] | None:
    """niquests' way to speak HTTP/3 to an origin at once: its Alt-Svc cache, pre-filled
    with the origin as its own HTTP/3 alternative (None: learn it, the default)."""
    if not target.h3:
        return None
    import urllib.parse

    parts = urllib.parse.urlsplit(target.url)
    origin = (parts.hostname or "localhost", parts.port or 443)
    return {origin: origin}


def verify_per_request(
    target: Target, *methods: Callable[..., Any]
) -> tuple[Callable[..., Any], ...]:
    """Session methods of requests and niquests, given ``verify=`` the CA file on TLS targets.

    Per request, because ``Session.verify`` loses to ``$REQUESTS_CA_BUNDLE`` and
    ``$CURL_CA_BUNDLE`` when they are set (psf/requests#3829), and they often are.
    """
    if not target.tls:
        return methods
    return tuple(functools.partial(m, verify=target.ca_file) for m in methods)
