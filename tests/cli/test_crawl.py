"""``aioduct crawl``: every URL gets exactly one result line, on both engines, resumably."""

from __future__ import annotations

import base64
import collections
import json
import signal
import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from aioduct import Job, Result, uring
from aioduct.cli import _resume, main
from aioduct.local.dispatch import Dispatcher
from aioduct.testing.nginx import SMALL_BODY, Nginx
from aioduct.testing.origin import OriginProcess, page_body

from .conftest import aioduct, results, start, write_urls

_NO_URING = uring.unavailable_reason()
ENGINES = [
    pytest.param("send", id="send"),
    pytest.param(
        "local",
        id="local",
        marks=pytest.mark.skipif(
            _NO_URING is not None, reason=f"the local engine needs io_uring: {_NO_URING}"
        ),
    ),
]


def site(origin: OriginProcess, count: int) -> list[str]:
    return [f"{origin.urls[i % len(origin.urls)]}/page/{i}" for i in range(count)]


def assert_each_once(lines: list[dict[str, object]], count: int) -> None:
    ids = collections.Counter(line["id"] for line in lines)
    assert sorted(ids) == list(range(count)), "missing or unexpected ids"
    assert max(ids.values()) == 1, f"ids written twice: {[i for i, n in ids.items() if n > 1]}"


@pytest.mark.parametrize("engine", ENGINES)
def test_every_url_gets_one_result_line(engine: str, origin: OriginProcess, tmp_path: Path) -> None:
    urls = [*site(origin, 300), "not a url", "http://127.0.0.1:1/refused"]
    source = tmp_path / "urls.txt"
    source.write_text("# a comment\n\n" + "\n".join(urls) + "\n   \n")
    out = tmp_path / "out.jsonl"
    sizing = ["--workers", "2"] if engine == "local" else ["--concurrency", "32"]
    ran = aioduct("crawl", str(source), "-o", str(out), "--engine", engine, *sizing)
    assert ran.code == 0, ran.stderr
    lines = results(out)
    assert_each_once(lines, len(urls))
    by_id = {line["id"]: line for line in lines}
    for i, url in enumerate(urls[:300]):
        line = by_id[i]
        assert (line["url"], line["status"], line["error"]) == (url, 200, None)
        assert line["body"] is None and line["size"] == len(page_body(f"/page/{i}")[2])
    assert by_id[300]["error"]["kind"] == "InvalidURL"
    assert by_id[301]["error"]["kind"] == "ConnectError"
    workers = {by_id[i]["worker"] for i in range(300)}  # the pages' lines, not the first 300
    # local: each origin on the worker its (random) port hashes to
    shard = Dispatcher(2, window=1, by_site=True).shard  # cookies on: by site
    assert workers == ({-1} if engine == "send" else {shard(Job(url=u)) for u in urls[:300]})
    assert "302 results" in ran.stderr and "2 errors" in ran.stderr


def test_reads_urls_from_stdin(origin: OriginProcess, tmp_path: Path) -> None:
    urls = site(origin, 50)
    out = tmp_path / "out.jsonl"
    ran = aioduct("crawl", "-", "-o", str(out), "--engine", "send", stdin="\n".join(urls))
    assert ran.code == 0, ran.stderr
    lines = results(out)
    assert_each_once(lines, 50)
    assert {line["url"] for line in lines} == set(urls)


