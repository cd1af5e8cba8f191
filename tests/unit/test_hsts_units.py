"""HSTS decisions without I/O: header grammar (curl unit1660's table), host matching,
expiry, the size bound, the URL rewrite and the file format."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aioduct.hsts import HSTSStore, parse_sts, upgraded
from aioduct.models import Request


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age=31536000", (31536000, False)),
        ("max-age=31536000; includeSubDomains", (31536000, True)),
        ('max-age="31536000"', (31536000, False)),
        ("  MAX-AGE = 7 ;; includesubdomains ;", (7, True)),
        ("max-age=5; include;", (5, False)),  # unknown directives are ignored
        ('max-age=5; unknown="a;b"', (5, False)),
        ("max-age=0", (0, False)),
        ("max-age=0000000000000000000000000000000000001", (1, False)),
        ("max-age=99999999999999999999999999", (100 * 365 * 86400, False)),
        ("max=31536000", None),
        ('max-age="31536', None),  # unterminated quote
        ("max-age=1; max-age=2", None),  # a directive twice
        ("max-age=1; includeSubDomains; includeSubDomains", None),
        ("includeSubDomains;", None),  # no max-age
        ("", None),
        ("max-age=-1", None),
        ("max-age=+5", None),
        ("max-age=1x", None),
        ("max-age=\u0661", None),  # a non-ASCII digit
        ("max-age=5 junk", None),
        ("=5", None),
    ],
)
def test_parse_sts(value: str, expected: tuple[int, bool] | None) -> None:
    assert parse_sts(value) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_matching_rules() -> None:
    store = HSTSStore()
    assert store.learn("example.test", "max-age=100")
    assert "example.test" in store
    assert "EXAMPLE.test." in store  # curl CVE-2022-30115
    assert "example\u3002test" in store  # curl CVE-2022-42916
    assert "sub.example.test" not in store  # no includeSubDomains
    assert "forexample.test" not in store
    assert store.learn("b\u00fccher.test", "max-age=100")  # learnt decoded ...
    assert "xn--bcher-kva.test" in store  # ... found encoded (curl CVE-2022-43551)
    assert store.learn("xn--caf-dma.test", "max-age=100; includeSubDomains")
    assert "a.b.caf\u00e9.test" in store
    assert not store.learn("10.0.0.1", "max-age=100")  # IP literals are never noted
    assert not store.learn("::1", "max-age=100")
    assert "10.0.0.1" not in store
    assert not store.learn("example.test", "max-age=1; max-age=1")
    assert store.lookup("example.test") is not None  # a bad header changed nothing


def test_subdomain_entry_does_not_replace_the_parent() -> None:
    """curl CVE-2024-9681."""
    clock = Clock()
    store = HSTSStore(clock=clock)
    store.learn("example.test", "max-age=31536000; includeSubDomains")
    store.learn("x.example.test", "max-age=60")
    clock.now += 120  # the subdomain's own entry expired
    assert "x.example.test" in store
    assert store.hosts()["example.test"] == (1_000_000.0 + 31536000, True)
    store.learn("x.example.test", "max-age=0")
    assert "x.example.test" in store  # still covered by the parent


def test_expiry_and_max_age_zero() -> None:
    clock = Clock()
    store = HSTSStore(clock=clock)
    store.learn("h.test", "max-age=10")
    clock.now += 9
    assert "h.test" in store
    clock.now += 1
    assert "h.test" not in store and len(store) == 0
    store.learn("h.test", "max-age=10")
    store.learn("h.test", "max-age=0")
    assert "h.test" not in store


def test_bounded() -> None:
    store = HSTSStore(max_entries=3, preload=["pre.test"])
    for i in range(10):
        store.learn(f"h{i}.test", "max-age=100")
    assert len(store) == 3 and sorted(store.hosts()) == ["h7.test", "h8.test", "h9.test"]
    assert "x.pre.test" in store and "pre.test" in store
    store.clear()
    assert len(store) == 0 and "pre.test" in store


def test_upgraded_request_ports() -> None:
    """RFC 6797 §8.3: 80 (explicit or not) becomes 443, any other port stays."""
    for url, want in [
        ("http://h.test/a?b", "https://h.test/a?b"),
        ("http://h.test:80/a", "https://h.test/a"),
        ("http://h.test:8080/a", "https://h.test:8080/a"),
        ("http://u:p@h.test:443/", "https://u:p@h.test/"),
    ]:
        request = Request("GET", url, headers=None)
        request.headers["Host"] = request.url.host_header
        new = upgraded(request)
        assert str(new.url) == want
        assert new.headers["host"] == new.url.host_header
    custom = Request("GET", "http://h.test/")
    custom.headers["Host"] = "virtual.test"
    assert upgraded(custom).headers["host"] == "virtual.test"  # the caller's own Host stays


def test_file_format(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "hsts"
    path.write_text(
        "# curl's format\n"
        '.sub.test "20991231 23:59:59"\n'
        'exact.test "unlimited"\n'
        'old.test "20000101 00:00:00"\n'
        "garbage line\n"
        '10.0.0.1 "20991231 23:59:59"\n'
        'bad.test "2099-12-31"\n'
    )
    with caplog.at_level(logging.WARNING, logger="aioduct"):
        store = HSTSStore(path=str(path))
    assert "skipped 3 malformed line(s)" in caplog.text
    assert sorted(store.hosts()) == ["exact.test", "sub.test"]
    assert "a.sub.test" in store and "a.exact.test" not in store
    store.learn("new.test", "max-age=3600")
    store.close()
    text = path.read_text()
    assert '.sub.test "20991231 23:59:59"' in text and 'exact.test "unlimited"' in text
    assert "new.test" in text and "old.test" not in text and "garbage" not in text


def test_preload_validation() -> None:
    import aioduct

    assert aioduct.ClientConfig(hsts_preload=["Example.ORG"]).hsts_preload == ("Example.ORG",)
    for bad in (["1.2.3.4"], ["http://x/"], [""]):
        with pytest.raises(ValueError, match="hsts_preload takes host names"):
            aioduct.ClientConfig(hsts_preload=bad)
    with pytest.raises(TypeError, match="a list of host names"):
        aioduct.ClientConfig(hsts_preload="example.org")  # type: ignore[arg-type]
    config = aioduct.ClientConfig(hsts=False, hsts_file="/tmp/x", hsts_preload=("a.test",))
    assert aioduct.ClientConfig.decode(config.encode()) == config
