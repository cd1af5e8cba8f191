"""HTTP Strict Transport Security (RFC 6797): once a host says "https only", believe it.

After an ``https://`` response carries ``Strict-Transport-Security: max-age=N``, every
``http://`` request to that host (and, with ``includeSubDomains``, to its subdomains)
is rewritten to ``https://`` before a byte is sent, for ``N`` seconds. Port 80 becomes
443; any other explicit port is kept (RFC 6797 §8.3). ``max-age=0`` forgets the host.

What is *not* learnt (RFC 6797 §8.1): the header over plain http, from an IP-literal
host, from a connection whose certificate was not verified (``verify=False``), and any
header that breaks the grammar of §6.1 -- a directive given twice, a missing or
non-numeric ``max-age``, an unterminated quote -- which is ignored as a whole. Only the
first such header field of a response counts (§8.1).

Hosts are compared in their ASCII form (IDNA, lower case, no trailing dot), so
``http://example.test./``, ``http://example。test`` and ``http://xn--...`` all find the
entry learnt from ``https://example.test`` (curl CVE-2022-30115, -42916, -43551). A
subdomain's own entry never replaces its parent's (curl CVE-2024-9681).

The store is bounded (:data:`MAX_ENTRIES` learnt hosts; the oldest-learnt is dropped
first) and thread-safe: a :class:`~aioduct.BlockingClient` shares one store between its
threads. Expiry is calendar time (``time.time``), not the runtime's monotonic clock,
because entries outlive the process in ``hsts_file``.

The file
--------
``hsts_file=`` keeps the store on disk in curl's format (``curl --hsts FILE`` reads the
same file), one host per line, UTC expiry, a leading dot for ``includeSubDomains``::

    # comment lines start with '#'
    .example.com "20271204 21:30:00"
    api.example.org "20270101 00:00:00"

It is read when the client starts and written when the set of hosts changes (at most
once a second) and when the client closes. Writing merges: it re-reads the file under
an exclusive lock, applies only this process's own changes, and replaces the file
atomically, so clients in several processes (the local engine's workers) add up
instead of overwriting each other (curl CVE-2023-23915).
"""

from __future__ import annotations

import calendar
import logging
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Final

from .dns import literal_address
from .errors import InvalidURL
from .headers import Headers
from .url import URL

if TYPE_CHECKING:
    from .config import ClientConfig
    from .layers import Next
    from .models import Request, Response

__all__ = ["MAX_ENTRIES", "HSTSLayer", "HSTSStore", "parse_sts", "store_for"]

log = logging.getLogger("aioduct")

#: Learnt hosts kept at most (preloaded ones do not count).
MAX_ENTRIES: Final = 10_000
#: ``max-age`` values above this (about 100 years) are taken as this.
MAX_AGE_CAP: Final = 100 * 365 * 86400
#: Shortest time between two writes of ``hsts_file`` caused by changes.
SAVE_INTERVAL: Final = 1.0
_HEADER: Final = "strict-transport-security"
_TCHAR: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_FILE_HEADER: Final = (
    "# HSTS store written by aioduct (curl's hsts file format: https://curl.se/docs/hsts.html)\n"
    "# host (a leading dot: includeSubDomains) and expiry in UTC\n"
)

#: One known host: (expires at, as a Unix time; includeSubDomains).
Entry = tuple[float, bool]


def parse_sts(value: str) -> tuple[int, bool] | None:
    """``(max_age, include_subdomains)`` of a ``Strict-Transport-Security`` value, or
    ``None`` when it must be ignored (RFC 6797 §6.1: a directive given twice, no valid
    ``max-age``, a quoted value left open, a name that is not a token)."""
    seen: set[str] = set()
    max_age: int | None = None
    include = False
    for part in _directives(value):
        if part is None:
            return None
        name, directive_value = part
        if name in seen:
            return None
        seen.add(name)
        if name == "max-age":
            if directive_value is None or not directive_value.isascii():
                return None
            if not directive_value.isdigit():
                return None
            digits = directive_value.lstrip("0") or "0"
            max_age = MAX_AGE_CAP if len(digits) > 12 else min(int(digits), MAX_AGE_CAP)
        elif name == "includesubdomains":
            include = True
    if max_age is None:
        return None
    return max_age, include


