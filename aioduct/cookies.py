"""Cookies: an RFC 6265bis cookie jar, and the layer that uses it on every hop.

A :class:`CookieJar` stores what servers set (``Set-Cookie``) and answers which cookies a
request URL gets (``Cookie``). It follows the parsing, storage and retrieval algorithms of
RFC 6265bis (draft-ietf-httpbis-rfc6265bis, §5), with the parts a non-browser client
needs and none of the browser-only ones:

* ``Domain`` is refused for a public suffix (``co.uk``, ``github.io``: the Public Suffix
  List, from the ``publicsuffixlist`` package) unless it is the host itself, and for an
  IP-literal host unless it is that address: such hosts only get host-only cookies.
* ``Secure`` cookies are set by and sent to ``https`` URLs only; a cookie from ``http``
  cannot shadow a Secure one. ``__Secure-`` and ``__Host-`` prefixes are enforced.
* ``Expires``/``Max-Age`` (capped at 400 days), ``Path`` and host-only matching as the
  RFC says. ``HttpOnly`` and ``SameSite`` are stored and saved but change nothing: every
  request of an HTTP client is an "HTTP API" request, and there are no sites to compare.
* Bounds, so a hostile server cannot grow the jar without limit: a cookie's name and
  value together at most 4096 bytes; per site (registrable domain) and in total at most
  ``max_cookies_per_site`` and ``max_cookies`` cookies, the least recently used evicted
  first; a ``Cookie`` header of at most ``max_header_size`` bytes.

The jar is thread-safe: a :class:`~aioduct.BlockingClient` shares one between its
threads, and ``Client(cookies=jar)`` between clients. ``save``/``load`` use the
Netscape ``cookies.txt`` format that curl and wget read and write.

:class:`CookieLayer` is the jar's place in the pipeline (:mod:`aioduct.layers`): it runs
around each redirect hop, so a cookie set on a 302 is stored for the host that set it
before the next hop asks for its own.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import datetime
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from .dns import _literal_family

if TYPE_CHECKING:
    from .layers import Next
    from .models import Request, Response
    from .url import URL

__all__ = [
    "Cookie",
    "CookieJar",
    "CookieLayer",
    "cookie_header",
    "registrable_domain",
    "site_of",
]

#: Most bytes of a cookie's name and value together (RFC 6265bis §5.6).
MAX_COOKIE_SIZE: Final = 4096
#: Attribute values longer than this are ignored (RFC 6265bis §5.6).
MAX_ATTRIBUTE_SIZE: Final = 1024
#: Expiry dates further ahead than this are brought back to it (RFC 6265bis §5.6.1).
MAX_AGE_CAP: Final = 400 * 24 * 3600
#: The longest line ``load()`` reads as a cookie (a longer one is skipped, never split).
_MAX_LINE: Final = 16 * 1024

# A CTL other than HTAB anywhere in a Set-Cookie line makes it ignored (RFC 6265bis §5.6).
_CTL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: What a cookie's name or value given by the user may not hold: control characters
#: (tabs too: cookies.txt separates fields by them), ";" (it ends a cookie in the
#: header) and what a header value cannot carry (beyond latin-1).
_BAD_PAIR: Final = re.compile(r"[\x00-\x1f\x7f;]|[^\x00-\xff]")
_DATE_DELIMITERS: Final = re.compile(r"[\x09\x20-\x2f\x3b-\x40\x5b-\x60\x7b-\x7e]+")
_TIME: Final = re.compile(r"([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:[^0-9]|$)")
_DAY: Final = re.compile(r"([0-9]{1,2})(?:[^0-9]|$)")
_YEAR: Final = re.compile(r"([0-9]{2,4})(?:[^0-9]|$)")
_MAX_AGE: Final = re.compile(r"-?[0-9]+")
_MONTHS: Final = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_SAME_SITE: Final = {"strict": "Strict", "lax": "Lax", "none": "None"}
_WSP: Final = " \t"


def parse_date(text: str) -> float | None:
    """The cookie-date algorithm of RFC 6265 §5.1.1: seconds since the epoch, or None.

    Lenient on purpose (browsers and servers disagree on date formats): the first token
    that looks like a time, day, month and year each fills that field.
    """
    hms = day = month = year = None
    for token in _DATE_DELIMITERS.split(text):
        if not token:
            continue
        if hms is None and (m := _TIME.match(token)):
            hms = int(m[1]), int(m[2]), int(m[3])
        elif day is None and (m := _DAY.match(token)):
            day = int(m[1])
        elif month is None and token[:3].lower() in _MONTHS:
            month = _MONTHS[token[:3].lower()]
        elif year is None and (m := _YEAR.match(token)):
            year = int(m[1])
    if hms is None or day is None or month is None or year is None:
        return None
    if 70 <= year <= 99:
        year += 1900
    elif 0 <= year <= 69:
        year += 2000
    hour, minute, second = hms
    if not 1 <= day <= 31 or year < 1601 or hour > 23 or minute > 59 or second > 59:
        return None
    try:
        datetime.date(year, month, day)  # 31 February does not exist
    except ValueError:
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


_psl: Any = None
_psl_lock = threading.Lock()


def _public_suffix_list() -> Any:
    """The Public Suffix List, loaded on first use (~35 ms: most clients never need it)."""
    global _psl
    if _psl is None:
        with _psl_lock:
            if _psl is None:
                from publicsuffixlist import PublicSuffixList

                _psl = PublicSuffixList()
    return _psl


def is_ip(host: str) -> bool:
    """``host`` is an IP literal (as :attr:`URL.host` gives it: IPv6 without brackets)."""
    return _literal_family(host) is not None


def is_public_suffix(domain: str) -> bool:
    """``domain`` is a public suffix (``com``, ``co.uk``, ``github.io``, an unknown TLD)."""
    domain = domain.rstrip(".").lower()
    return not domain or bool(_public_suffix_list().is_public(domain))


def registrable_domain(host: str) -> str | None:
    """The registrable domain (eTLD+1) of ``host`` by the Public Suffix List, lower
    case; None for a public suffix itself, an IP literal or a name that is not one.
    """
    host = host.lower()
    if not host or host.startswith(".") or is_ip(host):
        return None
    private = _public_suffix_list().privatesuffix(host)
    return private if private else None


def site_of(host: str) -> str:
    """The site ``host`` belongs to, for the jar's per-site bounds and the local
    engine's sharding: its registrable domain, else (an IP literal, a public suffix)
    the host itself."""
    return registrable_domain(host.rstrip(".")) or host.lower()


def domain_match(host: str, domain: str) -> bool:
    """RFC 6265bis §5.1.3: ``host`` is ``domain`` or a name under it (never for IPs)."""
    if host == domain:
        return True
    return host.endswith(domain) and host[-len(domain) - 1] == "." and not is_ip(host)


def path_match(request_path: str, cookie_path: str) -> bool:
    """RFC 6265bis §5.1.4: ``cookie_path`` covers ``request_path``."""
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    )


def default_path(path: str) -> str:
    """RFC 6265bis §5.1.4: the directory of the request path, the path a cookie gets
    when it names none."""
    if not path.startswith("/"):
        return "/"
    slash = path.rfind("/")
    return "/" if slash == 0 else path[:slash]


@dataclasses.dataclass(slots=True)
class Cookie:
    """One stored cookie.

    ``expires`` is seconds since the epoch, ``None`` for a session cookie (one that lasts
    as long as the jar). ``host_only`` cookies go to their ``domain`` exactly; the others
    to its subdomains too. ``same_site`` is ``"Strict"``, ``"Lax"``, ``"None"`` or None.
    """

    name: str
    value: str
    domain: str
    path: str = "/"
    expires: float | None = None
    secure: bool = False
    http_only: bool = False
    same_site: str | None = None
    host_only: bool = False
    creation: float = dataclasses.field(default=0.0, repr=False, compare=False)
    last_access: float = dataclasses.field(default=0.0, repr=False, compare=False)
    #: Creation order: breaks ties between cookies made in the same clock tick.
    order: int = dataclasses.field(default=0, repr=False, compare=False)
    site: str = dataclasses.field(default="", repr=False, compare=False)

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now


Key = tuple[str, str, bool]  # name, path, host_only (the domain keys the bucket)


class CookieRejected(ValueError):
    """Why a cookie was not stored (for :meth:`CookieJar.set`; Set-Cookie ignores it)."""


def parse_set_cookie(line: str) -> tuple[str, str, list[tuple[str, str]]] | None:
    """A ``Set-Cookie`` value as ``(name, value, [(attribute, value)])`` (attribute names
    lower-cased, values trimmed, the over-long ones dropped), or None when the line is
    to be ignored (RFC 6265bis §5.6)."""
    if _CTL.search(line):
        return None
    pair, _, attributes = line.partition(";")
    name, eq, value = pair.partition("=")
    if not eq:
        name, value = "", name
    name = name.strip(_WSP)
    value = value.strip(_WSP)
    if not name and not value:
        return None
    if "\t" in name or "\t" in value:
        # Allowed by RFC 6265bis, but cookies.txt separates fields by tabs: such a
        # cookie could not be saved (curl refuses it for the same reason).
        return None
    if len(name) + len(value) > MAX_COOKIE_SIZE:
        return None
    parsed = []
    if attributes:
        for av in attributes.split(";"):
            key, _, val = av.partition("=")
            key = key.strip(_WSP).lower()
            val = val.strip(_WSP)
            if key and len(val) <= MAX_ATTRIBUTE_SIZE:
                parsed.append((key, val))
    return name, value, parsed


def _canonical_domain(domain: str) -> str | None:
    """A ``Domain`` attribute as a host: the leading dot dropped, lower case, IDNA A-label."""
    if domain.startswith("."):
        domain = domain[1:]
    domain = domain.lower()
    if not domain.isascii():
        import idna

        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return None
    return domain


class CookieJar:
    """The cookies of one or more clients (see the module docstring).

    ``Client()`` makes one of its own; pass ``Client(cookies=jar)`` to share one between
    clients, ``Client(cookies=False)`` for none. ``client.cookies`` is the jar.
    """

    def __init__(
        self,
        *,
        max_cookies: int = 3000,
        max_cookies_per_site: int = 180,
        max_header_size: int = 8190,
    ) -> None:
        for name, value in (
            ("max_cookies", max_cookies),
            ("max_cookies_per_site", max_cookies_per_site),
            ("max_header_size", max_header_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
        self.max_cookies = max_cookies
        self.max_cookies_per_site = max_cookies_per_site
        self.max_header_size = max_header_size
        self._lock = threading.RLock()
        #: ``{cookie domain: {(name, path, host_only): Cookie}}``
        self._domains: dict[str, dict[Key, Cookie]] = {}
        self._sites: dict[str, int] = {}
        #: Cookies stored: the layer's "nothing to do" test is this being 0.
        self._count = 0
        self._order = 0
        self._clock: Callable[[], float] = time.time

    # -- the pipeline's side ----------------------------------------------------------------

    def header_for(self, url: URL) -> str | None:
        """The ``Cookie`` header value a request to ``url`` carries, or None (RFC 6265bis
        §5.8.3): longest paths first, then the oldest; each one's last use is now."""
        if not self._count:
            return None
        host = url.host
        secure = url.scheme == "https"
        path = url.path or "/"
        now = self._clock()
        chosen: list[Cookie] = []
        with self._lock:
            domains = self._domains
            for domain in _candidates(host):
                bucket = domains.get(domain)
                if bucket is None:
                    continue
                stale = None
                for key, cookie in bucket.items():
                    if cookie.expires is not None and cookie.expires <= now:
                        stale = [*(stale or ()), key]
                        continue
                    if cookie.host_only and domain != host:
                        continue
                    if cookie.secure and not secure:
                        continue
                    if not path_match(path, cookie.path):
                        continue
                    chosen.append(cookie)
                if stale:
                    for key in stale:
                        self._remove(domain, key)
            if not chosen:
                return None
            chosen.sort(key=_send_order)
            parts: list[str] = []
            size = 0
            limit = self.max_header_size
            for cookie in chosen:
                part = f"{cookie.name}={cookie.value}" if cookie.name else cookie.value
                size += len(part) + (2 if parts else 0)
                if size > limit:
                    break
                cookie.last_access = now
                parts.append(part)
        return "; ".join(parts) if parts else None

    def store_response(self, url: URL, values: Iterable[str]) -> None:
        """Store the cookies of a response to ``url`` (its ``Set-Cookie`` values)."""
        now = self._clock()
        for line in values:
            parsed = parse_set_cookie(line)
            if parsed is None:
                continue
            with contextlib.suppress(CookieRejected):
                self._store(url.host, url.scheme == "https", url.path or "/", parsed, now)

    # -- storage (RFC 6265bis §5.7) ----------------------------------------------------------

    def _store(
        self,
        host: str,
        secure_request: bool,
        request_path: str,
        parsed: tuple[str, str, list[tuple[str, str]]],
        now: float,
        http_only_api: bool = True,
    ) -> Cookie | None:
        name, value, attributes = parsed
        expires: float | None = None
        max_age: float | None = None
        domain_attr: str | None = None
        path: str | None = None
        secure = http_only = False
        same_site = None
        for key, val in attributes:  # the last of each attribute wins
            if key == "expires":
                when = parse_date(val)
                if when is not None:
                    expires = min(when, now + MAX_AGE_CAP)
            elif key == "max-age":
                if _MAX_AGE.fullmatch(val):
                    delta = int(val)
                    max_age = now + min(delta, MAX_AGE_CAP) if delta > 0 else float("-inf")
            elif key == "domain":
                if val:
                    domain_attr = val
            elif key == "path":
                path = val if val.startswith("/") else None
            elif key == "secure":
                secure = True
            elif key == "httponly":
                http_only = True
            elif key == "samesite":
                same_site = _SAME_SITE.get(val.lower())
        if max_age is not None:
            expires = max_age
        has_path = path is not None
        if path is None:
            path = default_path(request_path)

        host_only = True
        domain = host
        canonical = None if domain_attr is None else _canonical_domain(domain_attr)
        if domain_attr is not None and canonical != "":  # "Domain=." names no domain
            if canonical is None:
                raise CookieRejected(f"Domain={domain_attr!r} is not a valid domain name")
            if is_ip(host):
                if canonical != host:
                    raise CookieRejected(f"an IP host ({host}) gets host-only cookies only")
            elif is_public_suffix(canonical) and canonical != host:
                raise CookieRejected(f"Domain={canonical} is a public suffix")
            elif not domain_match(host, canonical):
                raise CookieRejected(f"Domain={canonical} does not cover the host {host}")
            else:
                host_only = canonical == host and is_public_suffix(canonical)
                domain = canonical
        if secure and not secure_request:
            raise CookieRejected("a Secure cookie can only be set over https")
        lowered = name.lower()
        if not name and (
            value.lower().startswith("__secure-") or value.lower().startswith("__host-")
        ):
            raise CookieRejected("a nameless cookie may not look like a prefixed one")
        if lowered.startswith("__secure-") and not (secure and secure_request):
            raise CookieRejected("a __Secure- cookie must be Secure and set over https")
        if lowered.startswith("__host-") and not (
            secure
            and secure_request
            and host_only
            and domain_attr is None
            and has_path
            and path == "/"
        ):
            raise CookieRejected(
                "a __Host- cookie must be Secure, set over https, without Domain, with Path=/"
            )
        with self._lock:
            if not secure and not secure_request and self._shadows_secure(name, domain, path):
                raise CookieRejected(f"an http cookie may not replace the Secure cookie {name!r}")
            identity = (name, path, host_only)
            bucket = self._domains.get(domain)
            old = None if bucket is None else bucket.get(identity)
            if old is not None:
                if old.http_only and not http_only_api:
                    raise CookieRejected(f"{name!r} is HttpOnly")
                self._remove(domain, identity)
            if expires is not None and expires <= now:
                return None  # an expiry in the past deletes the cookie
            self._order += 1
            cookie = Cookie(
                name,
                value,
                domain,
                path,
                expires,
                secure,
                http_only,
                same_site,
                host_only,
                creation=old.creation if old is not None else now,
                last_access=now,
                order=old.order if old is not None else self._order,
                site=site_of(domain),
            )
            self._insert(cookie, now)
            return cookie

    def _shadows_secure(self, name: str, domain: str, path: str) -> bool:
        """RFC 6265bis §5.7 step 16: is there a Secure cookie of this name whose domain
        matches (either way) and whose path the new one would cover?"""
        for existing_domain, bucket in self._domains.items():
            if not (domain_match(existing_domain, domain) or domain_match(domain, existing_domain)):
                continue
            for cookie in bucket.values():
                if cookie.secure and cookie.name == name and path_match(path, cookie.path):
                    return True
        return False

    def _insert(self, cookie: Cookie, now: float) -> None:
        site = cookie.site
        if self._sites.get(site, 0) >= self.max_cookies_per_site:
            self._purge_expired(now)
            if self._sites.get(site, 0) >= self.max_cookies_per_site:
                self._evict(lambda c: c.site == site)
        if self._count >= self.max_cookies:
            self._purge_expired(now)
            if self._count >= self.max_cookies:
                self._evict(lambda c: True)
        bucket = self._domains.get(cookie.domain)
        if bucket is None:
            bucket = self._domains[cookie.domain] = {}
        bucket[(cookie.name, cookie.path, cookie.host_only)] = cookie
        self._sites[site] = self._sites.get(site, 0) + 1
        self._count += 1

    def _remove(self, domain: str, key: Key) -> None:
        bucket = self._domains[domain]
        cookie = bucket.pop(key)
        if not bucket:
            del self._domains[domain]
        left = self._sites[cookie.site] - 1
        if left:
            self._sites[cookie.site] = left
        else:
            del self._sites[cookie.site]
        self._count -= 1

    def _purge_expired(self, now: float) -> None:
        for domain, key in [
            (d, k) for d, b in self._domains.items() for k, c in b.items() if c.expired(now)
        ]:
            self._remove(domain, key)

    def _evict(self, which: Callable[[Cookie], bool]) -> None:
        """Drop the least recently used cookie among ``which``."""
        victim = min(
            (
                (c.last_access, c.order, d, k)
                for d, b in self._domains.items()
                for k, c in b.items()
                if which(c)
            ),
            default=None,
        )
        if victim is not None:
            self._remove(victim[2], victim[3])

    # -- the user's side --------------------------------------------------------------------

    def set(
        self,
        name: str,
        value: str,
        *,
        domain: str,
        path: str = "/",
        secure: bool = False,
        http_only: bool = False,
        same_site: str | None = None,
        expires: float | None = None,
        host_only: bool = False,
    ) -> Cookie:
        """Store a cookie for ``domain`` (and its subdomains unless ``host_only``).

        Checked as a ``Set-Cookie`` from ``https://domain`` would be; a cookie that
        one would refuse (a public-suffix domain, a control character, too long, a
        broken prefix rule) raises :class:`ValueError` saying why.
        """
        _check_pair(name, value)
        canonical = _canonical_domain(domain)
        if not canonical or not path.startswith("/"):
            raise ValueError(
                f"cannot set cookie {name!r}: domain must be a host name and path start "
                f"with '/' (got domain={domain!r}, path={path!r})"
            )
        attributes = [("path", path)]
        if not host_only:
            if is_public_suffix(canonical):
                raise ValueError(
                    f"cannot set cookie {name!r} for {canonical} and its subdomains: it is a "
                    "public suffix (pass host_only=True for that host alone)"
                )
            attributes.append(("domain", canonical))
        if secure:
            attributes.append(("secure", ""))
        if http_only:
            attributes.append(("httponly", ""))
        if same_site is not None:
            if same_site.lower() not in _SAME_SITE:
                raise ValueError(f"same_site must be 'Strict', 'Lax' or 'None', not {same_site!r}")
            attributes.append(("samesite", same_site))
        now = self._clock()
        try:
            cookie = self._store(canonical, True, path, (name, value, attributes), now)
        except CookieRejected as exc:
            raise ValueError(f"cannot set cookie {name!r} for {canonical}: {exc}") from None
        if cookie is None:
            raise ValueError(f"cannot set cookie {name!r}: it has expired")
        if expires is not None:
            if expires <= now:
                with self._lock:
                    self._remove(cookie.domain, (cookie.name, cookie.path, cookie.host_only))
                raise ValueError(f"cannot set cookie {name!r}: expires is in the past")
            cookie.expires = float(expires)
        return cookie

    def get(self, name: str, domain: str | None = None, path: str | None = None) -> str | None:
        """The value of the cookie ``name`` (of exactly ``domain`` and ``path`` when
        given), or None. With several matches, the one of the longest domain and path."""
        if domain is not None:
            domain = _canonical_domain(domain)
        now = self._clock()
        best = None
        for cookie in self:
            if cookie.name != name or cookie.expired(now):
                continue
            if domain is not None and cookie.domain != domain:
                continue
            if path is not None and cookie.path != path:
                continue
            rank = (len(cookie.domain), len(cookie.path))
            if best is None or rank > best[0]:
                best = (rank, cookie.value)
        return None if best is None else best[1]

    def clear(self, domain: str | None = None) -> None:
        """Forget every cookie, or those of ``domain`` and its subdomains."""
        with self._lock:
            if domain is None:
                self._domains.clear()
                self._sites.clear()
                self._count = 0
                return
            target = _canonical_domain(domain) or ""
            for d in [d for d in self._domains if domain_match(d, target)]:
                for key in list(self._domains[d]):
                    self._remove(d, key)

    def __iter__(self) -> Iterator[Cookie]:
        with self._lock:
            cookies = [c for bucket in self._domains.values() for c in bucket.values()]
        return iter(cookies)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return True  # an empty jar is still a jar (``if client.cookies:``)

    def __repr__(self) -> str:
        return f"<CookieJar {self._count} cookies>"

    # -- cookies.txt -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the cookies (session ones too, with expiry 0) to ``path`` in the Netscape
        ``cookies.txt`` format curl (``-b``/``-c``) and wget read; ``HttpOnly`` as curl's
        ``#HttpOnly_`` prefix. The file is created readable by its owner only (0600)
        and replaced in one step."""
        now = self._clock()
        lines = [
            "# Netscape HTTP Cookie File",
            "# https://curl.se/docs/http-cookies.html",
            "# This file was generated by aioduct. Edit at your own risk.",
            "",
        ]
        for c in sorted(self, key=lambda c: (c.domain, c.path, c.order)):
            if c.expired(now):
                continue
            if c.same_site is not None:  # curl and wget skip comments; load() reads it
                lines.append(f"#aioduct:SameSite={c.same_site}")
            domain = c.domain if c.host_only else "." + c.domain
            if c.http_only:
                domain = "#HttpOnly_" + domain
            expires = 0 if c.expires is None else int(c.expires)
            lines.append(
                "\t".join(
                    (
                        domain,
                        "FALSE" if c.host_only else "TRUE",
                        c.path,
                        "TRUE" if c.secure else "FALSE",
                        str(expires),
                        c.name,
                        c.value,
                    )
                )
            )
        data = ("\n".join(lines) + "\n").encode("utf-8")
        target = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(target))
        fd, tmp = tempfile.mkstemp(prefix=".cookies-", dir=directory)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def load(self, path: str | os.PathLike[str]) -> int:
        """Add the cookies of a Netscape ``cookies.txt`` file (curl's, wget's, or one
        :meth:`save` wrote); returns how many were stored.

        Each line is checked like a Set-Cookie: lines that are malformed, too long,
        expired, or name a public suffix as their domain are skipped, never split.
        """
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            text = f.read()
        now = self._clock()
        stored = 0
        same_site = None
        for raw in text.splitlines():
            line = raw.rstrip("\r")
            http_only = False
            if line.startswith("#HttpOnly_"):
                http_only = True
                line = line[len("#HttpOnly_") :]
            elif line.startswith("#aioduct:SameSite="):
                same_site = _SAME_SITE.get(line.partition("=")[2].lower())
                continue
            elif not line.strip() or line.startswith("#"):
                continue
            pending_same_site, same_site = same_site, None
            if len(line) > _MAX_LINE:
                continue
            fields = line.split("\t")
            if len(fields) == 6:  # curl writes an empty value so
                fields.append("")
            if len(fields) != 7:
                continue
            domain, subdomains, cpath, secure, expires_text, name, value = fields
            host_only = subdomains.upper() != "TRUE"
            domain = _canonical_domain(domain) or ""
            try:
                _check_pair(name, value)
                expires_at = int(expires_text)
            except ValueError:
                continue
            if not domain or not cpath.startswith("/"):
                continue
            if is_ip(domain):
                host_only = True
            elif not host_only and is_public_suffix(domain):
                continue
            expires = None if expires_at == 0 else float(expires_at)
            if expires is not None and expires <= now:
                continue
            cookie = Cookie(
                name,
                value,
                domain,
                cpath,
                expires,
                secure.upper() == "TRUE",
                http_only,
                pending_same_site,
                host_only,
                creation=now,
                last_access=now,
                site=site_of(domain),
            )
            with self._lock:
                key = (name, cpath, host_only)
                bucket = self._domains.get(domain)
                if bucket is not None and key in bucket:
                    self._remove(domain, key)
                self._order += 1
                cookie.order = self._order
                self._insert(cookie, now)
            stored += 1
        return stored


def _candidates(host: str) -> Iterator[str]:
    """The cookie domains that can match ``host``: itself and the names above it."""
    yield host
    if is_ip(host):
        return
    dot = host.find(".")
    while dot >= 0:
        parent = host[dot + 1 :]
        if parent:
            yield parent
        dot = host.find(".", dot + 1)


def _send_order(cookie: Cookie) -> tuple[int, float, int]:
    return (-len(cookie.path), cookie.creation, cookie.order)


def _check_pair(name: str, value: str) -> None:
    """A cookie name and value a jar can store and send, else ValueError saying why."""
    if not isinstance(name, str) or not isinstance(value, str):
        raise ValueError(f"a cookie's name and value must be str, not {name!r}={value!r}")
    if _BAD_PAIR.search(name + value) or "=" in name:
        raise ValueError(
            f"cookie {name!r}: names may not contain '=', and names and values not ';', tabs "
            "or other control characters, or characters beyond U+00FF"
        )
    if len(name) + len(value) > MAX_COOKIE_SIZE:
        raise ValueError(
            f"cookie {name!r}: name and value are {len(name) + len(value)} bytes, more than "
            f"{MAX_COOKIE_SIZE}"
        )
    if not name and not value:
        raise ValueError("a cookie needs a name or a value")


def cookie_header(cookies: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """A ``Cookie`` header value from per-request ``cookies={"name": "value"}``."""
    pairs = cookies.items() if isinstance(cookies, Mapping) else cookies
    parts = []
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"cookies= takes a dict or (name, value) pairs, not {pair!r}")
        name, value = pair
        _check_pair(name, value)
        parts.append(f"{name}={value}" if name else value)
    return "; ".join(parts)


class CookieLayer:
    """Sends the jar's cookies with each hop and stores what each response sets.

    With an empty jar and a response that sets nothing it costs one attribute test and
    a scan of the response's header names by length (no header index is built). It
    offers :class:`~aioduct.layers.HopHooks`, so a client whose only layer it is runs
    it inline.
    """

    __slots__ = ("jar",)

    def __init__(self, jar: CookieJar) -> None:
        self.jar = jar

    def prepare(self, request: Request) -> Request:
        """``request`` with the jar's cookies for its URL added (itself if there are none)."""
        jar = self.jar
        if jar._count:
            header = jar.header_for(request.url)
            if header is not None:
                return _with_cookies(request, header)
        return request

    def observe(self, sent: Request, response: Response) -> None:
        """Store what the response sets: its raw fields are scanned by length (no
        header index is built: most responses set no cookie)."""
        values = None
        for name, value in response.headers._list:
            # "Connection" is ten letters too: its fourth is no hyphen
            if len(name) == 10 and name[3] == "-" and name.lower() == "set-cookie":
                if values is None:
                    values = [value]
                else:
                    values.append(value)
        if values is not None:
            self.jar.store_response(sent.url, values)

    async def __call__(self, request: Request, call_next: Next) -> Response:
        sent = self.prepare(request)
        response = await call_next(sent)
        self.observe(sent, response)
        if sent is not request:
            # The redirect loop builds the next hop from response.request: the jar's
            # cookies must not travel with it (the next hop asks the jar again).
            response.request = request
        return response


def _with_cookies(request: Request, header: str) -> Request:
    """A copy of ``request`` carrying the jar's cookies after any it had already
    (``cookies=`` or a ``Cookie`` header of the caller's, which win on names they share)."""
    from .headers import Headers
    from .models import Request

    headers = Headers(request.headers)
    given = headers.get("cookie")
    if given:
        names = {part.partition("=")[0].strip() for part in given.split(";")}
        header = "; ".join(
            part for part in header.split("; ") if part.partition("=")[0] not in names
        )
        if not header:
            return request
        del headers["cookie"]
        headers.add("Cookie", f"{given}; {header}")
    else:
        headers.add("Cookie", header)
    copy = Request.__new__(Request)
    copy.method = request.method
    copy.url = request.url
    copy.headers = headers
    copy.content = request.content
    copy.stream = request.stream
    copy.version = request.version
    copy.protocol = request.protocol
    copy.auth = request.auth
    copy.expect_continue = request.expect_continue
    return copy
