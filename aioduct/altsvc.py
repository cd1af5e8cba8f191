"""HTTP Alternative Services (RFC 7838): where an origin says it also speaks HTTP/3.

An https response may carry ``Alt-Svc: h3=":443"; ma=86400``: the same origin is
reachable over QUIC at that authority for ``ma`` seconds (24 h when absent).
:class:`AltSvcCache` keeps those advertisements per origin, forgets them when they
expire or when the origin sends ``Alt-Svc: clear``, and marks an alternative *broken*
for a back-off period (5 minutes, doubling up to 2 days, as browsers do) when QUIC
fails to connect to it, so a UDP blackhole costs one short race, not one per request.

Only ``h3`` is used; other protocol ids are ignored. The header is trusted only on
https responses (a cleartext one could redirect a later https request anywhere), and an
alternative may name another host only if it is the origin's own (we connect to it
with the origin's name for TLS, so a certificate that does not cover the origin fails
anyway). Parsing is pure and bounded: at most :data:`MAX_ALTERNATIVES` per header.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .layers import Link

if TYPE_CHECKING:
    from .layers import Next
    from .models import Request, Response

__all__ = ["AltSvcCache", "AltSvcLayer", "Alternative", "parse_alt_svc"]

#: Alternatives kept from one header; the rest are ignored.
MAX_ALTERNATIVES: Final = 8
#: Origins remembered; the least recently advertised are forgotten first.
MAX_ORIGINS: Final = 4096
_DEFAULT_MAX_AGE: Final = 86400.0
_BROKEN_FIRST: Final = 300.0
_BROKEN_MAX: Final = 2 * 86400.0

Origin = tuple[str, str, int]  # scheme, host, port


@dataclass(frozen=True, slots=True)
class Alternative:
    """One advertised alternative: protocol id, host ("" = the origin's), port, expiry."""

    protocol: str
    host: str
    port: int
    expires: float


def parse_alt_svc(value: str, now: float) -> list[Alternative] | None:
    """The alternatives an ``Alt-Svc`` field value advertises, or ``None`` for ``clear``.

    Malformed entries are skipped, never guessed at (RFC 7838 §3: ``alt-value`` is a
    quoted ``host:port``; parameters follow after ``;``).
    """
    value = value.strip()
    if value == "clear":
        return None
    found: list[Alternative] = []
    for entry in _split(value, ","):
        if len(found) >= MAX_ALTERNATIVES:
            break
        parts = _split(entry, ";")
        if not parts:
            continue
        protocol, sep, authority = parts[0].strip().partition("=")
        protocol = protocol.strip()
        authority = authority.strip()
        if (
            not sep
            or not protocol
            or len(authority) < 2
            or authority[0] != '"'
            or authority[-1] != '"'
        ):
            continue
        host, colon, port_text = authority[1:-1].rpartition(":")
        if not colon or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            continue
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if any(c in host for c in '/"\\ \t') or len(host) > 253:
            continue
        max_age = _DEFAULT_MAX_AGE
        for param in parts[1:]:
            name, _, arg = param.strip().partition("=")
            if name.strip().lower() == "ma":
                arg = arg.strip().strip('"')
                if not arg.isdigit():
                    max_age = -1.0
                    break
                max_age = min(float(arg), 10 * 365 * 86400.0)
        if max_age <= 0:
            continue
        found.append(Alternative(_unpercent(protocol), host.lower(), int(port_text), now + max_age))
    return found


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes."""
    out, start, quoted = [], 0, False
    for i, c in enumerate(text):
        if c == '"':
            quoted = not quoted
        elif c == sep and not quoted:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [p for p in out if p.strip()]


def _unpercent(token: str) -> str:
    # ALPN ids are percent-encoded where they are not tokens (RFC 7838 §3); h3 never is.
    return token.replace("%3D", "=").replace("%25", "%")


class AltSvcCache:
    """Per-origin HTTP/3 alternatives, with expiry, ``clear``, broken marks and a file.

    Thread-safe: a BlockingClient's threads share one.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._entries: OrderedDict[Origin, list[Alternative]] = OrderedDict()
        self._broken: dict[tuple[str, int], tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._path = Path(path) if path is not None else None
        if self._path is not None:
            self._load()

    def __len__(self) -> int:
        return len(self._entries)

    def learn(self, origin: Origin, header: str, now: float, wall: float) -> None:
        """Record an origin's ``Alt-Svc`` field value, received at ``now`` (monotonic;
        ``wall`` is the same instant on the wall clock, for the file)."""
        alternatives = parse_alt_svc(header, now)
        with self._lock:
            if alternatives is None:
                removed = self._entries.pop(origin, None) is not None
            else:
                h3 = [a for a in alternatives if a.protocol == "h3"]
                if not h3:
                    return
                self._entries[origin] = h3
                self._entries.move_to_end(origin)
                while len(self._entries) > MAX_ORIGINS:
                    self._entries.popitem(last=False)
                removed = True
        if removed:
            self._save(now, wall)

    def lookup(self, origin: Origin, now: float) -> tuple[str, int] | None:
        """Where to try HTTP/3 for ``origin`` now: ``(host, port)``, or ``None``."""
        with self._lock:
            entries = self._entries.get(origin)
            if not entries:
                return None
            live = [a for a in entries if a.expires > now]
            if len(live) != len(entries):
                if live:
                    self._entries[origin] = live
                else:
                    del self._entries[origin]
            for alt in live:
                target = (alt.host or origin[1], alt.port)
                until = self._broken.get(target)
                if until is None or until[0] <= now:
                    return target
        return None

    def mark_broken(self, target: tuple[str, int], now: float) -> None:
        """QUIC to ``target`` failed: skip it for a while (longer each time)."""
        with self._lock:
            previous = self._broken.get(target)
            period = _BROKEN_FIRST if previous is None else min(previous[1] * 2, _BROKEN_MAX)
            self._broken[target] = (now + period, period)

    def mark_working(self, target: tuple[str, int]) -> None:
        with self._lock:
            self._broken.pop(target, None)

    def clear(self) -> None:
        """Forget every alternative and broken mark."""
        with self._lock:
            self._entries.clear()
            self._broken.clear()
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    # -- persistence -------------------------------------------------------------------

    def _load(self) -> None:
        import time

        assert self._path is not None
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            return  # a damaged file is a cache miss, not an error
        now, wall = time.monotonic(), time.time()
        if not isinstance(data, list):
            return
        for item in data[:MAX_ORIGINS]:
            try:
                scheme, host, port, alternatives = item
                origin = (str(scheme), str(host), int(port))
                kept = [
                    Alternative(str(p), str(h), int(po), now + float(exp) - wall)
                    for p, h, po, exp in alternatives[:MAX_ALTERNATIVES]
                    if float(exp) > wall and p == "h3"
                ]
            except (TypeError, ValueError):
                continue
            if kept:
                self._entries[origin] = kept

    def _save(self, now: float, wall: float) -> None:
        path = self._path
        if path is None:
            return
        with self._lock:
            data = [
                [*origin, [[a.protocol, a.host, a.port, wall + a.expires - now] for a in alts]]
                for origin, alts in self._entries.items()
            ]
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)
        except OSError:
            pass  # persistence is best effort: the in-memory cache still works


class AltSvcLayer:
    """The layer that learns alternatives from https responses (``http3=True``)."""

    __slots__ = ("cache",)

    def __init__(self, cache: AltSvcCache) -> None:
        self.cache = cache

    async def __call__(self, request: Request, call_next: Next) -> Response:
        response = await call_next(request)
        url = request.url
        if url.scheme == "https" and response.http_version != "3":
            for name, value in response.headers._list:
                if len(name) == 7 and name.lower() == "alt-svc":
                    import time

                    origin = (url.scheme, url.host, url.port)
                    now = call_next.hop.runtime.now() if isinstance(call_next, Link) else 0.0
                    self.cache.learn(origin, value, now, time.time())
                    break
        return response
