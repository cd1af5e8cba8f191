"""``aioduct crawl``'s curl-named DNS and TLS flags: --resolve, --doh-url, --pinnedpubkey,
--tlsv1.3, --ca-native, on the send engine and in local-engine workers."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from aioduct import uring
from aioduct.cli.crawl import UsageError, parse_resolve
from aioduct.testing.dnsserver import Zone, serve_doh
from aioduct.testing.nginx import Nginx, TLSMaterial
from aioduct.testing.server import ScriptServer
from aioduct.tls import spki_sha256

from .conftest import aioduct as run_cli
from .conftest import results, write_urls


def crawl_one(urls: list[str], tmp_path: Path, *args: str, **env: str) -> dict[str, object]:
    source = write_urls(tmp_path / "urls.txt", urls)
    out = tmp_path / "out.jsonl"
    ran = run_cli("crawl", str(source), "-o", str(out), *args, **env)
    assert ran.code == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    (line,) = results(out)
    out.unlink()
    return line


@pytest.fixture
def engine_flag(request: pytest.FixtureRequest) -> str:
    if request.param == "local" and (reason := uring.unavailable_reason()) is not None:
        pytest.skip(reason)
    return str(request.param)


def pin_of(tls_ca: TLSMaterial) -> str:
    pem = Path(tls_ca.files.cert_chain_pem).read_text()
    return spki_sha256(ssl.PEM_cert_to_DER_cert(pem[: pem.index("-----END") + 25]))


@pytest.mark.parametrize("engine_flag", ["send", "local"], indirect=True)
def test_resolve_pin_and_version_flags(
    engine_flag: str, nginx: Nginx, tls_ca: TLSMaterial, tmp_path: Path
) -> None:
    port = nginx.https_url.rsplit(":", 1)[1]
    common = ["--engine", engine_flag, "--cacert", tls_ca.ca_pem_path, "--tlsv1.3"]
    common += ["--resolve", f"alt.localhost:{port}:127.0.0.1"]
    url = f"https://alt.localhost:{port}/small"
    good = crawl_one([url], tmp_path, *common, "--pinnedpubkey", f"sha256//{pin_of(tls_ca)}")
    assert good["status"] == 200
    bad = crawl_one([url], tmp_path, *common, "--pinnedpubkey", "sha256//" + "A" * 43 + "=")
    assert bad["error"]["kind"] == "TLSError"  # type: ignore[index]
    assert "pinned_sha256" in bad["error"]["message"]  # type: ignore[index]


def test_doh_url_flag(tls_ca: TLSMaterial, tmp_path: Path) -> None:
    with ScriptServer() as origin, ScriptServer(tls=tls_ca.server_ssl_context()) as doh:
        origin.route_respond("/", body=b"hi")
        zone = Zone({"app.test": ["127.0.0.1"]})
        url = serve_doh(doh, zone)
        line = crawl_one(
            [f"http://app.test:{origin.port}/"],
            tmp_path,
            "--engine",
            "send",
            "--doh-url",
            url,
            "--cacert",
            tls_ca.ca_pem_path,
        )
        assert line["status"] == 200 and ("app.test", "A") in zone.queries


def test_ca_native_flag(nginx: Nginx, tls_ca: TLSMaterial, tmp_path: Path) -> None:
    url = nginx.https_url + "/small"
    native = crawl_one(
        [url], tmp_path, "--engine", "send", "--ca-native", SSL_CERT_FILE=tls_ca.ca_pem_path
    )
    assert native["status"] == 200
    ran = run_cli("crawl", "-", "-o", str(tmp_path / "o"), "--ca-native", "-k", stdin=url)
    assert ran.code != 0 and "--ca-native" in ran.stderr


def test_parse_resolve() -> None:
    assert parse_resolve(["a.test:443:127.0.0.1", "b.test:*:[::1],127.0.0.2"]) == {
        "a.test:443": "127.0.0.1",
        "b.test": "::1,127.0.0.2",
    }
    for bad in ("a.test:443", "a.test:x:1.2.3.4", ":443:1.2.3.4"):
        with pytest.raises(UsageError, match="--resolve"):
            parse_resolve([bad])
