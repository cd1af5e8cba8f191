"""Alt-Svc parsing and the alternatives cache (RFC 7838): pure logic, no I/O."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aioduct.altsvc import MAX_ALTERNATIVES, Alternative, AltSvcCache, parse_alt_svc

ORIGIN = ("https", "example.com", 443)
DAY = 86400.0
ALT_10 = Alternative("h3", "alt.example.com", 443, 10.0)


def h3(port: int, protocol: str = "h3") -> Alternative:
    return Alternative(protocol, "", port, DAY)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('h3=":443"', [Alternative("h3", "", 443, 86400.0)]),
        ('h3=":8443"; ma=60', [Alternative("h3", "", 8443, 60.0)]),
        ('h3="alt.example.com:443"; ma=10; persist=1', [ALT_10]),
        ('h3-29=":443", h3=":444"', [h3(443, "h3-29"), h3(444)]),
        ('h3="[::1]:443"', [Alternative("h3", "::1", 443, 86400.0)]),
        ('h3=":443"; ma="30"', [Alternative("h3", "", 443, 30.0)]),
        ('h3=":0"', []),  # no such port
        ('h3=":70000"', []),
        ('h3=443', []),  # unquoted
        ('h3=":443"; ma=-1', []),
        ('h3=":443"; ma=abc', []),
        ('h3="a b:443"', []),
        ('h3=":443", garbage, h3=":9"', [h3(443), h3(9)]),
        ('h3=":443"; ma=99999999999999', [Alternative("h3", "", 443, 10 * 365 * 86400.0)]),
        ("", []),
    ],
)  # fmt: skip
def test_parse(value: str, expected: list[Alternative]) -> None:
    assert parse_alt_svc(value, 0.0) == expected


def test_clear_and_bounds() -> None:
    assert parse_alt_svc(" clear ", 0.0) is None
    many = ", ".join(f'h3=":{1000 + i}"' for i in range(100))
    assert len(parse_alt_svc(many, 0.0) or []) == MAX_ALTERNATIVES


def test_cache_expiry_clear_and_broken_backoff() -> None:
    cache = AltSvcCache()
    cache.learn(ORIGIN, 'h2=":443", h3=":8443"; ma=100', now=0.0, wall=1000.0)
    assert cache.lookup(ORIGIN, 50.0) == ("example.com", 8443)
    assert cache.lookup(ORIGIN, 100.0) is None  # expired (and forgotten)
    assert len(cache) == 0
    cache.learn(ORIGIN, 'h3=":8443"', now=0.0, wall=1000.0)
    cache.mark_broken(("example.com", 8443), now=10.0)
    assert cache.lookup(ORIGIN, 20.0) is None
    assert cache.lookup(ORIGIN, 311.0) == ("example.com", 8443)  # 5 minutes later
    cache.mark_broken(("example.com", 8443), now=311.0)
    assert cache.lookup(ORIGIN, 311.0 + 301.0) is None  # doubled
    assert cache.lookup(ORIGIN, 311.0 + 601.0) is not None
    cache.mark_working(("example.com", 8443))
    cache.learn(ORIGIN, "clear", now=0.0, wall=0.0)
    assert cache.lookup(ORIGIN, 0.0) is None
    cache.learn(ORIGIN, 'h2=":443"', now=0.0, wall=0.0)  # nothing for HTTP/3
    assert len(cache) == 0


def test_cache_file(tmp_path: Path) -> None:
    path = tmp_path / "alt-svc.json"
    cache = AltSvcCache(path)
    cache.learn(ORIGIN, 'h3=":8443"; ma=100', now=5.0, wall=time.time())
    assert path.exists()
    # A later run (another monotonic clock): expiry travels as wall-clock time.
    again = AltSvcCache(path)
    assert again.lookup(ORIGIN, time.monotonic()) == ("example.com", 8443)
    path.write_text('[["https", "old.example", 443, [["h3", "", 1, 1000000000.0]]]]')
    assert len(AltSvcCache(path)) == 0  # expired in 2001
    path.write_text("not json")
    assert len(AltSvcCache(path)) == 0  # damaged: a miss, not an error
    path.write_text('[["https", "a", "x", []], 5]')
    assert len(AltSvcCache(path)) == 0
    cache.clear()
    assert not path.exists()
