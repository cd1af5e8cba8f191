"""The jar's parsing, storage, matching, bounds and persistence, as pure logic.

Each advisory of reliability.md §1.7/§1.8 that concerns a jar has its case here, named
after it; the cases that need a server are in test_cookies_client.py.
"""

from __future__ import annotations

import calendar
import os
import stat
import threading
from pathlib import Path

import pytest

import aioduct
from aioduct.cookies import (
    MAX_AGE_CAP,
    CookieJar,
    default_path,
    domain_match,
    parse_date,
    path_match,
)
from aioduct.url import URL

NOW = float(calendar.timegm((2026, 1, 1, 0, 0, 0)))


def jar(**limits: int) -> CookieJar:
    j = CookieJar(**limits)
    j._clock = lambda: NOW
    return j


def store(j: CookieJar, url: str, *lines: str) -> None:
    j.store_response(URL(url), lines)


def header(j: CookieJar, url: str) -> str | None:
    return j.header_for(URL(url))


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", (1994, 11, 6, 8, 49, 37)),
        ("Sunday, 06-Nov-94 08:49:37 GMT", (1994, 11, 6, 8, 49, 37)),
        ("Sun Nov  6 08:49:37 1994", (1994, 11, 6, 8, 49, 37)),
        ("Thu, 01 Jan 70 00:00:00 GMT", (1970, 1, 1, 0, 0, 0)),
        ("Wed, 09 Jun 2021 10:18:14 GMT", (2021, 6, 9, 10, 18, 14)),
        ("09 Jun 21 10:18:14", (2021, 6, 9, 10, 18, 14)),
    ],
)
def test_cookie_dates_parse(text: str, expected: tuple[int, ...]) -> None:
    assert parse_date(text) == calendar.timegm((*expected, 0, 0, 0))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "Sun, 31 Feb 2021 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1600 08:49:37 GMT",  # before 1601
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994",  # no time
        "99999999999999999999",
    ],
)
def test_bad_cookie_dates_are_none(text: str) -> None:
    assert parse_date(text) is None


def test_a_bad_expires_leaves_a_session_cookie() -> None:
    j = jar()
    store(j, "http://a.test/", "s=1; Expires=not a date", "t=2; Expires=Sun, 31 Feb 2030 1:2:3")
    assert {c.name: c.expires for c in j} == {"s": None, "t": None}


@pytest.mark.parametrize(
    "max_age", ["18446744073709551616", "99999999999999999999", "9" * 1000, "1e9", "+5", " 5x"]
)
def test_huge_or_odd_max_age_is_clamped_or_ignored_rustsec_2017_0005(max_age: str) -> None:
    j = jar()
    store(j, "http://a.test/", f"a=b; Max-Age={max_age}")
    (cookie,) = j
    assert cookie.expires is None or cookie.expires == NOW + MAX_AGE_CAP


@pytest.mark.parametrize("max_age", ["-1", "0", "-99999999999999999999"])
def test_max_age_zero_or_negative_deletes(max_age: str) -> None:
    j = jar()
    store(j, "http://a.test/", "a=b")
    store(j, "http://a.test/", f"a=c; Max-Age={max_age}")
    assert len(j) == 0 and header(j, "http://a.test/") is None


def test_max_age_wins_over_expires_and_far_dates_are_capped_at_400_days() -> None:
    j = jar()
    store(j, "http://a.test/", "a=1; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:01 GMT")
    store(j, "http://a.test/", "b=1; Expires=Fri, 01 Jan 9999 00:00:00 GMT")
    assert {c.name: c.expires for c in j} == {"a": NOW + 60, "b": NOW + MAX_AGE_CAP}


def test_control_characters_reject_the_line_curl_cve_2022_35252() -> None:
    j = jar()
    store(j, "http://a.test/", "a=b\x07c", "d=e\x00", "f=g\x7f", "h=i\tj", "ok=\t1 2\t")
    # HTAB only around the value: inside, it could not be saved to cookies.txt (as curl)
    assert [(c.name, c.value) for c in j] == [("ok", "1 2")]


