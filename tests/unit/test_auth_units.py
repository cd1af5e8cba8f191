"""Pure parts of authentication: Digest computations (RFC vectors), challenge parsing,
the netrc parser, well-known URLs."""

from __future__ import annotations

import hashlib

import pytest

import aioduct
from aioduct.digest import Challenge, DigestAuth, digest_response, parse_challenges
from aioduct.headers import Headers
from aioduct.models import Request, Response
from aioduct.netrc import Netrc, NetrcParseError, load_netrc
from aioduct.well_known import well_known_url

# RFC 7616 §3.9.1 (see /work/shared/reference/reliability.md 3.6).
RFC7616 = dict(
    username="Mufasa",
    password="Circle of Life",
    realm="http-auth@example.org",
    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    method="GET",
    uri="/dir/index.html",
    qop="auth",
    nc="00000001",
    cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
)
OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_rfc7616_md5_vector() -> None:
    assert digest_response(algorithm="MD5", **RFC7616) == "8ca523f5e9506fed4657c9700eebdbec"


def test_rfc7616_sha256_vector() -> None:
    assert (
        digest_response(algorithm="SHA-256", **RFC7616)
        == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )


def test_rfc2617_vector() -> None:
    got = digest_response(
        algorithm="MD5", username="Mufasa", password="Circle Of Life",
        realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET", uri="/dir/index.html", qop="auth", nc="00000001", cnonce="0a4f113b",
    )  # fmt: skip
    assert got == "6629fae49393a05397450978507c4ef1"


def test_sess_and_auth_int_by_definition() -> None:
    """-sess and auth-int against RFC 7616 §3.4.2/§3.4.3 written out with hashlib."""

    def h(s: str | bytes) -> str:
        return hashlib.sha256(s.encode() if isinstance(s, str) else s).hexdigest()

    v = RFC7616
    user, realm, password = v["username"], v["realm"], v["password"]
    ha1 = h(f"{h(f'{user}:{realm}:{password}')}:{v['nonce']}:{v['cnonce']}")
    ha2 = h(f"POST:{v['uri']}:{h(b'body')}")
    want = h(f"{ha1}:{v['nonce']}:{v['nc']}:{v['cnonce']}:auth-int:{ha2}")
    got = digest_response(
        **{**v, "method": "POST", "qop": "auth-int"}, algorithm="SHA-256-sess", body=b"body"
    )
    assert got == want


def test_sha512_256_userhash_format() -> None:
    """RFC 7616 §3.9.2's printed vector is disputed (reliability.md 3.6): check the
    form -- userhash is H(user:realm), HA1 uses the plain user name."""
    user, realm = "J\u00e4s\u00f8n Doe", "api@example.org"
    userhash = hashlib.new("sha512_256", f"{user}:{realm}".encode()).hexdigest()
    assert len(userhash) == 64
    auth = DigestAuth(user, "Secret, or not?")
    auth.cnonce = lambda: "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v"
    challenge = Challenge(
        {"realm": realm, "nonce": "5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK",
         "algorithm": "SHA-512-256", "qop": "auth", "userhash": "true", "opaque": OPAQUE}
    )  # fmt: skip
    request = Request("GET", "http://api.example.org/doe.json")
    sent = auth._authorize(request, challenge)
    assert sent is not None
    value = sent.headers["authorization"]
    assert f'username="{userhash}"' in value and "userhash=true" in value
    assert "algorithm=SHA-512-256" in value and "nc=00000001" in value
    want = digest_response(
        algorithm="SHA-512-256", username=user, password="Secret, or not?", realm=realm,
        nonce=challenge.nonce, method="GET", uri="/doe.json", qop="auth", nc="00000001",
        cnonce="NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
    )  # fmt: skip
    assert f'response="{want}"' in value
    assert request.headers.get("authorization") is None  # the caller's request untouched


def test_rfc7616_header_from_the_example_challenge() -> None:
    auth = DigestAuth("Mufasa", "Circle of Life")
    auth.cnonce = lambda: RFC7616["cnonce"]
    challenge = Challenge(
        {"realm": RFC7616["realm"], "qop": "auth, auth-int", "algorithm": "SHA-256",
         "nonce": RFC7616["nonce"], "opaque": OPAQUE}
    )  # fmt: skip
    sent = auth._authorize(Request("GET", "http://www.example.org/dir/index.html"), challenge)
    assert sent is not None
    value = sent.headers["authorization"]
    assert 'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"' in value
    assert f'opaque="{OPAQUE}"' in value and "qop=auth," in value
    again = auth._authorize(Request("GET", "http://www.example.org/dir/index.html"), challenge)
    assert again is not None and "nc=00000002" in again.headers["authorization"]


