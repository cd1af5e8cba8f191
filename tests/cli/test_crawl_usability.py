"""``aioduct crawl`` as a curl user drives it: flags, bad paths, odd input, no tracebacks.

Every case runs the command in a subprocess, as a user runs it.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

import msgspec
import pytest

import aioduct
from aioduct import uring
from aioduct.cli import crawl
from aioduct.testing.nginx import SMALL_BODY, Nginx, TLSMaterial
from aioduct.testing.origin import OriginProcess
from aioduct.tls import CA_BUNDLE_VARIABLES

from .conftest import aioduct as run_cli
from .conftest import results, write_urls


def by_id(out: Path) -> dict[int, dict[str, object]]:
    return {int(line["id"]): line for line in results(out)}  # type: ignore[call-overload]


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


def test_a_journal_in_a_missing_directory_is_refused_before_anything_is_written(
    nginx: Nginx, tmp_path: Path
) -> None:
    source = write_urls(tmp_path / "urls.txt", [nginx.http_url + "/small"])
    out = tmp_path / "out.jsonl"
    ran = run_cli("crawl", str(source), "-o", str(out), "--journal", str(tmp_path / "jdir/j"))
    assert ran.code == 1
    assert_no_traceback(ran.stderr)
    assert f"the journal {tmp_path / 'jdir/j'} is in {tmp_path / 'jdir'}" in ran.stderr
    assert "mkdir -p" in ran.stderr
    assert not out.exists()


def test_a_line_that_is_not_utf8_is_an_error_result_not_the_end(
    nginx: Nginx, tmp_path: Path
) -> None:
    source = tmp_path / "urls.txt"
    good = nginx.http_url + "/small"
    source.write_bytes(f"{good}\n".encode() + b"http://127.0.0.1/caf\xe9\n" + f"{good}\n".encode())
    out = tmp_path / "out.jsonl"
    ran = run_cli("crawl", str(source), "-o", str(out), "--engine", "send")
    assert ran.code == 0, ran.stderr
    lines = by_id(out)
    assert lines[0]["status"] == 200 and lines[2]["status"] == 200
    assert lines[1]["status"] == 0 and lines[1]["url"] == "http://127.0.0.1/caf\\xe9"
    assert lines[1]["error"] == {
        "kind": "InvalidURL",
        "message": f"line 2 of {source} is not UTF-8 (unexpected end of data at byte 20), "
        "so it cannot be a URL",
    }


def test_blank_lines_whitespace_and_crlf_are_skipped(nginx: Nginx, tmp_path: Path) -> None:
    source = tmp_path / "urls.txt"
    source.write_bytes(
        f"\r\n{nginx.http_url}/small\r\n  \t \r\n\n# note\n{nginx.alt_http_url}/small\r\n".encode()
    )
    out = tmp_path / "out.jsonl"
    ran = run_cli("crawl", str(source), "-o", str(out), "--engine", "send")
    assert ran.code == 0, ran.stderr
    assert sorted((i, line["status"]) for i, line in by_id(out).items()) == [(0, 200), (1, 200)]


def test_resume_with_another_input_is_refused_unless_forced(
    origin: OriginProcess, tmp_path: Path
) -> None:
    first = write_urls(tmp_path / "a.txt", [f"{origin.urls[0]}/page/{i}" for i in range(5)])
    other = write_urls(tmp_path / "b.txt", [f"{origin.urls[0]}/page/{i}" for i in range(5, 12)])
    out, journal = tmp_path / "out.jsonl", tmp_path / "out.jsonl.journal"
    # An interrupted crawl of a.txt: two lines written, the journal names a.txt.
    out.write_bytes(b"".join(line + b"\n" for line in out_lines(first, 2)))
    crawl._resume.write_checkpoint(journal, crawl._resume.Progress(2).checkpoint(0, str(first)))

    ran = run_cli("crawl", str(other), "-o", str(out), "--resume", "--engine", "send")
    assert ran.code == 1
    assert f"{out} is a crawl of {first}, not of {other}" in ran.stderr
    assert "--force" in ran.stderr
    assert len(results(out)) == 2  # untouched

    ran = run_cli("crawl", str(other), "-o", str(out), "--resume", "--force", "--engine", "send")
    assert ran.code == 0, ran.stderr
    assert "--force: assuming" in ran.stderr
    assert sorted(by_id(out)) == list(range(7))


def out_lines(source: Path, count: int) -> list[bytes]:
    urls = source.read_text().split()
    return [
        msgspec.json.encode(aioduct.Result(id=i, url=urls[i], status=299)) for i in range(count)
    ]


def test_a_finished_crawl_leaves_no_journal(nginx: Nginx, tmp_path: Path) -> None:
    source = write_urls(tmp_path / "urls.txt", [nginx.http_url + "/small"])
    out, journal = tmp_path / "out.jsonl", tmp_path / "j.journal"
    ran = run_cli("crawl", str(source), "-o", str(out), "--journal", str(journal))
    assert ran.code == 0, ran.stderr
    assert not journal.exists() and not Path(f"{journal}.tmp").exists()
    assert len(results(out)) == 1
    ran = run_cli("crawl", str(source), "-o", str(out), "--resume")  # nothing left to do
    assert ran.code == 0 and "1 URLs done" in ran.stderr and "0 results" in ran.stderr


def test_only_lines_with_a_body_get_a_body_path(nginx: Nginx, tmp_path: Path) -> None:
    urls = [nginx.http_url + "/small", nginx.http_url + "/status/204"]
    out, bodies = tmp_path / "out.jsonl", tmp_path / "bodies"
    ran = run_cli(
        "crawl", str(write_urls(tmp_path / "u", urls)), "-o", str(out), "--save-bodies",
        str(bodies), "--engine", "send",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    lines = by_id(out)
    assert Path(str(lines[0]["body_path"])).read_bytes() == SMALL_BODY
    assert lines[1]["status"] == 204 and "body_path" not in lines[1]
    assert sorted(p.name for p in bodies.rglob("*") if p.is_file()) == ["0"]


@pytest.fixture
def https_urls(nginx: Nginx, tmp_path: Path) -> Path:
    return write_urls(tmp_path / "https.txt", [nginx.https_url + "/small"])


def crawl_one(source: Path, out: Path, *args: str, **env: str) -> dict[str, object]:
    ran = run_cli("crawl", str(source), "-o", str(out), "--engine", "send", *args, **env)
    assert ran.code == 0, ran.stderr
    assert_no_traceback(ran.stderr)
    out.with_name(out.name + ".journal").unlink(missing_ok=True)
    (line,) = results(out)
    out.unlink()
    return line


def test_cacert_insecure_and_ca_bundle_variables(
    https_urls: Path, tls_ca: TLSMaterial, tmp_path: Path
) -> None:
    out, ca = tmp_path / "out.jsonl", str(tls_ca.ca_pem_path)
    # This machine's environment may name a system bundle in any of them already.
    unset = {name: "" for name in CA_BUNDLE_VARIABLES}
    untrusted = crawl_one(https_urls, out, **unset)
    assert untrusted["error"]["kind"] == "TLSError"  # type: ignore[index]
    assert "--cacert ca.pem" in untrusted["error"]["message"]  # type: ignore[index]
    assert crawl_one(https_urls, out, "--cacert", ca)["status"] == 200
    assert crawl_one(https_urls, out, "-k")["status"] == 200
    assert crawl_one(https_urls, out, "--insecure")["status"] == 200
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        assert crawl_one(https_urls, out, **{**unset, variable: ca})["status"] == 200, variable
    missing = crawl_one(https_urls, out, **{**unset, "SSL_CERT_FILE": str(tmp_path / "no.pem")})
    assert "SSL_CERT_FILE=" in missing["error"]["message"]  # type: ignore[index]
    ran = run_cli("crawl", str(https_urls), "-o", str(out), "--cacert", str(tmp_path / "no"))
    assert ran.code == 1 and "--cacert" in ran.stderr and not out.exists()


def test_trust_env_false_ignores_the_ca_bundle_variables(
    nginx: Nginx, tls_ca: TLSMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in CA_BUNDLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_ca.ca_pem_path))
    assert aioduct.get(nginx.https_url + "/small").content == SMALL_BODY
    with pytest.raises(aioduct.TLSError, match="not signed by a trusted CA"):
        aioduct.get(nginx.https_url + "/small", trust_env=False)


def test_curl_style_request_flags(nginx: Nginx, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"

    def one(url: str, *args: str) -> dict[str, object]:
        return crawl_one(write_urls(tmp_path / "u.txt", [url]), out, "--include-body", *args)

    echo = one(nginx.http_url + "/echo/headers", "-A", "examplebot/1.0", "--header", "X-Test: 1")

    text = base64.b64decode(str(echo["body"])).decode()
    assert "user-agent: examplebot/1.0\n" in text and "x-test: 1\n" in text
    assert (
        "examplebot/2"
        in base64.b64decode(
            str(one(nginx.http_url + "/echo/headers", "--user-agent", "examplebot/2")["body"])
        ).decode()
    )
    assert one(nginx.http_url + "/chain/3", "--max-redirects", "1")["error"]["kind"] == (  # type: ignore[index]
        "TooManyRedirects"
    )
    assert one(nginx.http_url + "/chain/3", "--max-redirects", "3")["status"] == 200
    redirect = one(nginx.http_url + "/redirect/302/small", "--no-follow")
    assert redirect["status"] == 302
    assert one(nginx.h2c_url + "/small", "--http2-prior-knowledge")["http_version"] == "HTTP/2"
    assert one(nginx.http_url + "/small", "--connect-timeout", "5")["status"] == 200


def test_connect_timeout_and_friends_reach_the_engine(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    crawl.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["crawl", "u.txt", "-o", "o", "--engine", "send", "--connect-timeout", "2.5", "-k",
         "--max-redirects", "4", "--http2-prior-knowledge", "-A", "bot"]
    )  # fmt: skip
    kind, options, _ = crawl.plan_engine(args)
    engine, _ = crawl.build_engine(kind, options)
    config = engine.config
    assert (config.connect_timeout, config.verify, config.max_redirects) == (2.5, False, 4)
    assert config.http2_prior_knowledge and ("User-Agent", "bot") in config.headers


def test_every_flag_has_help_and_version_prints() -> None:
    parser = argparse.ArgumentParser()
    sub = crawl.add_parser(parser.add_subparsers())
    for action in sub._actions:
        assert action.help, f"{action.option_strings or action.dest} has no help"
    ran = run_cli("--version")
    assert ran.code == 0 and ran.stdout.strip() == f"aioduct {aioduct.__version__}"


def test_an_unknown_flag_prints_the_crawl_usage(tmp_path: Path) -> None:
    ran = run_cli("crawl", "urls.txt", "-o", "out.jsonl", "--data-binary", "x", cwd=tmp_path)
    assert ran.code == 1
    assert ran.stderr.startswith("usage: aioduct crawl ")
    assert "aioduct crawl: error: unrecognized arguments: --data-binary x" in ran.stderr


def test_engine_auto_runs_a_short_list_in_this_process(
    origin: OriginProcess, tmp_path: Path
) -> None:
    source = write_urls(tmp_path / "urls.txt", [f"{origin.urls[0]}/page/{i}" for i in range(17)])
    out = tmp_path / "out.jsonl"
    ran = run_cli("crawl", str(source), "-o", str(out))
    assert ran.code == 0, ran.stderr
    assert "send engine (auto: 17 URLs, too few to start worker processes)" in ran.stderr
    assert {line["worker"] for line in results(out)} == {-1}


@pytest.mark.skipif(not uring.is_available(), reason=uring.unavailable_reason() or "")
def test_engine_auto_starts_workers_for_a_long_or_unknown_list(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    crawl.add_parser(parser.add_subparsers())
    long = write_urls(tmp_path / "long.txt", [f"http://a{i}.test/" for i in range(1000)])
    for source in (str(long), "-"):
        kind, _, why = crawl.plan_engine(parser.parse_args(["crawl", source, "-o", "o"]))
        assert (kind, why) == ("local", ""), source