def _directives(value: str) -> Iterable[tuple[str, str | None] | None]:
    """The ``(name, value)`` directives of an STS value; ``None`` for a malformed one."""
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] == ";":
            i += 1
            continue
        start = i
        while i < n and value[i] in _TCHAR:
            i += 1
        name = value[start:i].lower()
        while i < n and value[i] in " \t":
            i += 1
        if not name:
            if i < n:
                yield None
            return
        directive_value: str | None = None
        if i < n and value[i] == "=":
            i += 1
            while i < n and value[i] in " \t":
                i += 1
            if i < n and value[i] == '"':
                i += 1
                chars = []
                while i < n and value[i] != '"':
                    if value[i] == "\\" and i + 1 < n:
                        i += 1
                    chars.append(value[i])
                    i += 1
                if i >= n:
                    yield None  # unterminated quoted-string
                    return
                i += 1
                directive_value = "".join(chars)
            else:
                start = i
                while i < n and value[i] in _TCHAR:
                    i += 1
                directive_value = value[start:i]
            while i < n and value[i] in " \t":
                i += 1
        if i < n and value[i] != ";":
            yield None
            return
        yield name, directive_value


def normalize_host(host: str) -> str:
    """The form hosts are stored and looked up in: IDNA ASCII, lower case, no final dot."""
    host = host.rstrip(".").lower()
    if not host.isascii() or "\u3002" in host:
        try:
            host = URL(f"http://{host}/").host.rstrip(".")
        except InvalidURL:
            return host
    return host


class HSTSStore:
    """The known HSTS hosts of a client (see the module docstring).

    ``preload`` hosts are upgraded, with their subdomains, whatever servers say;
    ``path`` is the ``hsts_file`` to load now and save to; ``clock`` returns Unix time.
    """

    def __init__(
        self,
        *,
        preload: Iterable[str] = (),
        path: str | None = None,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._entries: dict[str, Entry] = {}
        self._preload = frozenset(_preload_host(h) for h in preload)
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self.path = os.path.expanduser(path) if path is not None else None
        #: host -> entry (or None: removed) changed here since the last save.
        self._dirty: dict[str, Entry | None] = {}
        self._structural = False
        self._saved_at = float("-inf")
        if self.path is not None:
            self._entries.update(_read_file(self.path, clock()))
            self._trim()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, host: object) -> bool:
        return isinstance(host, str) and self.lookup(host) is not None

    def __repr__(self) -> str:
        return f"<HSTSStore {len(self._entries)} hosts, {len(self._preload)} preloaded>"

    @property
    def empty(self) -> bool:
        """Nothing to upgrade: the hot path's first test."""
        return not self._entries and not self._preload

    def lookup(self, host: str) -> Entry | None:
        """The entry that makes ``host`` a known HSTS host (RFC 6797 §8.2), if any:
        its own, or a superdomain's with ``includeSubDomains``."""
        host = normalize_host(host)
        if literal_address(host) is not None:
            return None
        entries = self._entries
        now = self._clock()
        name = host
        exact = True
        while True:
            entry = entries.get(name)
            if entry is not None:
                if entry[0] <= now:
                    self._forget(name, entry)
                elif exact or entry[1]:
                    return entry
            if name in self._preload:
                return (float("inf"), True)
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1 :]
            exact = False

    def learn(self, host: str, value: str) -> bool:
        """Note what ``value`` (an STS header received over verified https from
        ``host``) says; ``False`` when it is ignored."""
        host = normalize_host(host)
        if not host or literal_address(host) is not None:
            return False
        parsed = parse_sts(value)
        if parsed is None:
            return False
        max_age, include = parsed
        with self._lock:
            old = self._entries.pop(host, None)
            if max_age == 0:
                if old is not None:
                    self._dirty[host] = None
                    self._structural = True
                return True
            entry = (self._clock() + max_age, include)
            self._entries[host] = entry  # (re)inserted last: the newest is dropped last
            self._dirty[host] = entry
            if old is None or old[1] != include:
                self._structural = True
            self._trim()
        if self._structural and self.path is not None:
            self._maybe_save()
        return True

    def add(self, host: str, max_age: float, include_subdomains: bool = False) -> None:
        """Make ``host`` a known HSTS host for ``max_age`` seconds (0 removes it)."""
        value = f"max-age={int(max_age)}" + ("; includeSubDomains" if include_subdomains else "")
        if not self.learn(host, value):
            raise ValueError(f"cannot make {host!r} an HSTS host (an IP address or empty?)")

    def clear(self) -> None:
        """Forget every learnt host (preloaded ones stay)."""
        with self._lock:
            for host in self._entries:
                self._dirty[host] = None
            self._entries.clear()
            self._structural = True
        if self.path is not None:
            self.save()

    def hosts(self) -> dict[str, Entry]:
        """A copy of the learnt entries: host -> (expires at, includeSubDomains)."""
        with self._lock:
            return dict(self._entries)

    def _forget(self, host: str, entry: Entry) -> None:
        with self._lock:
            if self._entries.get(host) is entry:
                del self._entries[host]
                self._dirty[host] = None

    def _trim(self) -> None:
        entries = self._entries
        if len(entries) <= self._max:
            return
        now = self._clock()
        for host in [h for h, (expires, _) in entries.items() if expires <= now]:
            del entries[host]
        while len(entries) > self._max:
            host = next(iter(entries))
            del entries[host]
            self._dirty[host] = None

    # -- the file ------------------------------------------------------------------------

    def _maybe_save(self) -> None:
        if time.monotonic() - self._saved_at >= SAVE_INTERVAL:
            self.save()

    def save(self) -> None:
        """Write the changes of this store to ``hsts_file`` now, merged with the file."""
        path = self.path
        if path is None:
            return
        with self._lock:
            if not self._dirty and os.path.exists(path):
                return
            dirty, self._dirty = self._dirty, {}
            self._structural = False
            self._saved_at = time.monotonic()
            try:
                merged = _merge_into_file(path, dirty, self._clock())
            except OSError as exc:
                self._dirty = {**dirty, **self._dirty}
                log.warning("aioduct: could not save the HSTS store to %s: %s", path, exc)
                return
            for host, entry in merged.items():  # what other processes learnt
                if host not in self._entries:
                    self._entries[host] = entry
            self._trim()

    def close(self) -> None:
        """Save what changed (a client calls this when it closes)."""
        if self.path is not None and self._dirty:
            self.save()