def test_parse_challenges() -> None:
    got = parse_challenges(
        [
            'Basic realm="simple", Digest realm="a, b", nonce="n\\"1", qop="auth,auth-int", '
            "algorithm=SHA-256",
            "Bearer, Digest realm=x, realm=y, nonce=z",  # a parameter twice: dropped
            'Newauth realm=apps, type=1,  title="Login to \\"apps\\"", Basic realm=\'x\'',
        ]
    )
    assert got == [
        ("basic", {"realm": "simple"}),
        ("digest", {"realm": "a, b", "nonce": 'n"1', "qop": "auth,auth-int",
                    "algorithm": "SHA-256"}),
        ("bearer", {}),
        ("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
        ("basic", {"realm": "'x'"}),
    ]  # fmt: skip
    assert parse_challenges(["", ",,,", '"', "=", "Digest ="]) == [("digest", {})]


@pytest.mark.parametrize(
    "params",
    [
        {"nonce": "n"},  # no realm
        {"realm": "r"},  # no nonce
        {"realm": "r", "nonce": "n", "algorithm": "SHA-1"},
        {"realm": "r", "nonce": "n", "qop": "auth-conf"},
    ],
)
def test_unanswerable_challenges(params: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Challenge(params)


async def test_401_from_elsewhere_is_not_answered() -> None:
    """The layer itself refuses a 401 whose URL is not the one it sent to."""
    calls: list[Request] = []

    async def transport(request: Request) -> Response:
        calls.append(request)
        r = Response(
            401,
            headers=Headers([("WWW-Authenticate", 'Digest realm="r", nonce="n", qop="auth"')]),
            content=b"",
            request=request,
        )
        r.url = aioduct.URL("http://elsewhere.test/")
        return r

    r = await DigestAuth("u", "p")(Request("GET", "http://here.test/"), transport)
    assert r.status == 401 and len(calls) == 1


# -- netrc ----------------------------------------------------------------------------------


def test_netrc_grammar() -> None:
    n = Netrc(
        "# a comment\n"
        "machine Example.COM. login u1 password p1\n"
        "machine example.com login shadowed password x\n"
        'machine q.test login "sp ace" password "a\\"b"\n'
        "macdef init\n  cd /pub\n  machine evil.test login e password e\n\n"
        "machine other.test login o passwd op account acc\n"
        "default login anon password guest\n"
    )
    assert n.lookup("example.com") is not None
    assert repr(n.lookup("example.com")) == "BasicAuth('u1', '[secure]')"
    assert n.lookup("EXAMPLE.com.")._value == aioduct.BasicAuth("u1", "p1")._value  # type: ignore[union-attr]
    assert n.lookup("q.test")._value == aioduct.BasicAuth("sp ace", 'a"b')._value  # type: ignore[union-attr]
    assert n.lookup("other.test")._value == aioduct.BasicAuth("o", "op")._value  # type: ignore[union-attr]
    assert n.lookup("evil.test")._value == aioduct.BasicAuth("anon", "guest")._value  # type: ignore[union-attr]
    assert "evil.test" not in n.machines  # it was inside a macro


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('machine h login u password "open', "line 1: unterminated quote"),
        ("machine h login u\x00 password p", "line 1: NUL byte"),
        ("machine h login u password " + "x" * 5000, "longer than 4 KiB"),
        ("machine h login", "'login' without a value"),
        ("login u password p", "before any 'machine'"),
        ("machine h\n\nfrobnicate 1", "line 3: unknown keyword 'frobnicate'"),
        ("machine", "'machine' without a name"),
    ],
)
def test_netrc_malformed(text: str, message: str) -> None:
    """curl CVE-2022-35260: a malformed file is an error with a line, never a crash."""
    with pytest.raises(NetrcParseError, match=message):
        Netrc(text, path="f")


def test_netrc_macdef_without_blank_line_and_huge_lines(tmp_path: object) -> None:
    assert Netrc("machine h login u password p\nmacdef x\n cmd1\n cmd2").lookup("h") is not None
    Netrc("#" + "c" * 100_000 + "\nmachine h login u password p")  # a long comment is fine


def test_load_netrc_missing_and_oversized(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    assert load_netrc(str(base / "absent")) is None
    big = base / "big"
    big.write_bytes(b"#" * (2 << 20))
    assert load_netrc(str(big)) is None and "larger than 1 MiB" in caplog.text


# -- .well-known ----------------------------------------------------------------------------


def test_well_known_url() -> None:
    assert str(well_known_url("https://example.org/a/b?c#d", "security.txt")) == (
        "https://example.org/.well-known/security.txt"
    )
    assert str(well_known_url("http://h:8080", "openid-configuration")) == (
        "http://h:8080/.well-known/openid-configuration"
    )


@pytest.mark.parametrize(
    "name", ["", ".", "..", "...", "a/b", "../etc", "a%2Fb", "a\\b", "x?y", "x#y", "sp ace", "é"]
)
def test_well_known_refuses_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid well-known name"):
        well_known_url("https://example.org", name)