def test_bodies_inline_and_saved_against_nginx(nginx: Nginx, tmp_path: Path) -> None:
    urls = [nginx.http_url + "/small", nginx.alt_http_url + "/small", nginx.http_url + "/nope"]
    out, bodies = tmp_path / "out.jsonl", tmp_path / "bodies"
    ran = aioduct(
        "crawl", str(write_urls(tmp_path / "u", urls)), "-o", str(out), "--engine", "send",
        "--include-body", "--save-bodies", str(bodies), "--header", "X-Crawl: yes",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    by_id = {line["id"]: line for line in results(out)}
    for i in (0, 1):
        assert base64.b64decode(by_id[i]["body"]) == SMALL_BODY
        assert Path(by_id[i]["body_path"]).read_bytes() == SMALL_BODY
        assert Path(by_id[i]["body_path"]) == bodies / "0000" / str(i)
    assert by_id[2]["status"] == 404


def crawl_until_killed(
    args: list[str], out: Path, sig: int, lines: int = 120
) -> subprocess.Popen[str]:
    """Start a paced crawl and send ``sig`` once ``lines`` results are in ``out``."""
    proc = start(*args)
    deadline = time.monotonic() + 30
    while not (out.exists() and out.read_bytes().count(b"\n") >= lines):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the crawl made no progress"
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    return proc


@pytest.mark.parametrize("engine", ENGINES)
def test_resume_after_kill_9_loses_and_repeats_nothing(
    engine: str, origin: OriginProcess, tmp_path: Path
) -> None:
    count = 600
    source = write_urls(tmp_path / "urls.txt", site(origin, count))
    out = tmp_path / "out.jsonl"
    args = ["crawl", str(source), "-o", str(out), "--engine", engine]
    # 4 origins x 100 requests/s: the crawl takes seconds, so the kill lands mid-way.
    killed = crawl_until_killed([*args, "--per-host-rate", "100"], out, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    _resume.truncate_partial_line(out)
    kept = len(results(out))
    assert 0 < kept < count

    ran = aioduct(*args, "--resume")
    assert ran.code == 0, ran.stderr
    assert f"{kept:,} URLs done" in ran.stderr
    assert f"{count - kept:,} results" in ran.stderr  # only the missing ones were fetched
    assert_each_once(results(out), count)


def test_ctrl_c_flushes_finished_results_and_exits_130(
    origin: OriginProcess, tmp_path: Path
) -> None:
    count = 600
    source = write_urls(tmp_path / "urls.txt", site(origin, count))
    out = tmp_path / "out.jsonl"
    args = ["crawl", str(source), "-o", str(out), "--engine", "send"]
    proc = crawl_until_killed([*args, "--per-host-rate", "100"], out, signal.SIGINT)
    assert proc.returncode == 130
    lines = results(out)  # whole lines only
    checkpoint = _resume.read_checkpoint(Path(f"{out}.journal"))
    assert checkpoint is not None and checkpoint.output_offset == out.stat().st_size
    assert checkpoint.next - len(checkpoint.pending) == len(lines)

    ran = aioduct(*args, "--resume")
    assert ran.code == 0, ran.stderr
    assert "no usable journal" not in ran.stderr
    assert_each_once(results(out), count)


def earlier_output(urls: list[str], ids: range) -> bytes:
    """Result lines as an earlier run wrote them (status 299 marks them as not refetched)."""
    encode = msgspec.json.encode
    return b"".join(encode(Result(id=i, url=urls[i], status=299)) + b"\n" for i in ids)


def test_resume_cuts_a_partial_line_and_rebuilds_without_journal(
    origin: OriginProcess, tmp_path: Path
) -> None:
    urls = site(origin, 80)
    source = write_urls(tmp_path / "urls.txt", urls)
    out = tmp_path / "out.jsonl"
    out.write_bytes(earlier_output(urls, range(30)) + b'{"id":30,"url":"htt')  # killed mid-write

    ran = aioduct("crawl", str(source), "-o", str(out), "--engine", "send", "--resume")
    assert ran.code == 0, ran.stderr
    assert "cut a partial last line" in ran.stderr and "no usable journal" in ran.stderr
    lines = results(out)
    assert_each_once(lines, 80)
    assert [line["id"] for line in lines if line["status"] == 299] == list(range(30))


def test_resume_ignores_a_journal_ahead_of_the_output(
    origin: OriginProcess, tmp_path: Path
) -> None:
    urls = site(origin, 40)
    source = write_urls(tmp_path / "urls.txt", urls)
    out = tmp_path / "out.jsonl"
    out.write_bytes(earlier_output(urls, range(10)))
    ahead = _resume.Progress(40).checkpoint(out.stat().st_size * 4, str(source))  # "all done"
    _resume.write_checkpoint(Path(f"{out}.journal"), ahead)

    ran = aioduct("crawl", str(source), "-o", str(out), "--engine", "send", "--resume")
    assert ran.code == 0, ran.stderr
    assert "no usable journal" in ran.stderr
    assert_each_once(results(out), 40)


def test_progress_state_stays_small_and_exact() -> None:
    progress = _resume.Progress()
    started = [i for i in range(10) if progress.wants(i)]
    assert started == list(range(10))
    for i in (0, 1, 2, 5):
        progress.done(i)
    assert (progress.next, progress.pending) == (10, {3, 4, 6, 7, 8, 9})
    replay = _resume.Progress()
    for i in (1, 0, 5, 2):  # an output read back in completion order
        replay.done(i)
    assert (replay.next, replay.pending) == (6, {3, 4})
    assert not replay.wants(0) and replay.wants(3) and replay.wants(6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.txt", "-o", "out.jsonl"], "cannot read the URL list missing.txt"),
        (["urls.txt", "-o", "exists.jsonl"], "already exists: continue that crawl with --resume"),
        (["urls.txt", "-o", "o.jsonl", "--header", "nocolon"], "must look like 'Name: value'"),
        (["urls.txt", "-o", "o.jsonl", "--engine", "send", "--workers", "2"], "--workers sets"),
        (["urls.txt", "-o", "o.jsonl", "--concurrency", "0"], "must be > 0"),
        (["urls.txt", "-o", "-", "--resume"], "--resume needs an output file"),
        (["urls.txt"], "required: -o/--output"),
    ],
)
def test_bad_usage_exits_1_saying_what_to_do(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:1/\n")
    (tmp_path / "exists.jsonl").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["crawl", *args])  # in this process: no interpreter start-up per case
    except SystemExit as exc:  # argparse's own checks
        code = exc.code
    assert code == 1
    assert message in capsys.readouterr().err


def test_engine_local_without_io_uring_fails_clearly_and_auto_falls_back(
    origin: OriginProcess, tmp_path: Path
) -> None:
    source = write_urls(tmp_path / "urls.txt", site(origin, 20))
    out = tmp_path / "out.jsonl"
    ran = aioduct("crawl", str(source), "-o", str(out), "--engine", "local", AIODUCT_URING="off")
    assert ran.code == 1
    assert "--engine local runs its workers on io_uring, which is unusable here" in ran.stderr
    assert "AIODUCT_URING" in ran.stderr and "--engine send" in ran.stderr

    out.unlink(missing_ok=True)
    # From stdin the list's length is unknown, so auto would start workers: it falls back.
    ran = aioduct("crawl", "-", "-o", str(out), stdin=source.read_text(), AIODUCT_URING="off")
    assert ran.code == 0, ran.stderr
    assert ran.stderr.count("using the send engine") == 1
    assert "send engine (auto: io_uring is unusable here)" in ran.stderr
    lines = results(out)
    assert_each_once(lines, 20)
    assert {line["worker"] for line in lines} == {-1}
    assert json.loads(out.read_bytes().splitlines()[0])["status"] == 200