def _preload_host(host: str) -> str:
    name = normalize_host(host)
    if not name or literal_address(name) is not None or "/" in name or ":" in name:
        raise ValueError(f"hsts_preload takes host names, not {host!r}")
    return name


def _format_time(expires: float) -> str:
    if expires == float("inf"):
        return "unlimited"
    return time.strftime("%Y%m%d %H:%M:%S", time.gmtime(min(expires, 253402300799)))


def _parse_time(stamp: str) -> float | None:
    if stamp == "unlimited":
        return float("inf")
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y%m%d %H:%M:%S")))
    except ValueError:
        return None


def _read_file(path: str, now: float) -> dict[str, Entry]:
    """The unexpired entries of an hsts file (a missing file is an empty store)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("aioduct: cannot read the HSTS file %s (%s); starting empty", path, exc)
        return {}
    entries: dict[str, Entry] = {}
    bad = 0
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        host, _, rest = line.partition(" ")
        rest = rest.strip()
        stamp = _parse_time(rest[1:-1]) if len(rest) > 2 and rest[0] == rest[-1] == '"' else None
        include = host.startswith(".")
        name = normalize_host(host.lstrip("."))
        if stamp is None or not name or literal_address(name) is not None:
            bad += 1
            continue
        if stamp > now:
            entries[name] = (stamp, include)
    if bad:
        log.warning("aioduct: skipped %d malformed line(s) in the HSTS file %s", bad, path)
    return entries


def _merge_into_file(path: str, dirty: dict[str, Entry | None], now: float) -> dict[str, Entry]:
    """Apply ``dirty`` to the file at ``path`` under an exclusive lock; the merged
    entries are written atomically and returned."""
    import fcntl

    directory = os.path.dirname(os.path.abspath(path))
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entries = _read_file(path, now)
            for host, entry in dirty.items():
                if entry is None:
                    entries.pop(host, None)
                else:
                    entries[host] = entry
            lines = [_FILE_HEADER]
            for host, (expires, include) in entries.items():
                if expires > now:
                    lines.append(f'{"." if include else ""}{host} "{_format_time(expires)}"\n')
            fd, tmp = tempfile.mkstemp(prefix=".hsts-", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.writelines(lines)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return entries


def _first_sts(fields: list[tuple[str, str]]) -> str | None:
    """The first ``Strict-Transport-Security`` value of a response head (§8.1), found
    without building the head's index: other names are skipped by length."""
    for name, value in fields:
        if len(name) == 25 and name.lower() == _HEADER:
            return value
    return None


