"""Layers: the policies between a client and the wire, each wrapping one send.

A layer is any object with ``async def __call__(self, request, call_next) -> Response``:
it may change the request, answer it itself (a cache hit), send it more than once (a
retry, a Digest challenge) or look at the response on its way back. The engine runs the
layers of its client in order, outermost first, around each hop of the redirect loop::

    redirect loop (engine.py)
      └─ hop: layer[0] → layer[1] → … → transport (pool, connection, codec)

so every layer sees each redirect hop, and each attempt of a retry below it, as a
separate send. Decompression is not a layer: it applies once, to the final response.

Because the pipeline is ``async`` code that only awaits the runtime, a layer runs
unchanged on every driver: the caller's asyncio loop, a local-engine worker's io_uring
loop, and :class:`~aioduct.BlockingClient`'s loop-less driver (where an await that has
to wait blocks the thread instead). A layer must therefore not create tasks or call
asyncio directly; it sleeps and reads the clock through the :class:`Hop` that
``call_next.hop`` carries.

Layers are built once per client by :func:`build_layers` (the order is decided there,
in one place) and shared by its engines: the per-thread engines of a BlockingClient
share the same cookie jar, HSTS store and cache. A client with no layer pays nothing;
one with layers pays one small object per layer and hop.

A layer that only changes what one hop puts on the wire and looks at the response
(the cookie jar) may also offer two plain methods, :class:`HopHooks`:
``prepare(request) -> request`` (what this hop sends; the redirect loop goes on from
the request it was given) and ``observe(sent, response)``. When *every* layer of a
client offers them, the engine calls them inline, without a coroutine and a ``Link``
per layer and hop -- on CPython 3.11 that chain costs ~10k instructions a request,
several times what a layer with nothing to do costs itself. ``__call__`` must do the
same, for chains that mix such layers with others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .config import ClientConfig
    from .models import Request, Response
    from .runtimes import Runtime
    from .timeouts import Deadlines

__all__ = [
    "Hop",
    "HopHooks",
    "Layer",
    "Layers",
    "Link",
    "Next",
    "build_layers",
    "close_layers",
    "inline_hooks",
    "new_hop",
    "run_layers",
]

Next = Callable[["Request"], Awaitable["Response"]]
"""Sends a request through the rest of the chain and returns its response."""


@runtime_checkable
class Layer(Protocol):
    """One policy around a send (see the module docstring).

    Usually an ``async def``; a plain ``def`` that returns ``call_next(request)`` (or
    another awaitable) is one too, and costs no coroutine when it has nothing to do.
    """

    def __call__(self, request: Request, call_next: Next) -> Awaitable[Response]: ...


@runtime_checkable
class HopHooks(Protocol):
    """The inline form of a layer that only prepares sends and observes responses."""

    def prepare(self, request: Request) -> Request:
        """The request this hop sends (``request`` itself when nothing changes)."""
        ...

    def observe(self, sent: Request, response: Response) -> None:
        """Look at the response to ``sent`` (the request as this hop sent it)."""
        ...


Prepares = tuple[Callable[["Request"], "Request"], ...]
Observes = tuple[Callable[["Request", "Response"], None], ...]


def inline_hooks(layers: Sequence[Layer]) -> tuple[Prepares, Observes] | None:
    """``(prepare methods outermost first, observe methods innermost first)`` when every
    layer offers :class:`HopHooks`, else None (the engine then runs the chain)."""
    if not layers or not all(isinstance(layer, HopHooks) for layer in layers):
        return None
    hooks: list[HopHooks] = list(layers)  # type: ignore[arg-type]
    return (
        tuple(layer.prepare for layer in hooks),
        tuple(layer.observe for layer in reversed(hooks)),
    )


class Hop:
    """What the layers of one hop share with the transport: the request's deadlines,
    whether its body is streamed, and the runtime to sleep on and read the time from."""

    __slots__ = ("deadlines", "runtime", "stream")

    def __init__(self, runtime: Runtime, deadlines: Deadlines, stream: bool) -> None:
        self.runtime = runtime
        self.deadlines = deadlines
        self.stream = stream


class Link:
    """The ``call_next`` a layer receives: runs the next layer, or the transport.

    Built-in layers read :attr:`hop` from it (to sleep, or to know whether the body
    is streamed); user middleware just calls it.
    """

    __slots__ = ("_index", "_layers", "_transport", "hop")

    def __init__(self, layers: Sequence[Layer], index: int, transport: Next, hop: Hop) -> None:
        self._layers = layers
        self._index = index
        self._transport = transport
        self.hop = hop

    def __call__(self, request: Request) -> Awaitable[Response]:
        index = self._index
        layers = self._layers
        if index == len(layers):
            return self._transport(request)
        return layers[index](request, _link(layers, index + 1, self._transport, self.hop))


# Every hop of a client with layers makes a Hop and a Link per layer: made without
# calling the class (type call + __init__ frame cost three times as much on CPython 3.11).
_new = object.__new__


def _link(layers: Sequence[Layer], index: int, transport: Next, hop: Hop) -> Link:
    link: Link = _new(Link)
    link._layers = layers
    link._index = index
    link._transport = transport
    link.hop = hop
    return link


def new_hop(runtime: Runtime, deadlines: Deadlines, stream: bool) -> Hop:
    """A :class:`Hop`, made the cheap way (the engine makes one per hop)."""
    hop: Hop = _new(Hop)
    hop.runtime = runtime
    hop.deadlines = deadlines
    hop.stream = stream
    return hop


def run_layers(
    layers: Sequence[Layer], request: Request, transport: Next, hop: Hop
) -> Awaitable[Response]:
    """Send ``request`` through ``layers`` (outermost first), ending at ``transport``."""
    if not layers:
        return transport(request)
    return layers[0](request, _link(layers, 1, transport, hop))


def build_layers(config: ClientConfig, **objects: Any) -> tuple[Layer, ...]:
    """The layers a client with ``config`` runs, outermost first.

    ``objects`` are the code objects given to the client beside its data config
    (middleware, a shared cookie jar, ...). The order, and why:

    1. HSTS: upgrade ``http://`` before anyone sees the request.
    2. retries: each attempt goes through everything below it.
    3. middleware (the user's), then event hooks: see each hop and attempt as a
       separate send.
    4. cache: may answer without the network; a revalidation goes on below.
    5. cookies: attach the jar's cookies, store what the response sets.
    6. authentication (Digest, netrc): answer challenges on the same origin.
    7. rate limit: every send that will reach the network waits for its token.
    8. Alt-Svc (``http3=True``): learn HTTP/3 alternatives from https responses.
    9. bandwidth: paces the reading of each body (innermost: it wraps the body reader
       the transport returns).

    A layer exists only when configured: the default client has HSTS (``hsts=True``)
    and the cookie jar (``cookies=True``), both of which the engine runs inline
    (:class:`HopHooks`), as it does the netrc auth layer.
    """
    head: list[Layer] = []
    if config.hsts:  # on by default (the one layer the default client has)
        from .hsts import HSTSLayer, store_for

        head.append(HSTSLayer(store_for(config), learn=config.verify_certificates))
    if config.retry is not None:
        from .retries import RetryLayer

        head.append(RetryLayer(config.retry))
    middleware = objects.get("middleware")
    if middleware is None and config.middleware:
        middleware = config.middleware
    if middleware:
        from .middleware import resolve_middleware

        head.extend(resolve_middleware(middleware))
    hooks = objects.get("event_hooks")
    if hooks:
        from .middleware import EventHooks

        event_hooks = EventHooks(hooks)
        if event_hooks:
            head.append(event_hooks)
    if config.cache is not None:  # 4. the HTTP cache
        from .cache import Cache, CacheLayer

        cache = objects.get("cache")
        head.append(CacheLayer(cache if cache is not None else Cache.from_config(config.cache)))
    jar = objects.get("cookies")
    if jar is not None or config.cookies:
        from .cookies import CookieJar, CookieLayer

        head.append(CookieLayer(jar if jar is not None else CookieJar()))
    from .netrc import load_netrc

    netrc = load_netrc() if config.trust_env else None
    if netrc is not None:
        from .auth import AuthLayer

        head.append(AuthLayer(netrc))
    auth_index = len(head)  # where a request's own challenge auth goes (with_request_auth)
    tail: list[Layer] = []
    if config.rate_limit is not None:
        from .limits import RateLimitLayer

        tail.append(RateLimitLayer(config.rate_limit))
    if config.http3:
        from .altsvc import AltSvcCache, AltSvcLayer

        tail.append(AltSvcLayer(AltSvcCache(config.alt_svc_file)))
    if config.max_download_speed is not None:
        from .limits import BandwidthLayer

        tail.append(BandwidthLayer(config.max_download_speed))
    return Layers((*head, *tail), auth_index)


class Layers(tuple["Layer", ...]):
    """A client's layers, and the place among them of authentication (6. above), where
    :func:`~aioduct.auth.with_request_auth` puts a request's own Digest auth."""

    auth_index: int

    def __new__(cls, layers: Sequence[Layer], auth_index: int) -> Layers:
        self = super().__new__(cls, layers)
        self.auth_index = auth_index
        return self


def close_layers(layers: Sequence[object]) -> None:
    """Let the layers that keep state on disk (the HSTS file) save it: the client closes."""
    for layer in layers:
        close = getattr(layer, "close", None)
        if close is not None:
            close()