def test_name_and_value_size_limit_curl_test1151() -> None:
    j = jar()
    store(j, "http://a.test/", "n" * 4096 + "=", "m" * 4094 + "=x", "o" * 4096 + "=x")
    assert sorted(len(c.name) + len(c.value) for c in j) == [4095, 4096]


def test_attributes_last_wins_and_case_insensitive() -> None:
    j = jar()
    store(j, "https://a.test/x/y", "a=1; PATH=/x; path=/; SECURE; HttpOnly; SameSite=lax")
    (c,) = j
    assert (c.path, c.secure, c.http_only, c.same_site, c.host_only) == (
        "/",
        True,
        True,
        "Lax",
        True,
    )


# -- domains ---------------------------------------------------------------------------------


def test_domain_and_path_matching_rules() -> None:
    assert domain_match("www.example.test", "example.test")
    assert not domain_match("example.test", "ample.test")  # curl CVE-2013-1944
    assert not domain_match("192.168.0.1", "168.0.1")  # curl CVE-2014-3613
    assert path_match("/a/b", "/a") and path_match("/a/", "/a/") and not path_match("/ab", "/a")
    assert (
        default_path("/a/b/c") == "/a/b" and default_path("/a") == "/" and default_path("") == "/"
    )


def test_tail_match_never_crosses_a_label_curl_cve_2013_1944() -> None:
    j = jar()
    store(j, "http://ample.test/", "a=1; Domain=ample.test")
    assert header(j, "http://example.test/") is None
    assert header(j, "http://www.ample.test/") == "a=1"


def test_ip_hosts_get_host_only_cookies_curl_cve_2014_3613() -> None:
    j = jar()
    store(j, "http://192.168.0.1/", "a=1; Domain=168.0.1", "b=2; Domain=192.168.0.1", "c=3")
    assert {(c.name, c.host_only) for c in j} == {("b", True), ("c", True)}
    assert header(j, "http://10.192.168.0.1/") is None  # not even a name: never suffix-matched
    assert header(j, "http://192.168.0.1/") == "b=2; c=3"
    store(j, "http://[::1]/", "v6=1; Domain=::1", "w=1; Domain=1")
    assert header(j, "http://[::1]/") == "v6=1"


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("example.com", "com"),
        ("example.com", "com."),
        ("example.com", ".com"),
        ("example.co.uk", "co.uk"),
        ("example.co.uk", ".co.uk"),
        ("curl.co.uk", "co.UK"),  # curl CVE-2023-46218: the lookup is case-insensitive
        ("user.github.io", "github.io"),
        ("example.com.", "com."),  # curl CVE-2026-8924: the trailing-dot super cookie
    ],
)
def test_public_suffix_domains_are_refused_curl_cve_2014_3620_2022_27779(
    host: str, domain: str
) -> None:
    j = jar()
    store(j, f"http://{host}/", f"a=1; Domain={domain}")
    assert len(j) == 0
    assert header(j, "http://other.co.uk/") is None and header(j, "http://other.com/") is None


def test_a_public_suffix_host_may_set_a_host_only_cookie_for_itself() -> None:
    j = jar()
    store(j, "http://github.io/", "a=1; Domain=github.io")
    (c,) = j
    assert c.host_only and header(j, "http://user.github.io/") is None
    assert header(j, "http://github.io/") == "a=1"


def test_trailing_dot_hosts_are_other_hosts() -> None:
    j = jar()
    store(j, "http://example.com./", "a=1; Domain=example.com.", "b=2; Domain=example.com")
    assert [c.name for c in j] == ["a"]
    assert header(j, "http://example.com/") is None
    assert header(j, "http://www.example.com./") == "a=1"


