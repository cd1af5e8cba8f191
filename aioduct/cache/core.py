"""The HTTP cache (RFC 9111): :class:`Cache`, and the layer that consults it on each hop.

``Client(cache=aioduct.Cache())`` puts a :class:`CacheLayer` in the client's pipeline
(:mod:`aioduct.layers`); without a cache there is no layer and nothing to pay. On every
hop of a ``GET`` or ``HEAD`` the layer looks up the stored variants of the URL, picks
the one whose ``Vary`` fields (and, for a private cache, Authorization) match, and then:

* fresh, and the request allows it -> answered from the store (``cache_status="hit"``);
* stale with a validator -> sent on as a conditional request; a 304 refreshes the stored
  response and it is served (``"revalidated"``), a new response replaces it (``"miss"``);
* stale within ``stale-while-revalidate`` -> served stale (``"stale"``) while a
  background task revalidates it (inline, as above, on a runtime without background
  tasks: the blocking client);
* an error (5xx or no connection) within ``stale-if-error`` -> the stale response
  (``"stale"``);
* ``only-if-cached`` and nothing usable -> a 504 made here.

Unsafe methods that succeed invalidate the target URI and the same-origin URIs of their
``Location``/``Content-Location`` (RFC 9111 §4.4). Responses are stored when complete:
a buffered response at once, a streamed one when the caller has read all of it.

Time is the wall clock (``clock``, seconds since the epoch), because ``Date``,
``Expires`` and ``Last-Modified`` are wall-clock dates and a directory store outlives
the process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..config import CacheConfig
from ..errors import AioductError
from ..headers import Headers
from ..models import BodyReader, Request, Response
from .policy import (
    HEURISTIC_STATUSES,
    MAX_DELTA,
    Directives,
    byte_range,
    current_age,
    delta_seconds,
    directives,
    etag_matches,
    freshness_lifetime,
    parse_http_date,
)
from .store import DirectoryStore, Entry, MemoryStore, Store

if TYPE_CHECKING:
    from ..layers import Next

__all__ = ["Cache", "CacheLayer"]

_log = logging.getLogger("aioduct.cache")

#: Methods that change nothing (RFC 9110 §9.2.1): they invalidate nothing.
_SAFE: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))
#: Preconditions the cache does not evaluate: such requests pass through untouched.
_PASS_THROUGH: Final = ("if-match", "if-unmodified-since", "if-range")
#: Request fields the cache answers from a fresh stored response (RFC 9111 §4.3.2), and
#: that otherwise go to the origin as the caller wrote them.
_CALLER_VALIDATES: Final = ("if-none-match", "if-modified-since", "range")
#: Fields never stored (RFC 9111 §3.1): they describe one connection, not the response.
_NOT_STORED: Final = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authentication-info",
        "proxy-authorization",
    )
)
#: Fields a 304 does not change in the stored response (RFC 9111 §3.2).
_NOT_UPDATED: Final = _NOT_STORED | {"content-length", "content-encoding", "content-range"}
#: Final statuses whose caching this cache implements (for must-understand).
_UNDERSTOOD: Final = (HEURISTIC_STATUSES - {206}) | {302, 303, 307}
#: A response varying on more request fields than this is not stored (a Vary bomb).
MAX_VARY_FIELDS: Final = 32
#: Variants kept per URL, the most recently stored first.
MAX_VARIANTS: Final = 16


class Cache:
    """An HTTP cache for a client (``Client(cache=aioduct.Cache())``).

    ``path=None`` keeps responses in memory; a directory path keeps them in files there,
    so they survive restarts. ``max_size`` bounds the bytes held, ``max_entries`` the
    URLs, ``max_entry_size`` one response (larger ones are not stored); the least
    recently used go first. ``shared=True`` applies a shared cache's rules (``s-maxage``,
    ``private`` responses not stored, RFC 9111 §3.5 for Authorization); the default is a
    private cache, which also serves a response stored for a request with credentials
    only to requests with the same credentials. ``clock`` gives the wall-clock time
    (tests pass their own).

    One cache may be shared by several clients and threads.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_size: int = 64 * 1024 * 1024,
        max_entries: int = 10_000,
        max_entry_size: int = 8 * 1024 * 1024,
        shared: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = CacheConfig(
            path=os.fspath(path) if path is not None else None,
            max_size=max_size,
            max_entries=max_entries,
            max_entry_size=max_entry_size,
            shared=shared,
        )
        self.shared = shared
        self.max_entry_size = max_entry_size
        self.clock = clock
        self.store: Store
        if path is None:
            self.store = MemoryStore(max_size, max_entries)
        else:
            self.store = DirectoryStore(path, max_size, max_entries)

    @classmethod
    def from_config(cls, settings: CacheConfig, **kwargs: Any) -> Cache:
        """The cache ``settings`` (the data form, e.g. from a ClientConfig) describe."""
        return cls(
            settings.path,
            max_size=settings.max_size,
            max_entries=settings.max_entries,
            max_entry_size=settings.max_entry_size,
            shared=settings.shared,
            **kwargs,
        )

    def __len__(self) -> int:
        """URLs with a stored response."""
        return len(self.store)

    def clear(self) -> None:
        """Forget every stored response."""
        self.store.clear()

    def invalidate(self, url: str) -> None:
        """Forget the stored responses of ``url``."""
        from ..url import URL

        self.store.save(cache_key(URL(url)), [])

    def __repr__(self) -> str:
        where = self.settings.path or "memory"
        kind = "shared" if self.shared else "private"
        return f"<aioduct.Cache {kind} {where} {len(self)} URLs>"


