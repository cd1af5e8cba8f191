"""``aioduct crawl`` on the local engine: lines encoded and bodies saved by the workers."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from aioduct import uring
from aioduct.testing.nginx import Nginx, deterministic_bytes
from aioduct.testing.origin import OriginProcess, page_body

from .conftest import aioduct, results, write_urls

pytestmark = pytest.mark.skipif(
    uring.unavailable_reason() is not None, reason="the local engine needs io_uring"
)


def pages(origin: OriginProcess, count: int) -> list[str]:
    return [f"{origin.urls[i % len(origin.urls)]}/page/{i}" for i in range(count)]


def expected_body(url: str) -> bytes:
    if url.endswith("/bytes/1m"):
        return deterministic_bytes(1 << 20)
    return page_body("/" + url.split("/", 3)[3])[2]


def test_workers_write_the_same_lines_the_send_engine_does(
    origin: OriginProcess, nginx: Nginx, tmp_path: Path
) -> None:
    urls = [*pages(origin, 40), nginx.http_url + "/bytes/1m", "http://127.0.0.1:1/refused"]
    source = write_urls(tmp_path / "urls.txt", urls)
    lines = {}
    for engine, sizing in (("send", []), ("local", ["--workers", "2"])):
        out, bodies = tmp_path / f"{engine}.jsonl", tmp_path / f"bodies-{engine}"
        ran = aioduct(
            "crawl", str(source), "-o", str(out), "--engine", engine, *sizing,
            "--include-body", "--save-bodies", str(bodies),
        )  # fmt: skip
        assert ran.code == 0, ran.stderr
        lines[engine] = {line["id"]: line for line in results(out)}
        assert sorted(lines[engine]) == list(range(len(urls)))
    for i, url in enumerate(urls[:-1]):
        sent, local = lines["send"][i], lines["local"][i]
        assert local.keys() == sent.keys() and local["worker"] in (0, 1) and sent["worker"] == -1
        for key in ("url", "final_url", "status", "size", "error", "body", "value"):
            assert local[key] == sent[key], (url, key)
        assert dict(map(tuple, local["headers"]))["Content-Length"] == str(len(expected_body(url)))
        assert base64.b64decode(local["body"]) == expected_body(url)
        assert Path(local["body_path"]).read_bytes() == expected_body(url)
        assert Path(local["body_path"]) == tmp_path / "bodies-local" / "0000" / str(i)
    refused = lines["local"][len(urls) - 1]  # no response: encoded by the parent
    assert refused["error"]["kind"] == "ConnectError" and "body_path" not in refused


def test_a_body_that_cannot_be_saved_stops_the_crawl_resumably(
    origin: OriginProcess, tmp_path: Path
) -> None:
    urls = pages(origin, 60)
    source, out = write_urls(tmp_path / "urls.txt", urls), tmp_path / "out.jsonl"
    bodies = tmp_path / "bodies"
    bodies.mkdir()
    (bodies / "0000").write_text("a file where the workers want a directory")
    args = ["crawl", str(source), "-o", str(out), "--engine", "local", "--save-bodies"]
    ran = aioduct(*args, str(bodies))
    assert ran.code == 1
    assert "0000" in ran.stderr and "continue with --resume" in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr
    (bodies / "0000").unlink()
    ran = aioduct(*args, str(bodies), "--resume")
    assert ran.code == 0, ran.stderr
    lines = results(out)
    assert sorted(line["id"] for line in lines) == list(range(60))  # each exactly once
    for line in lines:
        assert Path(line["body_path"]).read_bytes() == expected_body(line["url"])