def test_domain_cookies_reach_subdomains_host_only_ones_do_not() -> None:
    j = jar()
    store(j, "http://www.example.test/", "d=1; Domain=example.test", "h=2")
    assert header(j, "http://www.example.test/") == "d=1; h=2"
    assert header(j, "http://api.example.test/") == "d=1"
    assert header(j, "http://example.test/") == "d=1"
    store(j, "http://www.example.test/", "x=1; Domain=api.example.test")  # not its own
    assert j.get("x") is None


def test_idn_domains_are_compared_as_a_labels() -> None:
    j = jar()
    store(j, "http://www.bücher.test/", "a=1; Domain=BÜCHER.test")
    (c,) = j
    assert c.domain == "xn--bcher-kva.test"
    assert header(j, "http://bücher.test/") == "a=1"


# -- secure, prefixes ------------------------------------------------------------------------


def test_secure_cookies_only_over_https() -> None:
    j = jar()
    store(j, "http://a.test/", "s=1; Secure")
    assert len(j) == 0
    store(j, "https://a.test/", "s=1; Secure", "p=2")
    assert header(j, "https://a.test/") == "s=1; p=2"
    assert header(j, "http://a.test/") == "p=2"


def test_http_cannot_shadow_a_secure_cookie() -> None:
    j = jar()
    store(j, "https://a.test/", "s=secret; Secure; Path=/")
    store(j, "http://a.test/", "s=evil", "s=evil; Path=/deeper")
    assert header(j, "https://a.test/deeper/x") == "s=secret"


@pytest.mark.parametrize(
    ("url", "line", "kept"),
    [
        ("https://a.test/", "__Secure-a=1; Secure", True),
        ("https://a.test/", "__Secure-a=1", False),
        ("http://a.test/", "__secure-a=1; Secure", False),
        ("https://a.test/", "__Host-a=1; Secure; Path=/", True),
        ("https://a.test/", "__Host-a=1; Secure", False),  # no Path attribute
        ("https://a.test/", "__Host-a=1; Secure; Path=/x", False),
        ("https://www.a.test/", "__Host-a=1; Secure; Path=/; Domain=www.a.test", False),
        ("http://a.test/", "__HOST-a=1; Secure; Path=/", False),
        ("https://a.test/", "=__Host-a=1; Secure; Path=/x", False),  # nameless look-alike
    ],
)
def test_cookie_prefixes(url: str, line: str, kept: bool) -> None:
    j = jar()
    store(j, url, line)
    assert len(j) == int(kept)


# -- retrieval -------------------------------------------------------------------------------


def test_longest_path_first_then_oldest() -> None:
    j = jar()
    store(j, "http://a.test/x/y", "a=1; Path=/", "b=2; Path=/x", "c=3; Path=/x/y")
    store(j, "http://a.test/", "d=4")
    assert header(j, "http://a.test/x/y/z") == "c=3; b=2; a=1; d=4"
    assert header(j, "http://a.test/other") == "a=1; d=4"


def test_a_replaced_cookie_keeps_its_creation_time() -> None:
    j = jar()
    store(j, "http://a.test/", "a=1", "b=2")
    store(j, "http://a.test/", "a=3")
    assert header(j, "http://a.test/") == "a=3; b=2"


def test_expired_cookies_are_neither_sent_nor_kept() -> None:
    now = [NOW]
    j = CookieJar()
    j._clock = lambda: now[0]
    store(j, "http://a.test/", "a=1; Max-Age=10", "b=2")
    now[0] += 11
    assert header(j, "http://a.test/") == "b=2" and len(j) == 1


# -- bounds ----------------------------------------------------------------------------------


def test_per_site_count_is_bounded_least_recently_used_first_curl_cve_2022_32205() -> None:
    now = [NOW]
    j = CookieJar(max_cookies_per_site=50)
    j._clock = lambda: now[0]
    store(j, "http://www.example.test/", "keep=1; Domain=example.test")
    for i in range(1000):
        now[0] += 1
        if i % 20 == 0:
            header(j, "http://www.example.test/")  # "keep" is used now and then
        store(j, f"http://h{i % 7}.example.test/", f"c{i}={'x' * 4000}; Domain=example.test")
    assert len(j) == 50
    assert j.get("keep") == "1" and j.get("c999") is not None
    # the early ones went, but for the two sent (and so used) along with "keep"
    assert [i for i in range(950) if j.get(f"c{i}") is not None] == [0, 1]
    sent = header(j, "http://www.example.test/")
    assert sent is not None and len(sent) <= 8190  # the header stays sendable
    store(j, "http://other.test/", "o=1")  # another site is not squeezed out
    assert j.get("o") == "1"