def cache_key(url: Any) -> str:
    """The primary key of a URL: the URL without its fragment."""
    return str(url.without_fragment())


def _credentials(request: Request) -> str:
    values = request.headers.get_list("authorization")
    if not values:
        return ""
    return hashlib.sha256("\n".join(values).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _field_value(headers: Headers, name: str) -> str | None:
    """A request field's value as Vary compares it: repeats joined, spaces trimmed."""
    values = headers.get_list(name)
    if not values:
        return None
    return ",".join(part.strip() for value in values for part in value.split(","))


def _vary_names(headers: Headers) -> list[str] | None:
    """The field names a response varies on (lower case); ``None`` for ``Vary: *``."""
    names: list[str] = []
    for value in headers.get_list("vary"):
        for part in value.split(","):
            name = part.strip().lower()
            if name == "*":
                return None
            if name and name not in names:
                names.append(name)
    return names


class _Freshness:
    """How a stored entry stands now: its directives, lifetime and age."""

    __slots__ = ("age", "cc", "lifetime")

    def __init__(self, entry: Entry, shared: bool, now: float) -> None:
        headers = Headers._adopt(list(entry.headers))
        self.cc = directives(headers.get_list("cache-control"))
        date = parse_http_date(headers.get("date"), now)
        expires = headers.get_list("expires")
        self.lifetime = freshness_lifetime(
            self.cc,
            entry.status,
            date=date,
            expires=expires[0] if expires else None,
            expires_count=len(expires),
            last_modified=parse_http_date(headers.get("last-modified"), now),
            response_time=entry.response_time,
            shared=shared,
        )
        age_values = headers.get_list("age")
        self.age = current_age(
            age_values[0] if age_values else None,
            date,
            entry.request_time,
            entry.response_time,
            now,
        )

    @property
    def fresh(self) -> bool:
        return self.lifetime > self.age

    @property
    def staleness(self) -> float:
        return self.age - self.lifetime


class CacheLayer:
    """The pipeline layer of a :class:`Cache` (see the module docstring)."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        #: keys being revalidated in the background (stale-while-revalidate)
        self._revalidating: set[str] = set()
        self._tasks: set[Any] = set()

    async def __call__(self, request: Request, call_next: Next) -> Response:
        method = request.method
        if method == "GET" or method == "HEAD":
            return await self._lookup(request, call_next)
        response = await call_next(request)
        response.cache_status = "miss"
        if method not in _SAFE and 200 <= response.status < 400:
            self._invalidate(request, response)
        return response

    # -- lookup ----------------------------------------------------------------------------

    async def _lookup(self, request: Request, call_next: Next) -> Response:
        cache = self.cache
        headers = request.headers
        if request.protocol is not None or any(name in headers for name in _PASS_THROUGH):
            response = await call_next(request)
            response.cache_status = "miss"
            return response
        # (Pragma is deprecated by RFC 9111 §5.4 and has no effect here.)
        req_cc = directives(headers.get_list("cache-control"))
        key = cache_key(request.url)
        entries = cache.store.load(key)
        now = cache.clock()
        entry = self._select(entries, request)
        state = _Freshness(entry, cache.shared, now) if entry is not None else None
        if entry is not None and state is not None:
            if self._usable(state, req_cc):
                return self._answer(entry, request, state, "hit")
            if self._stale_allowed(state, req_cc):
                return self._answer(entry, request, state, "stale")
            swr = delta_seconds(state.cc.get("stale-while-revalidate"))
            if (
                swr is not None
                and state.staleness <= swr
                and not self._must_validate(state, req_cc)
                and "only-if-cached" not in req_cc
            ):
                hop = getattr(call_next, "hop", None)
                runtime = hop.runtime if hop is not None else None
                if runtime is not None and runtime.background:
                    if key not in self._revalidating:
                        self._revalidating.add(key)
                        task = runtime.spawn(self._revalidate(key, request, entry, call_next))
                        self._tasks.add(task)
                        done = getattr(task, "add_done_callback", None)
                        if done is not None:
                            done(self._tasks.discard)
                    return self._answer(entry, request, state, "stale")
                # No background tasks here (the blocking runtime): revalidate inline.
        if "only-if-cached" in req_cc:
            response = Response(504, reason="Gateway Timeout", content=b"", request=request)
            response.cache_status = "miss"
            return response
        if any(name in headers for name in _CALLER_VALIDATES):
            return await self._caller_validates(key, request, entries, entry, call_next)
        return await self._fetch(key, request, entries, entry, state, req_cc, call_next)

    def _answer(self, entry: Entry, request: Request, state: _Freshness, status: str) -> Response:
        """Serve ``entry`` for ``request``, evaluating the caller's own If-None-Match /
        If-Modified-Since (a 304 from the store) and Range (a 206 from the whole body)."""
        response = self._serve(entry, request, state, status)
        headers = request.headers
        if_none_match = headers.get("if-none-match")
        if_modified_since = headers.get("if-modified-since")
        if if_none_match is not None or if_modified_since is not None:
            stored = response.headers
            if if_none_match is not None:
                not_modified = etag_matches(if_none_match, stored.get("etag"))
            else:
                since = parse_http_date(if_modified_since)
                changed = parse_http_date(stored.get("last-modified") or stored.get("date"))
                not_modified = since is not None and changed is not None and changed <= since
            if not_modified:
                fields = [(n, v) for n, v in stored.multi_items() if n.lower() != "content-length"]
                answer = Response(
                    304,
                    headers=Headers._adopt(fields),
                    reason="Not Modified",
                    http_version=entry.http_version,
                    content=b"",
                    request=request,
                )
                answer.cache_status = status
                return answer
        range_value = headers.get("range")
        if (
            range_value is not None
            and entry.status == 200
            and request.method == "GET"
            and "content-encoding" not in response.headers
        ):
            found = byte_range(range_value, len(entry.body))
            if found is not None:
                first, last = found
                fields = [
                    (n, v)
                    for n, v in response.headers.multi_items()
                    if n.lower() != "content-length"
                ]
                fields.append(("Content-Range", f"bytes {first}-{last}/{len(entry.body)}"))
                fields.append(("Content-Length", str(last - first + 1)))
                partial = Response(
                    206,
                    headers=Headers._adopt(fields),
                    reason="Partial Content",
                    http_version=entry.http_version,
                    content=entry.body[first : last + 1],
                    request=request,
                )
                partial.cache_status = status
                return partial
        return response

    async def _caller_validates(
        self,
        key: str,
        request: Request,
        entries: list[Entry],
        entry: Entry | None,
        call_next: Next,
    ) -> Response:
        """The caller's own conditional or range request, sent as written; a 304 for
        it still refreshes a stored response with the same validator."""
        cache = self.cache
        request_time = cache.clock()
        response = await call_next(request)
        response_time = cache.clock()
        response.cache_status = "miss"
        if response.status == 304 and entry is not None:
            stored = Headers._adopt(list(entry.headers))
            etag, theirs = stored.get("etag"), response.headers.get("etag")
            if etag is not None and theirs is not None and _opaque_equal(etag, theirs):
                self._replace(
                    key, entries, entry, self._updated(entry, response, request_time, response_time)
                )
        return response

    def _select(self, entries: list[Entry], request: Request) -> Entry | None:
        """The stored variant that matches ``request`` (RFC 9111 §4.1), newest first."""
        auth = "" if self.cache.shared else _credentials(request)
        for entry in entries:
            if entry.auth != auth:
                continue
            vary = entry.vary
            if vary is None:
                return entry
            if all(_field_value(request.headers, name) == value for name, value in vary):
                return entry
        return None

    def _must_validate(self, state: _Freshness, req_cc: Directives) -> bool:
        """Whether a stale entry may never be served without validation."""
        cc = state.cc
        if "no-cache" in cc or "must-revalidate" in cc:
            return True
        if self.cache.shared and ("proxy-revalidate" in cc or "s-maxage" in cc):
            return True
        return "no-cache" in req_cc

    def _usable(self, state: _Freshness, req_cc: Directives) -> bool:
        """A fresh entry the request accepts without validation (RFC 9111 §4.2, §5.2.1)."""
        cc = state.cc
        if "no-cache" in cc or "no-cache" in req_cc:
            return False
        if not state.fresh:
            return False
        immutable = "immutable" in cc
        max_age = delta_seconds(req_cc.get("max-age")) if "max-age" in req_cc else None
        if max_age is not None and state.age > max_age and not immutable:
            return False
        min_fresh = delta_seconds(req_cc.get("min-fresh")) if "min-fresh" in req_cc else None
        return not (min_fresh is not None and state.lifetime - state.age < min_fresh)

    def _stale_allowed(self, state: _Freshness, req_cc: Directives) -> bool:
        """A stale entry the request accepts by ``max-stale`` (RFC 9111 §5.2.1.2)."""
        if state.fresh or "max-stale" not in req_cc or self._must_validate(state, req_cc):
            return False
        argument = req_cc["max-stale"]
        if argument is None:
            return True
        limit = delta_seconds(argument)
        return limit is not None and state.staleness <= limit

    def _serve(self, entry: Entry, request: Request, state: _Freshness, status: str) -> Response:
        """A new Response from a stored entry, with its current Age."""
        fields = [(n, v) for n, v in entry.headers if n.lower() != "age"]
        fields.append(("Age", str(min(int(state.age), MAX_DELTA))))
        response = Response(
            entry.status,
            headers=Headers._adopt(fields),
            reason=entry.reason,
            http_version=entry.http_version,
            content=b"" if request.method == "HEAD" else entry.body,
            request=request,
        )
        response.cache_status = status
        return response

    # -- the network -------------------------------------------------------------------------

    async def _fetch(
        self,
        key: str,
        request: Request,
        entries: list[Entry],
        entry: Entry | None,
        state: _Freshness | None,
        req_cc: Directives,
        call_next: Next,
    ) -> Response:
        cache = self.cache
        sent = request
        if entry is not None:
            sent = _conditional(request, entry)
        request_time = cache.clock()
        try:
            response = await call_next(sent)
        except AioductError:
            if entry is not None and state is not None and self._stale_if_error(state, req_cc):
                return self._serve(entry, request, state, "stale")
            raise
        response_time = cache.clock()
        response.request = request if response.request is sent else response.request
        if response.status == 304 and entry is not None and sent is not request:
            await response.aread()
            updated = self._updated(entry, response, request_time, response_time)
            self._replace(key, entries, entry, updated)
            served = self._serve(
                updated, request, _Freshness(updated, cache.shared, response_time), "revalidated"
            )
            served.history = response.history
            return served
        if (
            response.status >= 500
            and entry is not None
            and state is not None
            and self._stale_if_error(state, req_cc)
        ):
            await response.aclose()
            return self._serve(entry, request, state, "stale")
        response.cache_status = "miss"
        if request.method == "HEAD":
            if entry is not None and response.status == 200:
                self._freshen_from_head(key, entries, entry, response, request_time, response_time)
            return response
        self._store(key, request, response, entries, req_cc, request_time, response_time)
        return response

    def _stale_if_error(self, state: _Freshness, req_cc: Directives) -> bool:
        """RFC 5861 §4: a stale response may stand in for an error within the window."""
        if self._must_validate(state, req_cc):
            return False  # must-revalidate, no-cache: never served without the origin
        for cc in (req_cc, state.cc):
            window = delta_seconds(cc.get("stale-if-error")) if "stale-if-error" in cc else None
            if window is not None and state.staleness <= window:
                return True
        return False

    async def _revalidate(self, key: str, request: Request, entry: Entry, call_next: Next) -> None:
        """Background revalidation for stale-while-revalidate; failures only logged."""
        cache = self.cache
        try:
            sent = _conditional(request, entry)
            request_time = cache.clock()
            response = await call_next(sent)
            await response.aread()
            response_time = cache.clock()
            entries = cache.store.load(key)
            if response.status == 304:
                updated = self._updated(entry, response, request_time, response_time)
                self._replace(key, entries, entry, updated)
            elif request.method == "GET":
                self._store(key, request, response, entries, {}, request_time, response_time)
        except Exception as exc:
            _log.debug("background revalidation of %s failed: %s", key, exc)
        finally:
            self._revalidating.discard(key)

    # -- storing -----------------------------------------------------------------------------

    def _store(
        self,
        key: str,
        request: Request,
        response: Response,
        entries: list[Entry],
        req_cc: Directives,
        request_time: float,
        response_time: float,
    ) -> None:
        """Store ``response`` if RFC 9111 §3 allows it and it can ever be reused."""
        cache = self.cache
        status = response.status
        if status < 200 or status in (206, 304) or response._upgraded is not None:
            return
        if "no-store" in req_cc:
            return
        headers = response.headers
        cc = directives(headers.get_list("cache-control"))
        if "must-understand" in cc:
            # RFC 9111 §5.2.2.3: store only statuses whose caching rules this cache
            # implements, and then no-store (there for caches that do not) is overridden.
            if status not in _UNDERSTOOD:
                return
        elif "no-store" in cc:
            return
        shared = cache.shared
        if shared and "private" in cc and cc["private"] is None:
            return
        if (
            shared
            and "authorization" in request.headers
            and not ("must-revalidate" in cc or "public" in cc or "s-maxage" in cc)
        ):
            return
        names = _vary_names(headers)
        if names is None or len(names) > MAX_VARY_FIELDS:
            return  # Vary: * never matches; a response varying on everything is useless
        explicit = (
            "max-age" in cc
            or "expires" in headers
            or "public" in cc
            or (not shared and "private" in cc)
            or (shared and "s-maxage" in cc)
        )
        if not explicit and status not in HEURISTIC_STATUSES:
            return
        has_validator = "etag" in headers or "last-modified" in headers
        extension = "stale-while-revalidate" in cc or "stale-if-error" in cc
        fields = _stored_fields(headers.multi_items(), cc if shared else None)
        entry = Entry(
            url=key,
            status=status,
            reason=response.reason,
            http_version=response.http_version,
            headers=tuple(fields),
            body=b"",
            request_time=request_time,
            response_time=response_time,
            vary=tuple((n, _field_value(request.headers, n)) for n in names) if names else None,
            auth="" if shared else _credentials(request),
        )
        if not has_validator and not extension:
            state = _Freshness(entry, shared, response_time)
            if state.lifetime <= state.age:
                return  # stale on arrival and nothing to validate it with: never reusable
        content = response._content
        if content is not None:
            if len(content) <= cache.max_entry_size:
                self._put(key, entries, _with_body(entry, content))
            return
        body = response._body
        if body is not None:
            response._body = _TeeBody(body, cache.max_entry_size, self, key, entry)

    def _put(self, key: str, entries: list[Entry], entry: Entry) -> None:
        """Store ``entry`` first among the variants of ``key``, replacing its own variant."""
        kept = [e for e in self.cache.store.load(key) or entries if not _same_variant(e, entry)]
        self.cache.store.save(key, [entry, *kept][:MAX_VARIANTS])

    def _replace(self, key: str, entries: list[Entry], old: Entry, new: Entry) -> None:
        current = self.cache.store.load(key) or entries
        kept = [e for e in current if not _same_variant(e, old)]
        self.cache.store.save(key, [new, *kept][:MAX_VARIANTS])

    def _updated(
        self, entry: Entry, response: Response, request_time: float, response_time: float
    ) -> Entry:
        """``entry`` with the header fields of a 304 that validated it (RFC 9111 §4.3.4)."""
        new = [(n, v) for n, v in response.headers.multi_items() if n.lower() not in _NOT_UPDATED]
        replaced = {n.lower() for n, _ in new}
        fields = [(n, v) for n, v in entry.headers if n.lower() not in replaced]
        fields.extend(new)
        return Entry(
            url=entry.url,
            status=entry.status,
            reason=entry.reason,
            http_version=entry.http_version,
            headers=tuple(fields),
            body=entry.body,
            request_time=request_time,
            response_time=response_time,
            vary=entry.vary,
            auth=entry.auth,
        )

    def _freshen_from_head(
        self,
        key: str,
        entries: list[Entry],
        entry: Entry,
        response: Response,
        request_time: float,
        response_time: float,
    ) -> None:
        """RFC 9111 §4.3.5: a HEAD response with the stored validators freshens the entry;
        one with different validators says the stored body is outdated."""
        stored = Headers._adopt(list(entry.headers))
        for name in ("etag", "last-modified"):
            mine, theirs = stored.get(name), response.headers.get(name)
            if mine is not None and theirs is not None and mine != theirs:
                current = self.cache.store.load(key) or entries
                self.cache.store.save(key, [e for e in current if not _same_variant(e, entry)])
                return
        updated = self._updated(entry, response, request_time, response_time)
        self._replace(key, entries, entry, updated)

    # -- invalidation ------------------------------------------------------------------------

    def _invalidate(self, request: Request, response: Response) -> None:
        """RFC 9111 §4.4: forget the target URI and same-origin Location/Content-Location."""
        store = self.cache.store
        url = request.url
        store.save(cache_key(url), [])
        for name in ("location", "content-location"):
            value = response.headers.get(name)
            if not value:
                continue
            try:
                target = url.join(value.strip())
                if target.origin == url.origin:
                    store.save(cache_key(target), [])
            except (AioductError, ValueError):
                continue


def _opaque_equal(a: str, b: str) -> bool:
    return etag_matches(a, b)


def _same_variant(a: Entry, b: Entry) -> bool:
    return a.vary == b.vary and a.auth == b.auth


def _with_body(entry: Entry, body: bytes) -> Entry:
    return Entry(
        url=entry.url,
        status=entry.status,
        reason=entry.reason,
        http_version=entry.http_version,
        headers=entry.headers,
        body=body,
        request_time=entry.request_time,
        response_time=entry.response_time,
        vary=entry.vary,
        auth=entry.auth,
    )


def _conditional(request: Request, entry: Entry) -> Request:
    """``request`` with the stored entry's validators (RFC 9111 §4.3.1), or itself."""
    stored = Headers._adopt(list(entry.headers))
    etag = stored.get("etag")
    last_modified = stored.get("last-modified")
    if etag is None and last_modified is None:
        return request
    headers = Headers(request.headers)
    if etag is not None:
        headers["If-None-Match"] = etag
    if last_modified is not None:
        headers["If-Modified-Since"] = last_modified
    return request.copy_with(headers=headers)


def _stored_fields(
    fields: list[tuple[str, str]], shared_cc: Directives | None
) -> list[tuple[str, str]]:
    """The fields worth storing: not the connection's, and (shared) not private ones."""
    dropped = set(_NOT_STORED)
    for name, value in fields:
        if name.lower() == "connection":
            dropped.update(part.strip().lower() for part in value.split(","))
    if shared_cc is not None:
        for directive in ("private", "no-cache"):
            named = shared_cc.get(directive)
            if named:
                dropped.update(part.strip().lower() for part in named.split(","))
    return [(n, v) for n, v in fields if n.lower() not in dropped]


class _TeeBody:
    """A streamed body that keeps a copy while it is read, and stores the response once
    the whole body has been read (not if the reader stops early or it grows too big)."""

    __slots__ = ("_chunks", "_entry", "_inner", "_key", "_layer", "_limit", "_size")

    def __init__(
        self, inner: BodyReader, limit: int, layer: CacheLayer, key: str, entry: Entry
    ) -> None:
        self._inner = inner
        self._limit = limit
        self._layer = layer
        self._key = key
        self._entry = entry
        self._chunks: list[bytes] | None = []
        self._size = 0

    async def read_chunk(self) -> bytes | None:
        chunk = await self._inner.read_chunk()
        chunks = self._chunks
        if chunks is None:
            return chunk
        if chunk is None:
            self._chunks = None
            entry = _with_body(self._entry, b"".join(chunks))
            self._layer._put(self._key, [], entry)
            return None
        self._size += len(chunk)
        if self._size > self._limit:
            self._chunks = None  # too big to store: stop copying
        else:
            chunks.append(bytes(chunk))
        return chunk

    async def aclose(self) -> None:
        self._chunks = None
        await self._inner.aclose()
