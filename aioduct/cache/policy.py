"""RFC 9111 decisions as pure functions: directives, dates, age, freshness, storability.

Nothing here does I/O or reads a clock: every time is passed in (seconds since the
epoch, as HTTP dates are), so the rules are unit-testable without waiting.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "HEURISTIC_STATUSES",
    "MAX_DELTA",
    "Directives",
    "byte_range",
    "current_age",
    "delta_seconds",
    "directives",
    "etag_matches",
    "freshness_lifetime",
    "http_date",
    "parse_http_date",
]

#: RFC 9111 §1.2.2: a delta-seconds too large to hold is taken as 2^31 (68 years).
MAX_DELTA: Final = 2**31

#: RFC 9110 §15.1: statuses whose responses are heuristically cacheable.
HEURISTIC_STATUSES: Final = frozenset((200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501))

#: The fraction of (Date - Last-Modified) taken as a heuristic lifetime (RFC 9111 §4.2.2).
HEURISTIC_FRACTION: Final = 0.1

Directives = dict[str, str | None]
"""Cache-Control directives by lower-cased name: the argument (unquoted) or ``None``."""

_DIRECTIVE = re.compile(
    r"""\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s"]*)))?\s*(,|$)"""
)


def directives(values: Iterable[str]) -> Directives:
    """The Cache-Control directives of all ``values`` (field lines), first one wins.

    RFC 9111 §4.2.1: when a directive repeats, the first occurrence is used. Malformed
    pieces are skipped up to the next comma.
    """
    found: Directives = {}
    for value in values:
        pos, end = 0, len(value)
        while pos < end:
            match = _DIRECTIVE.match(value, pos)
            if match is None:  # skip a malformed element
                comma = value.find(",", pos)
                if comma < 0:
                    break
                pos = comma + 1
                continue
            name = match.group(1).lower()
            quoted, token = match.group(2), match.group(3)
            if quoted is not None:
                argument: str | None = re.sub(r"\\(.)", r"\1", quoted)
            else:
                argument = token if token else None
            if name not in found:
                found[name] = argument
            pos = match.end()
            if match.group(4) == "":
                break
    return found


def delta_seconds(argument: str | None) -> int | None:
    """A delta-seconds argument (RFC 9111 §1.2.2), capped at 2^31; ``None`` if invalid.

    Only ASCII digits count: no sign, no spaces, no ``0x``; an overflow is not invalid,
    it means "a very long time".
    """
    if not argument or not argument.isascii() or not argument.isdigit():
        return None
    if len(argument) > 10:
        return MAX_DELTA
    return min(int(argument), MAX_DELTA)


# -- HTTP dates (RFC 9110 §5.6.7) ----------------------------------------------------------

_MONTHS: Final = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_IMF = re.compile(r"^[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) (?i:GMT)$")
_RFC850 = re.compile(
    r"^[A-Za-z]{6,9}, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) (?i:GMT)$"
)
_ASCTIME = re.compile(r"^[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$")


def parse_http_date(value: str | None, now: float | None = None) -> float | None:
    """Seconds since the epoch of an HTTP date in any of its three formats, or ``None``.

    A two-digit RFC 850 year that would be more than 50 years in the future is taken
    in the past century (RFC 9110 §5.6.7); ``now`` anchors that.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        if match := _IMF.match(value):
            day, month, year, hh, mm, ss = match.groups()
        elif match := _RFC850.match(value):
            day, month, yy, hh, mm, ss = match.groups()
            current = 1970 + int((now or 0) // 31_556_952) if now else 2000
            year_n = (current // 100) * 100 + int(yy)
            if year_n > current + 50:
                year_n -= 100
            year = str(year_n)
        elif match := _ASCTIME.match(value):
            month, day, hh, mm, ss, year = match.groups()
        else:
            return None
        month_n = _MONTHS.get(month.lower())
        if month_n is None:
            return None
        fields = (int(year), month_n, int(day), int(hh), int(mm), int(ss))
        if not (1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60 and fields[5] < 61):
            return None
        return float(calendar.timegm((*fields, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


def http_date(seconds: float) -> str:
    """The IMF-fixdate form of ``seconds`` since the epoch."""
    import email.utils

    return email.utils.formatdate(seconds, usegmt=True)


# -- age and freshness ---------------------------------------------------------------------


def current_age(
    age_header: str | None,
    date: float | None,
    request_time: float,
    response_time: float,
    now: float,
) -> float:
    """RFC 9111 §4.2.3: how old a stored response is ``now``.

    ``age_header`` is the stored response's Age value (invalid values count as 0);
    ``date`` its parsed Date (``response_time`` when absent).
    """
    # A list ("7200, 0") counts by its first member, as repeated fields do.
    age_value = delta_seconds(age_header.split(",", 1)[0].strip()) if age_header else None
    age_value = age_value or 0
    date_value = response_time if date is None else date
    apparent_age = max(0.0, response_time - date_value)
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = age_value + response_delay
    corrected_initial_age = max(apparent_age, corrected_age_value)
    resident_time = max(0.0, now - response_time)
    return corrected_initial_age + resident_time


def freshness_lifetime(
    cc: Directives,
    status: int,
    *,
    date: float | None,
    expires: str | None,
    expires_count: int,
    last_modified: float | None,
    response_time: float,
    shared: bool,
) -> float:
    """RFC 9111 §4.2.1: seconds a response stays fresh after it was generated.

    Explicit freshness wins (s-maxage for a shared cache, then max-age, then Expires);
    an invalid or repeated Expires means "already expired". Without any, a heuristic
    (a tenth of the time since Last-Modified) applies to heuristically cacheable
    statuses and to ``public`` responses.
    """
    if shared and "s-maxage" in cc:
        value = delta_seconds(cc["s-maxage"])
        return 0.0 if value is None else float(value)
    if "max-age" in cc:
        value = delta_seconds(cc["max-age"])
        return 0.0 if value is None else float(value)
    if expires_count:
        if expires_count > 1:
            return 0.0
        expires_at = parse_http_date(expires, response_time)
        if expires_at is None:
            return 0.0
        return max(0.0, expires_at - (response_time if date is None else date))
    if last_modified is not None and (status in HEURISTIC_STATUSES or "public" in cc):
        base = response_time if date is None else date
        return max(0.0, (base - last_modified) * HEURISTIC_FRACTION)
    return 0.0


def etag_matches(if_none_match: str, etag: str | None) -> bool:
    """Whether an If-None-Match list matches ``etag`` by weak comparison (RFC 9110 §13.1.2)."""
    if etag is None:
        return False
    value = if_none_match.strip()
    if value == "*":
        return True
    mine = _opaque(etag)
    return any(_opaque(tag) == mine for tag in _split_etags(value))


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def _split_etags(value: str) -> list[str]:
    """The entity-tags of a list; commas inside quotes do not split."""
    tags: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            tags.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    tags.append("".join(current).strip())
    return [t for t in tags if t]


def byte_range(value: str, length: int) -> tuple[int, int] | None:
    """The one satisfiable ``bytes=`` range of a Range field as (first, last), or ``None``
    (several ranges, another unit, malformed or unsatisfiable: send the whole body)."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    first_s, last_s = first_s.strip(), last_s.strip()
    if not all(p == "" or (p.isascii() and p.isdigit()) for p in (first_s, last_s)):
        return None
    if first_s == "":
        if last_s == "" or int(last_s) == 0 or length == 0:
            return None
        return max(0, length - int(last_s)), length - 1
    first = int(first_s)
    last = length - 1 if last_s == "" else min(int(last_s), length - 1)
    if first >= length or last < first:
        return None
    return first, last
