"""client.download(): parallel ranges against nginx, and the range/resume confusion cases
(a server that ignores Range, answers another range, changes the file mid-way) against
the scripted server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import aioduct
from aioduct.download import parse_content_range
from aioduct.testing.nginx import Nginx, deterministic_bytes
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

MB = 1024 * 1024


@pytest.mark.parametrize("origin", ["http", "h2c"])
async def test_parallel_download_from_nginx(nginx: Nginx, tmp_path: Path, origin: str) -> None:
    url = (nginx.http_url if origin == "http" else nginx.h2c_url) + "/bytes/10m"
    seen: list[tuple[int, int | None]] = []
    async with aioduct.Client(http2_prior_knowledge=origin == "h2c") as c:
        d = await c.download(
            url, tmp_path / "f.bin", chunks=8, progress=lambda n, t: seen.append((n, t))
        )
    data = (tmp_path / "f.bin").read_bytes()
    assert data == deterministic_bytes(10 * MB)
    assert d.size == 10 * MB and d.chunks == 8 and d.resumed == 0 and d.path == tmp_path / "f.bin"
    assert d.validator is not None and d.validator.startswith('"')  # nginx's strong ETag
    assert seen[-1] == (10 * MB, 10 * MB)
    assert not (tmp_path / "f.bin.part").exists() and not (tmp_path / "f.bin.part.json").exists()


def test_blocking_download_is_sequential(nginx: Nginx, tmp_path: Path) -> None:
    with aioduct.BlockingClient() as c:
        d = c.download(nginx.http_url + "/bytes/1m", tmp_path / "f.bin", chunks=4)
    assert (tmp_path / "f.bin").read_bytes() == deterministic_bytes(MB)
    assert d.chunks == 1 and d.size == MB


async def test_small_and_empty_files(nginx: Nginx, tmp_path: Path) -> None:
    async with aioduct.Client() as c:
        d = await c.download(nginx.http_url + "/bytes/64k", tmp_path / "small", chunks=8)
        assert d.chunks == 1 and (tmp_path / "small").read_bytes() == deterministic_bytes(65536)
        with pytest.raises(aioduct.StatusError):
            await c.download(nginx.http_url + "/bytes/nope", tmp_path / "missing")
        with pytest.raises(ValueError, match="chunks"):
            await c.download(nginx.http_url + "/bytes/64k", tmp_path / "x", chunks=0)


# -- scripted servers ----------------------------------------------------------------------

RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def serve_ranges(
    srv: ScriptServer,
    body: bytes,
    *,
    etag: str = '"v1"',
    log: list[str] | None = None,
    answer=None,  # type: ignore[no-untyped-def]
) -> None:
    """A correct range server at /file, unless ``answer(req, first, last)`` returns raw bytes."""

    @srv.route("/file")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        rng = req.header("range")
        if log is not None:
            log.append(f"{rng} {req.header('if-range')}")
        m = RANGE.fullmatch(rng or "")
        if m is None or (req.header("if-range") not in (None, etag)):
            await conn.send_response(200, [("ETag", etag), ("Accept-Ranges", "bytes")], body)
            return
        first, last = int(m.group(1)), min(int(m.group(2)), len(body) - 1)
        if answer is not None:
            raw = await answer(conn, req, first, last)
            if raw is not None:
                return
        await conn.send_response(
            206,
            [("ETag", etag), ("Content-Range", f"bytes {first}-{last}/{len(body)}")],
            body[first : last + 1],
        )


BODY = deterministic_bytes(2 * MB + 123)


async def test_server_that_ignores_range_gives_one_stream(
    script_server: ScriptServer, tmp_path: Path
) -> None:
    @script_server.route("/file")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        await conn.send_response(200, [], BODY)

    async with aioduct.Client() as c:
        d = await c.download(script_server.url + "/file", tmp_path / "f", chunks=8)
    assert d.chunks == 1 and d.validator is None
    assert (tmp_path / "f").read_bytes() == BODY


async def test_probe_answered_with_the_whole_file_is_one_stream(
    script_server: ScriptServer, tmp_path: Path
) -> None:
    @script_server.route("/file")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        rng = f"bytes 0-{len(BODY) - 1}/{len(BODY)}"
        await conn.send_response(206, [("Content-Range", rng)], BODY)

    async with aioduct.Client() as c:
        d = await c.download(script_server.url + "/file", tmp_path / "f", chunks=8)
    assert d.chunks == 1 and (tmp_path / "f").read_bytes() == BODY


async def test_wrong_content_range_never_reaches_the_file(
    script_server: ScriptServer, tmp_path: Path
) -> None:
    """A 206 for another range than asked: DownloadError, those bytes not written."""

    async def shifted(conn: Conn, req: ServerRequest, first: int, last: int) -> bytes | None:
        if first == 0:
            return None
        wrong = first + 1
        await conn.send_response(
            206,
            [("ETag", '"v1"'), ("Content-Range", f"bytes {wrong}-{last}/{len(BODY)}")],
            b"\xee" * (last - wrong + 1),
        )
        return b""

    serve_ranges(script_server, BODY, answer=shifted)
    async with aioduct.Client() as c:
        with pytest.raises(aioduct.DownloadError, match="answered Content-Range"):
            await c.download(script_server.url + "/file", tmp_path / "f", chunks=4)
    assert not (tmp_path / "f").exists()
    part = (tmp_path / "f.part").read_bytes()
    # nothing of the wrong answers was written: every byte is right or still a hole
    assert all(p == b or p == 0 for p, b in zip(part, BODY, strict=True))
    state = json.loads((tmp_path / "f.part.json").read_text())
    for a, b in state["done"]:  # what is recorded as done is right
        assert part[a:b] == BODY[a:b]


async def test_ranges_answered_with_the_whole_file_restart_then_fail(
    script_server: ScriptServer, tmp_path: Path
) -> None:
    """The probe gets its 206 but every range a 200: never spliced into the file."""

    async def whole(conn: Conn, req: ServerRequest, first: int, last: int) -> bytes | None:
        if first == 0 and last == 0:
            return None
        await conn.send_response(200, [("ETag", '"v1"')], b"\xee" * len(BODY))
        return b""

    serve_ranges(script_server, BODY, answer=whole)
    async with aioduct.Client() as c:
        with pytest.raises(aioduct.DownloadError, match="changed on the server"):
            await c.download(script_server.url + "/file", tmp_path / "f", chunks=4)
    assert not (tmp_path / "f").exists() and not (tmp_path / "f.part").exists()


async def test_file_changing_mid_download_restarts_cleanly(
    script_server: ScriptServer, tmp_path: Path
) -> None:
    """The ETag changes after the probe: If-Range makes the ranges 200, the download
    starts over and ends with the new file, not a mix."""
    new_body = bytes(reversed(BODY))
    versions = {"calls": 0}

    @script_server.route("/file")
    async def handler(conn: Conn, req: ServerRequest) -> None:
        versions["calls"] += 1
        etag, body = ('"v1"', BODY) if versions["calls"] == 1 else ('"v2"', new_body)
        m = RANGE.fullmatch(req.header("range") or "")
        if m is None or req.header("if-range") not in (None, etag):
            await conn.send_response(200, [("ETag", etag)], body)
            return
        first, last = int(m.group(1)), int(m.group(2))
        await conn.send_response(
            206,
            [("ETag", etag), ("Content-Range", f"bytes {first}-{last}/{len(body)}")],
            body[first : last + 1],
        )

    async with aioduct.Client() as c:
        d = await c.download(script_server.url + "/file", tmp_path / "f", chunks=4)
    assert (tmp_path / "f").read_bytes() == new_body
    assert d.validator == '"v2"'


async def test_interrupted_download_resumes_only_the_rest(
    script_server: ScriptServer, tmp_path: Path
) -> None:
    log: list[str] = []
    broken = {"on": True}

    async def drop(conn: Conn, req: ServerRequest, first: int, last: int) -> bytes | None:
        if broken["on"] and last > first:  # the one range of chunks=1: cut in the middle
            await conn.send(
                b'HTTP/1.1 206 Partial Content\r\nETag: "v1"\r\n'
                + f"Content-Range: bytes {first}-{last}/{len(BODY)}\r\n".encode()
                + f"Content-Length: {last - first + 1}\r\n\r\n".encode()
                + BODY[first : len(BODY) // 2]
            )
            conn.close()
            return b""
        return None

    serve_ranges(script_server, BODY, log=log, answer=drop)
    async with aioduct.Client() as c:
        with pytest.raises(aioduct.TransportError, match="closed"):
            await c.download(script_server.url + "/file", tmp_path / "f", chunks=1)
        state = json.loads((tmp_path / "f.part.json").read_text())
        assert state["validator"] == ["etag", '"v1"']
        assert state["done"] == [[0, len(BODY) // 2]]
        broken["on"] = False
        log.clear()
        d = await c.download(script_server.url + "/file", tmp_path / "f", chunks=4)
    assert (tmp_path / "f").read_bytes() == BODY
    assert d.resumed == len(BODY) // 2 and d.chunks == 4
    # the resume pinned the variant and asked only for bytes not yet written
    assert all(line.endswith('"v1"') for line in log)
    ranges = [RANGE.match(line.split()[0]) for line in log]
    asked = sorted((int(m.group(1)), int(m.group(2))) for m in ranges if m)
    assert asked[0] == (0, 0)  # the probe
    assert asked[1][0] == len(BODY) // 2 and asked[-1][1] == len(BODY) - 1
    assert sum(b - a + 1 for a, b in asked[1:]) == len(BODY) - len(BODY) // 2


async def test_resume_of_a_changed_file_starts_over(
    script_server: ScriptServer, tmp_path: Path
) -> None:
    (tmp_path / "f.part").write_bytes(b"\xee" * len(BODY))
    (tmp_path / "f.part.json").write_text(
        json.dumps(
            {
                "url": script_server.url + "/file",
                "size": len(BODY),
                "validator": ["etag", '"old"'],
                "done": [[0, len(BODY) // 2]],
            }
        )
    )
    serve_ranges(script_server, BODY)
    async with aioduct.Client() as c:
        d = await c.download(script_server.url + "/file", tmp_path / "f", chunks=4)
    assert (tmp_path / "f").read_bytes() == BODY and d.resumed == 0


@pytest.mark.parametrize(
    "value",
    ["bytes 0-0/+5", "bytes 0-0/1_0", "bytes ٠-0/10", "bytes 0-0/５", "bytes 5-1/10",
     "bytes 0-10/10", "bytes 0-0/0x10", "bytes 0-0", "items 0-0/10", None],
)  # fmt: skip
def test_content_range_parser_is_strict(value: str | None) -> None:
    assert parse_content_range(value) is None


def test_content_range_parser_accepts_valid() -> None:
    assert parse_content_range("bytes 0-0/10") == (0, 0, 10)
    assert parse_content_range("bytes 5-9/10") == (5, 9, 10)


async def test_redirects_follow_the_client_setting(
    script_server: ScriptServer, tmp_path: Path
) -> None:
    """urllib3 CVE-2025-50181's class: follow_redirects=False holds for downloads too."""

    @script_server.route("/moved")
    async def moved(conn: Conn, req: ServerRequest) -> None:
        await conn.send_response(302, [("Location", "/file")], b"")

    serve_ranges(script_server, BODY)
    async with aioduct.Client(follow_redirects=False) as c:
        with pytest.raises(aioduct.DownloadError, match="302"):
            await c.download(script_server.url + "/moved", tmp_path / "f")
    async with aioduct.Client() as c:
        await c.download(script_server.url + "/moved", tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == BODY


async def test_download_on_the_local_engine(nginx: Nginx, tmp_path: Path) -> None:
    """Ranges go to the io_uring workers like any request (each at most 8 MiB, buffered)."""
    async with aioduct.Client(engine="local", workers=2) as c:
        d = await c.download(nginx.http_url + "/bytes/10m", tmp_path / "f", chunks=4)
    assert (tmp_path / "f").read_bytes() == deterministic_bytes(10 * MB)
    assert d.chunks == 4 and d.size == 10 * MB


def test_blocking_download_on_the_local_engine(nginx: Nginx, tmp_path: Path) -> None:
    with aioduct.BlockingClient(engine="local", workers=1) as c:
        d = c.download(nginx.http_url + "/bytes/1m", tmp_path / "f", chunks=2)
    assert (tmp_path / "f").read_bytes() == deterministic_bytes(MB)
    assert d.size == MB


@pytest.mark.parametrize("engine", ["local", "send"])
def test_download_jobs(nginx: Nginx, tmp_path: Path, engine: str) -> None:
    """Job(save_to=...) on a bulk engine: each file downloaded whole by one worker."""
    jobs = [
        aioduct.Job(url=nginx.http_url + "/bytes/10m", save_to=str(tmp_path / "a"), chunks=4),
        aioduct.Job(url=nginx.http_url + "/bytes/1m", save_to=str(tmp_path / "b"), meta="m"),
        aioduct.Job(url=nginx.http_url + "/bytes/none", save_to=str(tmp_path / "c")),
    ]
    bulk = aioduct.LocalEngine(workers=2) if engine == "local" else aioduct.SendEngine()
    with bulk:
        results = sorted(bulk.map(jobs), key=lambda r: str(r.id))
    a, b, c = results
    assert (a.status, a.size, a.body) == (200, 10 * MB, None)
    assert a.value["chunks"] == 4 and a.value["path"] == str(tmp_path / "a")
    assert (tmp_path / "a").read_bytes() == deterministic_bytes(10 * MB)
    assert b.meta == "m" and (tmp_path / "b").read_bytes() == deterministic_bytes(MB)
    assert c.status == 0 and c.error is not None and c.error.kind == "StatusError"
    assert not (tmp_path / "c").exists()
