"""The NO_PROXY matcher, table-driven: names, suffixes on label boundaries, ``*``,
addresses in every spelling, CIDR ranges, ports -- and the near misses that must not
match (each a way to send a request direct, or through the proxy, against the rules)."""

from __future__ import annotations

import pytest

from aioduct.noproxy import NoProxy

# (NO_PROXY value, host, port, goes direct?)
TABLE: list[tuple[str, str, int, bool]] = [
    # empty and blank values match nothing
    ("", "example.org", 80, False),
    (" , ,, ", "example.org", 80, False),
    # * alone matches everything; inside a name it is not a wildcard
    ("*", "example.org", 80, True),
    ("*", "10.1.2.3", 443, True),
    ("*", "::1", 443, True),
    ("localhost, *", "example.org", 80, True),
    ("ex*.org", "example.org", 80, False),
    ("*example.org", "badexample.org", 80, False),
    # exact names, case and trailing dots
    ("example.org", "example.org", 80, True),
    ("example.org", "EXAMPLE.ORG", 80, True),
    ("EXAMPLE.org", "example.org", 80, True),
    ("example.org", "example.org.", 80, True),
    ("example.org.", "example.org", 80, True),
    ("localhost", "localhost", 8080, True),
    ("localhost", "127.0.0.1", 80, False),  # names are not resolved
    # suffixes match on label boundaries only
    ("example.org", "www.example.org", 80, True),
    ("example.org", "a.b.example.org", 80, True),
    ("example.org", "badexample.org", 80, False),
    ("example.org", "example.org.evil.com", 80, False),
    ("example.org", "example.orgx", 80, False),
    ("example.org", "xexample.org", 80, False),
    ("example.org", "org", 80, False),
    (".example.org", "www.example.org", 80, True),
    (".example.org", "example.org", 80, True),  # curl and urllib: the dot is ignored
    (".example.org", "badexample.org", 80, False),
    ("*.example.org", "www.example.org", 80, True),
    ("*.example.org", "badexample.org", 80, False),
    ("org", "example.org", 80, True),
    ("corp", "intranet.corp", 80, True),
    ("corp", "intranetcorp", 80, False),
    # lists: commas and/or whitespace
    ("foo.com,example.org", "example.org", 80, True),
    ("foo.com example.org", "www.example.org", 80, True),
    ("foo.com ,\t bar.com", "example.org", 80, False),
    # IPv4 addresses: exact, never a prefix or a name suffix
    ("127.0.0.1", "127.0.0.1", 80, True),
    ("127.0.0.1", "127.0.0.10", 80, False),
    ("127.0.0.1", "127.0.0.1.example.org", 80, False),
    ("10.0.0.1", "110.0.0.1", 80, False),
    ("0.0.1", "10.0.0.1", 80, False),
    # other spellings of an IPv4 literal are the same address
    ("127.0.0.1", "2130706433", 80, True),
    ("127.0.0.1", "0x7f.1", 80, True),
    ("127.0.0.1", "127.1", 80, True),
    ("127.0.0.1", "0177.0.0.1", 80, True),
    ("127.0.0.1", "::ffff:127.0.0.1", 80, True),
    ("127.0.0.1", "::ffff:7f00:1", 80, True),
    ("127.0.0.1", "1234", 80, False),
    # IPv6 addresses, bracketed or not, in any spelling
    ("::1", "::1", 80, True),
    ("[::1]", "::1", 80, True),
    ("::1", "0:0:0:0:0:0:0:1", 80, True),
    ("0:0::1", "::1", 80, True),
    ("::1", "[::1]", 80, True),
    ("::1", "::2", 80, False),
    ("fe80::1", "FE80::1", 80, True),
    ("::1", "127.0.0.1", 80, False),
    # CIDR ranges
    ("10.0.0.0/8", "10.1.2.3", 80, True),
    ("10.0.0.0/8", "11.0.0.1", 80, False),
    ("10.0.0.0/8", "10.example.org", 80, False),  # a name is not an address
    ("192.168.1.0/24", "192.168.1.255", 80, True),
    ("192.168.1.0/24", "192.168.2.1", 80, False),
    ("192.168.1.7/24", "192.168.1.200", 80, True),  # host bits ignored, as curl
    ("127.0.0.0/8", "2130706433", 80, True),
    ("0.0.0.0/0", "8.8.8.8", 80, True),
    ("0.0.0.0/0", "::1", 80, False),
    ("::1/128", "::1", 80, True),
    ("::1/128", "::2", 80, False),
    ("fc00::/7", "fd12:3456::1", 443, True),
    ("fc00::/7", "fe80::1", 443, False),
    ("10.0.0.0/8", "::ffff:10.9.9.9", 80, True),
    ("10.0.0.0/33", "10.0.0.1", 80, False),  # invalid: ignored
    ("10.0.0.0/x", "10.0.0.1", 80, False),
    # ports
    ("example.org:8080", "example.org", 8080, True),
    ("example.org:8080", "example.org", 80, False),
    ("example.org:8080", "www.example.org", 8080, True),
    ("127.0.0.1:8080", "127.0.0.1", 8080, True),
    ("127.0.0.1:8080", "127.0.0.1", 8081, False),
    ("[::1]:8443", "::1", 8443, True),
    ("[::1]:8443", "::1", 443, False),
    ("10.0.0.0/8:443", "10.0.0.1", 443, True),
    ("10.0.0.0/8:443", "10.0.0.1", 80, False),
    ("example.org:0", "example.org", 80, False),  # invalid port: ignored
    ("example.org:99999", "example.org", 80, False),
    ("example.org:abc", "example.org", 80, False),
    ("[::1", "::1", 80, False),
    # mixtures
    ("localhost,.corp,10.0.0.0/8,::1", "db.corp", 5432, True),
    ("localhost,.corp,10.0.0.0/8,::1", "10.200.0.1", 5432, True),
    ("localhost,.corp,10.0.0.0/8,::1", "example.org", 443, False),
    ("localhost,.corp,10.0.0.0/8,::1", "::1", 443, True),
    # IDNA names compare in their ASCII form
    ("xn--bcher-kva.example", "xn--bcher-kva.example", 80, True),
    ("example", "xn--bcher-kva.example", 80, True),
]


@pytest.mark.parametrize(("value", "host", "port", "direct"), TABLE)
def test_no_proxy_table(value: str, host: str, port: int, direct: bool) -> None:
    assert NoProxy(value).matches(host, port) is direct


def test_truthiness_and_repr() -> None:
    assert not NoProxy(None)
    assert not NoProxy(" , ")
    assert NoProxy("*")
    assert NoProxy("a.b")
    assert repr(NoProxy("a.b")) == "NoProxy('a.b')"