def test_total_count_is_bounded() -> None:
    j = jar(max_cookies=100, max_cookies_per_site=10)
    for i in range(500):
        store(j, f"http://site{i}.test/", "a=1", "b=2")
    assert len(j) == 100


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_cookies must be an integer >= 1"):
        CookieJar(max_cookies=0)


# -- the user's API --------------------------------------------------------------------------


def test_set_get_iterate_clear() -> None:
    j = aioduct.CookieJar()
    c = j.set("a", "1", domain="Example.test")
    assert isinstance(c, aioduct.Cookie)
    assert (c.domain, c.path, c.host_only) == ("example.test", "/", False)
    j.set("a", "2", domain="www.example.test", path="/x", host_only=True)
    j.set("b", "3", domain="other.test", secure=True, http_only=True, same_site="Strict")
    assert j.get("a") == "2"  # the most specific
    assert j.get("a", domain="example.test") == "1"
    assert j.get("a", path="/") == "1" and j.get("nope") is None
    assert j.header_for(URL("http://www.example.test/x")) == "a=2; a=1"
    assert sorted(c.name for c in j) == ["a", "a", "b"] and len(j) == 3
    j.clear(domain="example.test")  # and its subdomains
    assert [c.name for c in j] == ["b"]
    j.clear()
    assert len(j) == 0 and list(j) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "a;b", "value": "1"}, "may not contain"),
        ({"name": "a", "value": "x\ny"}, "may not contain"),
        ({"name": "a", "value": "€"}, "U\\+00FF"),
        ({"name": "a", "value": "x" * 5000}, "more than 4096"),
        ({"name": "a", "value": "1", "domain": "co.uk"}, "public suffix"),
        ({"name": "a", "value": "1", "path": "x"}, "path start with '/'"),
        ({"name": "__Host-a", "value": "1"}, "__Host- cookie"),
        ({"name": "a", "value": "1", "same_site": "sometimes"}, "same_site must be"),
        ({"name": "a", "value": "1", "expires": 1.0}, "in the past"),
    ],
)
def test_set_refuses_what_a_server_could_not_set(kwargs: dict[str, object], message: str) -> None:
    kwargs.setdefault("domain", "example.test")
    with pytest.raises(ValueError, match=message):
        aioduct.CookieJar().set(**kwargs)  # type: ignore[arg-type]


def test_jar_is_thread_safe() -> None:
    j = CookieJar(max_cookies=200, max_cookies_per_site=20)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(300):
                store(j, f"http://h{i % 5}.s{n}.test/", f"c{i}=v; Domain=s{n}.test", f"h{i}=1")
                header(j, f"http://h{i % 5}.s{n}.test/")
                if i % 50 == 0:
                    list(j)
                    j.clear(domain=f"s{(n + 1) % 4}.test")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(j) == sum(1 for _ in j) <= 200
    assert all(count <= 20 for count in j._sites.values())


# -- cookies.txt -----------------------------------------------------------------------------


def test_save_load_round_trip_keeps_every_flag_aiohttp_cve_2026_54279(tmp_path: Path) -> None:
    j = jar()
    store(j, "https://www.a.test/", "d=1; Domain=a.test; Secure; HttpOnly; SameSite=Strict")
    store(j, "https://www.a.test/p/q", "h=2; Max-Age=3600; SameSite=None; Secure")
    store(j, "http://127.0.0.1/", "ip=3")
    path = tmp_path / "cookies.txt"
    j.save(path)
    loaded = jar()
    assert loaded.load(path) == 3
    assert sorted(map(repr, loaded)) == sorted(map(repr, j))
    assert loaded.header_for(URL("https://api.a.test/")) == "d=1"
    assert loaded.header_for(URL("https://a.test/p")) == "d=1"  # h is host-only
    assert loaded.header_for(URL("https://www.a.test/p/x")) == "h=2; d=1"