class HSTSLayer:
    """The outermost layer: upgrades ``http://`` requests to known hosts, learns from
    ``https://`` responses. ``learn=False`` (unverified TLS) only upgrades."""

    __slots__ = ("learn", "store")

    def __init__(self, store: HSTSStore, *, learn: bool = True) -> None:
        self.store = store
        self.learn = learn

    def close(self) -> None:
        """Save the store's file (the client is closing)."""
        self.store.close()

    def __call__(self, request: Request, call_next: Next) -> Awaitable[Response]:
        # Not a coroutine: with nothing to do (plain http, no known host) it hands back
        # the next layer's awaitable and adds no frame to the await chain. (The engine
        # calls prepare/observe instead when every layer of the client has them.)
        url = request.url
        if url.scheme == "https":
            return self._learn_from(call_next(request)) if self.learn else call_next(request)
        store = self.store
        if (store._entries or store._preload) and url.scheme == "http" and store.lookup(url.host):
            request = upgraded(request)
            return self._learn_from(call_next(request)) if self.learn else call_next(request)
        return call_next(request)

    async def _learn_from(self, sending: Awaitable[Response]) -> Response:
        response = await sending
        request = response.request
        if request is not None:
            self.observe(request, response)
        return response

    def prepare(self, request: Request) -> Request:
        """The inline form (:class:`~aioduct.layers.HopHooks`): ``request`` upgraded to
        https if its host is a known HSTS host."""
        store = self.store
        url = request.url
        if (store._entries or store._preload) and url.scheme == "http" and store.lookup(url.host):
            return upgraded(request)
        return request

    def observe(self, sent: Request, response: Response) -> None:
        """The inline form: learn from a response to an https request."""
        if self.learn and sent.url.scheme == "https":
            value = _first_sts(response.headers._list)
            if value is not None:
                self.store.learn(sent.url.host, value)

    def upgrade(self, request: Request) -> Request:
        """``request`` sent to https instead, if its host is a known HSTS host."""
        url = request.url
        if url.scheme != "http" or self.store.empty or self.store.lookup(url.host) is None:
            return request
        return upgraded(request)

    def observe_final(self, response: Response) -> None:
        """Learn from the last response of a redirect chain run elsewhere (a local-engine
        worker), which came from ``response.url``."""
        url = response.url
        if not self.learn or url is None or url.scheme != "https":
            return
        value = _first_sts(response.headers._list)
        if value is not None:
            self.store.learn(url.host, value)


def hsts_store_of(layers: Iterable[object]) -> HSTSStore | None:
    """The store of the HSTS layer among ``layers``, if there is one."""
    for layer in layers:
        if isinstance(layer, HSTSLayer):
            return layer.store
    return None


def store_for(config: ClientConfig) -> HSTSStore:
    """A client's store: its ``hsts_preload`` hosts, loaded from its ``hsts_file``."""
    return HSTSStore(preload=config.hsts_preload, path=config.hsts_file)


def upgraded(request: Request) -> Request:
    """A copy of ``request`` to ``https://`` (port 80 becomes 443, others stay)."""

    url = request.url
    target = url.copy_with(scheme="https", port=None if url.port == 80 else url.port)
    headers = Headers(request.headers)
    if headers.get("host") == url.host_header:
        headers["Host"] = target.host_header
    return request.copy_with(url=target, headers=headers)
