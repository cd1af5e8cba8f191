"""User middleware and event hooks: the client's own layers, given by the user.

A middleware is exactly a :class:`~aioduct.layers.Layer`: an object (or an ``async
def`` function) called as ``await middleware(request, call_next)`` that returns a
:class:`~aioduct.Response`. ``Client(middleware=[a, b])`` runs ``a`` outermost; each
sees every redirect hop and every retry attempt as a separate send, because the engine
runs the layers around each hop and retries sit outside them.

``event_hooks={"request": [...], "response": [...]}`` (httpx's spelling) is one more
layer: each hook is called with the request before it is sent, or the response once it
arrived, and may be a plain function or a coroutine function. A hook that raises
aborts the request with its exception (a response is released first).

Middleware is code, and local-engine workers are separate processes that receive the
client's configuration as data, so there middleware is given as
``"package.module:name"`` strings (:attr:`ClientConfig.middleware
<aioduct.ClientConfig.middleware>`) that each worker imports: ``name`` is a layer
object, an ``async def`` function, or a class called without arguments to make one.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .layers import Layer, Next
    from .models import Request, Response

__all__ = ["EventHooks", "check_event_hooks", "load_middleware", "split_middleware"]

Hook = Callable[[Any], Any]
_HOOK_KINDS = ("request", "response")


def load_middleware(spec: str) -> Layer:
    """Import the middleware named by ``"package.module:name"`` (see the module)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(
            f"middleware {spec!r} is not an import string: write 'package.module:name', "
            f"naming a layer object, an async function or a class in an importable module"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ImportError(
            f"cannot import middleware {spec!r}: importing {module_name!r} failed with "
            f"{type(exc).__name__}: {exc}. Is the module on sys.path of every process "
            f"(local-engine workers import it too)?"
        ) from exc
    found: Any = module
    try:
        for part in attribute.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise ImportError(
            f"cannot import middleware {spec!r}: module {module_name!r} has no {attribute!r}"
        ) from None
    if inspect.isclass(found):
        try:
            found = found()
        except Exception as exc:
            raise TypeError(
                f"middleware {spec!r} is a class, and calling it without arguments failed "
                f"({type(exc).__name__}: {exc}); name an instance instead"
            ) from exc
    if not callable(found):
        raise TypeError(
            f"middleware {spec!r} is a {type(found).__name__}, not a layer: it needs "
            f"'async def __call__(self, request, call_next)'"
        )
    layer: Layer = found
    return layer


def split_middleware(middleware: Iterable[object] | None) -> tuple[tuple[str, ...], bool]:
    """The import strings among ``middleware``, and whether it holds objects too."""
    if middleware is None:
        return (), False
    if isinstance(middleware, str) or not isinstance(middleware, Iterable):
        raise TypeError(
            f"middleware= takes a list of layers (or 'package.module:name' strings), "
            f"not {type(middleware).__name__}"
        )
    strings: list[str] = []
    objects = False
    for item in middleware:
        if isinstance(item, str):
            strings.append(item)
        elif callable(item):
            objects = True
        else:
            raise TypeError(
                f"middleware {item!r} is not a layer: it needs "
                f"'async def __call__(self, request, call_next)' (or pass an import string)"
            )
    return tuple(strings), objects


def resolve_middleware(middleware: Sequence[object]) -> tuple[Layer, ...]:
    """Layers from a ``middleware=`` list: objects as they are, strings imported."""
    return tuple(load_middleware(m) if isinstance(m, str) else m for m in middleware)  # type: ignore[misc]


def check_event_hooks(hooks: Mapping[str, Iterable[Hook]]) -> dict[str, tuple[Hook, ...]]:
    """``event_hooks=`` checked: only "request" and "response", each a list of callables."""
    if not isinstance(hooks, Mapping):
        raise TypeError(
            "event_hooks= takes a dict like {'request': [f], 'response': [g]}, "
            f"not {type(hooks).__name__}"
        )
    checked: dict[str, tuple[Hook, ...]] = {}
    for kind, functions in hooks.items():
        if kind not in _HOOK_KINDS:
            raise ValueError(
                f"event_hooks has no {kind!r} event: the events are 'request' and 'response'"
            )
        if callable(functions):
            raise TypeError(f"event_hooks[{kind!r}] must be a list of callables, not one callable")
        listed = tuple(functions)
        for function in listed:
            if not callable(function):
                raise TypeError(f"event_hooks[{kind!r}] holds {function!r}, which is not callable")
        checked[kind] = listed
    return checked


class EventHooks:
    """Calls the request hooks before each send and the response hooks after it."""

    __slots__ = ("request_hooks", "response_hooks")

    def __init__(self, hooks: Mapping[str, Iterable[Hook]]) -> None:
        checked = check_event_hooks(hooks)
        self.request_hooks = checked.get("request", ())
        self.response_hooks = checked.get("response", ())

    async def __call__(self, request: Request, call_next: Next) -> Response:
        for hook in self.request_hooks:
            outcome = hook(request)
            if inspect.isawaitable(outcome):
                await outcome
        response = await call_next(request)
        try:
            for hook in self.response_hooks:
                outcome = hook(response)
                if inspect.isawaitable(outcome):
                    await outcome
        except BaseException:
            await response.aclose()
            raise
        return response

    def __bool__(self) -> bool:
        return bool(self.request_hooks or self.response_hooks)