def test_saved_file_is_private_curl_cve_2022_32207(tmp_path: Path) -> None:
    j = jar()
    j.set("a", "1", domain="a.test")
    path = tmp_path / "c.txt"
    path.write_text("old")
    os.chmod(path, 0o644)
    j.save(path)  # replaced, not rewritten in place with the old mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "a.test\tTRUE\t/\tFALSE\t0\ta\t1" in path.read_text()


def test_loads_curl_and_wget_files(tmp_path: Path) -> None:
    far = int(NOW) + 3600
    path = tmp_path / "curl.txt"
    path.write_text(
        "# Netscape HTTP Cookie File\n"
        "# https://curl.se/docs/http-cookies.html\n"
        "\n"
        f".example.test\tTRUE\t/\tFALSE\t{far}\tdom\t1\n"
        f"#HttpOnly_www.example.test\tFALSE\t/app\tTRUE\t{far}\tho\t2\n"
        "www.example.test\tFALSE\t/\tFALSE\t0\tsession\t3\r\n"
        f"www.example.test\tFALSE\t/\tFALSE\t{far}\tempty\n"  # curl's 6 fields: no value
        "www.example.test\tFALSE\t/\tFALSE\t1\told\tgone\n"  # expired
        f".co.uk\tTRUE\t/\tFALSE\t{far}\tsuper\tcookie\n"  # a public suffix
        f"a.test\tTRUE\t/\tFALSE\t{far}\tbad\tx\x07y\n"  # a control character
        "not a cookie line\n"
        f"a.test\tTRUE\t/\tFALSE\tsoon\tn\tv\n",  # a bad expiry
        encoding="utf-8",
    )
    j = jar()
    assert j.load(path) == 4
    by_name = {c.name: c for c in j}
    assert sorted(by_name) == ["dom", "empty", "ho", "session"]
    assert by_name["ho"].http_only and by_name["ho"].secure and by_name["ho"].host_only
    assert not by_name["dom"].host_only and by_name["session"].expires is None
    assert j.header_for(URL("https://www.example.test/app/x")) == "ho=2; dom=1; session=3; empty="


def test_a_long_line_is_dropped_never_split_curl_cve_2016_8615(tmp_path: Path) -> None:
    far = int(NOW) + 3600
    path = tmp_path / "long.txt"
    # A reader that cut lines at a buffer's size would read the tail as a line of its own.
    evil = f"{'A' * (16 * 1024 - 30)}.victim.test\tTRUE\t/\tFALSE\t{far}\tinjected\t1"
    path.write_text(
        f"a.test\tFALSE\t/\tFALSE\t{far}\tbig\t{evil}\n"
        f"a.test\tFALSE\t/\tFALSE\t{far}\tfine\t{'v' * 4000}\n"
        f"a.test\tFALSE\t/\tFALSE\t{far}\ttoo_big\t{'v' * 20000}\n"
    )
    j = jar()
    j.load(path)
    assert [c.name for c in j] == ["fine"]
    assert j.header_for(URL("http://victim.test/")) is None


def test_loading_is_never_implicit_and_never_unpickles_curl_cve_2023_38546(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "none").write_text("a.test\tFALSE\t/\tFALSE\t0\tfrom_file\t1\n")
    client = aioduct.BlockingClient()
    try:
        assert client.cookies is not None and len(client.cookies) == 0
    finally:
        client.close()
    import pickle

    (tmp_path / "jar.pickle").write_bytes(pickle.dumps({"a": 1}))
    assert CookieJar().load(tmp_path / "jar.pickle") == 0  # text lines only, none valid
