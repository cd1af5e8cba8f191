"""The HTTP cache against real servers: nginx's validators, and hostile scripted origins.

Each behaviour runs on the async Client and on BlockingClient (the blocking driver),
through :class:`Clients`; the local engine has its own tests at the end.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aioduct
from aioduct.cache.store import DirectoryStore
from aioduct.testing.nginx import GZIP_BODY, Nginx
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

_tags = itertools.count()


class Clients:
    """One client of ``kind`` ("async" or "blocking") with a blocking ``request``."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        if kind == "async":
            self.runner = asyncio.Runner(loop_factory=aioduct.client.new_event_loop)
            self.client: Any = aioduct.Client(**options)
        else:
            self.client = aioduct.BlockingClient(**options)

    def request(self, method: str, url: str, **kw: Any) -> aioduct.Response:
        if self.kind == "async":
            response: aioduct.Response = self.runner.run(self.client.request(method, url, **kw))
            return response
        result: aioduct.Response = self.client.request(method, url, **kw)
        return result

    def get(self, url: str, **kw: Any) -> aioduct.Response:
        return self.request("GET", url, **kw)

    def close(self) -> None:
        if self.kind == "async":
            self.runner.run(self.client.aclose())
            self.runner.close()
        else:
            self.client.close()


@pytest.fixture(params=["async", "blocking"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(kind: str) -> Iterator[Any]:
    made: list[Clients] = []

    def factory(**options: Any) -> Clients:
        clients = Clients(kind, **options)
        made.append(clients)
        return clients

    yield factory
    for clients in made:
        clients.close()


def scripted(
    srv: ScriptServer, path: str, *responses: tuple[int, list[tuple[str, str]], bytes]
) -> list[ServerRequest]:
    """Answer ``path`` with ``responses`` in turn (the last one repeats); returns the
    list the requests it received are appended to."""
    seen: list[ServerRequest] = []

    async def handler(conn: Conn, req: ServerRequest) -> None:
        seen.append(req)
        status, headers, body = responses[min(len(seen), len(responses)) - 1]
        await conn.send_response(status, headers, b"" if req.method == "HEAD" else body)

    srv.add_route(path, handler)
    return seen


# -- nginx: validators of a static file -----------------------------------------------------


@pytest.mark.nginx
def test_nginx_static_file_is_revalidated_with_its_etag(nginx: Nginx, make: Any) -> None:
    clients = make(cache=aioduct.Cache())
    tag = f"cache-etag-{next(_tags)}"
    url = f"{nginx.http_url}/etag?{tag}"
    first = clients.get(url)
    # Request no-cache: the stored response must be validated, with nginx's ETag.
    second = clients.get(url, headers={"Cache-Control": "no-cache"})
    assert first.cache_status == "miss" and first.content == GZIP_BODY
    assert second.cache_status == "revalidated"
    assert second.content == GZIP_BODY and second.status == 200
    assert second.headers["etag"] == first.headers["etag"]
    log = nginx.requests_log(uri_contains=tag, min_entries=2)
    assert [e.status for e in log] == [200, 304]
    # No Cache-Control: freshness is a tenth of the file's age (Last-Modified), so a
    # third request is a hit, or validated again if that lifetime has run out.
    assert clients.get(url).cache_status in ("hit", "revalidated")


@pytest.mark.nginx
def test_nginx_response_without_validators_or_freshness_is_not_reused(
    nginx: Nginx, make: Any
) -> None:
    cache = aioduct.Cache()
    clients = make(cache=cache)
    url = f"{nginx.http_url}/small?t{next(_tags)}"
    assert [clients.get(url).cache_status for _ in range(2)] == ["miss", "miss"]
    assert len(cache) == 0


@pytest.mark.nginx
def test_no_cache_no_layer(nginx: Nginx) -> None:
    async def main() -> None:
        async with aioduct.Client() as client:
            layers = client._engine.layers  # type: ignore[union-attr]
            assert not any(type(layer).__name__ == "CacheLayer" for layer in layers)
            r = await client.get(nginx.http_url + "/small")
            assert r.cache_status is None

    aioduct.run(main())


# -- freshness, age and hostile numbers -------------------------------------------------------


def test_fresh_response_is_a_hit_with_age(script_server: ScriptServer, make: Any) -> None:
    seen = scripted(script_server, "/f", (200, [("Cache-Control", "max-age=600")], b"body"))
    clients = make(cache=aioduct.Cache())
    url = script_server.url + "/f"
    a, b = clients.get(url), clients.get(url)
    assert (a.cache_status, b.cache_status) == ("miss", "hit")
    assert b.content == b"body" and "age" in b.headers and len(seen) == 1
    head = clients.request("HEAD", url)
    assert head.cache_status == "hit" and head.content == b"" and len(seen) == 1


@pytest.mark.parametrize(
    "headers",
    [
        [("Cache-Control", "max-age=600"), ("Age", "99999999999999999999999")],
        [("Cache-Control", "max-age=-5")],
        [("Cache-Control", "max-age=5"), ("Age", "-3"), ("Date", "Thu, 01 Jan 1970 00:00:00 GMT")],
        [("Expires", "0")],
        [("Expires", "Fri, 31 Dec 9999 23:59:59 GMT"), ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")],  # noqa: E501
        [("Cache-Control", "max-age=600"), ("Vary", ", ".join(f"X-H{i}" for i in range(500)))],
        [("Cache-Control", "max-age=600"), ("Vary", "*")],
        [("Cache-Control", "max-age=600, no-store")],
        [("Cache-Control", "max-age=+600")],
    ],
    ids=[
        "huge-age", "negative-max-age", "negative-age-old-date", "expires-0",
        "two-expires", "vary-500-headers", "vary-star", "no-store", "signed-max-age",
    ],
)  # fmt: skip
def test_hostile_freshness_is_never_reused(
    script_server: ScriptServer, make: Any, headers: list[tuple[str, str]]
) -> None:
    seen = scripted(script_server, "/h", (200, headers, b"x"))
    clients = make(cache=aioduct.Cache())
    url = script_server.url + "/h"
    statuses = [clients.get(url, headers={"X-H1": "a"}).cache_status for _ in range(2)]
    assert statuses == ["miss", "miss"] and len(seen) == 2


def test_overflowing_max_age_is_a_long_time(script_server: ScriptServer, make: Any) -> None:
    scripted(script_server, "/o", (200, [("Cache-Control", "max-age=1" + "0" * 40)], b"x"))
    clients = make(cache=aioduct.Cache())
    url = script_server.url + "/o"
    assert [clients.get(url).cache_status for _ in range(2)] == ["miss", "hit"]


def test_vary_selects_the_matching_variant(script_server: ScriptServer, make: Any) -> None:
    async def handler(conn: Conn, req: ServerRequest) -> None:
        lang = req.header("accept-language") or "none"
        await conn.send_response(
            200,
            [("Cache-Control", "max-age=600"), ("Vary", "Accept-Language")],
            lang.encode(),
        )

    script_server.add_route("/v", handler)
    clients = make(cache=aioduct.Cache())
    url = script_server.url + "/v"
    got = [
        (r.cache_status, r.text)
        for lang in ("en", "fr", "en", "fr")
        for r in [clients.get(url, headers={"Accept-Language": lang})]
    ]
    assert got == [("miss", "en"), ("miss", "fr"), ("hit", "en"), ("hit", "fr")]


def test_private_cache_keeps_credentials_apart(script_server: ScriptServer, make: Any) -> None:
    async def handler(conn: Conn, req: ServerRequest) -> None:
        who = req.header("authorization") or "anonymous"
        await conn.send_response(200, [("Cache-Control", "private, max-age=600")], who.encode())

    script_server.add_route("/me", handler)
    cache = aioduct.Cache()
    clients = make(cache=cache)
    url = script_server.url + "/me"
    alice = clients.get(url, auth=("alice", "a"))
    bob = clients.get(url, auth=("bob", "b"))
    anon = clients.get(url)
    alice2 = clients.get(url, auth=("alice", "a"))
    assert alice.text != bob.text and bob.cache_status == "miss" and anon.text == "anonymous"
    assert alice2.cache_status == "hit" and alice2.text == alice.text


def test_shared_cache_rules(script_server: ScriptServer, make: Any) -> None:
    private = scripted(
        script_server, "/p", (200, [("Cache-Control", "private, max-age=600")], b"p")
    )
    authed = scripted(script_server, "/a", (200, [("Cache-Control", "max-age=600")], b"a"))
    smax = scripted(
        script_server, "/s", (200, [("Cache-Control", "max-age=0, s-maxage=600")], b"s")
    )
    clients = make(cache=aioduct.Cache(shared=True))
    base = script_server.url
    for _ in range(2):
        clients.get(base + "/p")
        clients.get(base + "/a", auth=("u", "p"))
        clients.get(base + "/s")
    assert (len(private), len(authed), len(smax)) == (2, 2, 1)


def test_request_directives(script_server: ScriptServer, make: Any) -> None:
    seen = scripted(
        script_server, "/r", (200, [("Cache-Control", "max-age=600"), ("ETag", '"v1"')], b"r")
    )
    clients = make(cache=aioduct.Cache())
    url = script_server.url + "/r"
    assert clients.get(url).cache_status == "miss"
    assert clients.get(url, headers={"Cache-Control": "no-cache"}).cache_status == "miss"
    assert seen[-1].header("if-none-match") == '"v1"'
    assert clients.get(url, headers={"Cache-Control": "min-fresh=100000"}).cache_status == "miss"
    assert clients.get(url, headers={"Cache-Control": "max-age=100000"}).cache_status == "hit"
    n = len(seen)
    assert clients.get(url, headers={"Cache-Control": "no-store"}).cache_status == "hit"
    assert len(seen) == n
    gone = script_server.url + "/nothing-here"
    r = clients.get(gone, headers={"Cache-Control": "only-if-cached"})
    assert r.status == 504 and r.cache_status == "miss"


def test_only_if_cached_with_max_stale(script_server: ScriptServer, make: Any) -> None:
    now = [1_000_000.0]
    scripted(script_server, "/st", (200, [("Cache-Control", "max-age=10")], b"old"))
    clients = make(cache=aioduct.Cache(clock=lambda: now[0]))
    url = script_server.url + "/st"
    clients.get(url)
    now[0] += 60
    assert clients.get(url, headers={"Cache-Control": "only-if-cached"}).status == 504
    r = clients.get(url, headers={"Cache-Control": "only-if-cached, max-stale=100"})
    assert (r.status, r.cache_status, r.text) == (200, "stale", "old")


def test_validation_merges_the_304_headers(script_server: ScriptServer, make: Any) -> None:
    now = [1_000_000.0]
    seen = scripted(
        script_server,
        "/val",
        (200, [("Cache-Control", "max-age=10"), ("ETag", '"a"'), ("X-Version", "1")], b"v"),
        (304, [("Cache-Control", "max-age=100"), ("ETag", '"a"'), ("X-Version", "2")], b""),
    )
    clients = make(cache=aioduct.Cache(clock=lambda: now[0]))
    url = script_server.url + "/val"
    clients.get(url)
    now[0] += 20
    r = clients.get(url)
    assert (r.cache_status, r.status, r.text, r.headers["x-version"]) == (
        "revalidated",
        200,
        "v",
        "2",
    )
    assert seen[1].header("if-none-match") == '"a"'
    now[0] += 50  # fresh again under the 304's max-age=100
    assert clients.get(url).cache_status == "hit" and len(seen) == 2


def test_stale_if_error_and_must_revalidate(script_server: ScriptServer, make: Any) -> None:
    now = [1_000_000.0]
    scripted(
        script_server,
        "/sie",
        (200, [("Cache-Control", "max-age=10, stale-if-error=600")], b"good"),
        (503, [], b"down"),
    )
    scripted(
        script_server,
        "/mr",
        (200, [("Cache-Control", "max-age=10, must-revalidate, stale-if-error=600")], b"good"),
        (503, [], b"down"),
    )
    clients = make(cache=aioduct.Cache(clock=lambda: now[0]))
    base = script_server.url
    clients.get(base + "/sie")
    clients.get(base + "/mr")
    now[0] += 60
    r = clients.get(base + "/sie")
    assert (r.status, r.cache_status, r.text) == (200, "stale", "good")
    r = clients.get(base + "/mr")
    assert (r.status, r.cache_status) == (503, "miss")


def test_stale_if_error_when_the_origin_is_gone(make: Any) -> None:
    now = [1_000_000.0]
    cache = aioduct.Cache(clock=lambda: now[0])
    clients = make(cache=cache, connect_timeout=5)
    with ScriptServer() as srv:
        scripted(srv, "/x", (200, [("Cache-Control", "max-age=10, stale-if-error=600")], b"kept"))
        url = srv.url + "/x"
        clients.get(url)
    now[0] += 60
    r = clients.get(url)  # the server is closed: connection refused
    assert (r.cache_status, r.text) == ("stale", "kept")
    now[0] += 6000
    with pytest.raises(aioduct.ConnectError):
        clients.get(url)


def test_stale_while_revalidate(script_server: ScriptServer, make: Any, kind: str) -> None:
    now = [1_000_000.0]
    seen = scripted(
        script_server,
        "/swr",
        (200, [("Cache-Control", "max-age=10, stale-while-revalidate=600"), ("ETag", '"1"')], b"1"),
        (200, [("Cache-Control", "max-age=10, stale-while-revalidate=600"), ("ETag", '"2"')], b"2"),
    )
    clients = make(cache=aioduct.Cache(clock=lambda: now[0]))
    url = script_server.url + "/swr"
    clients.get(url)
    now[0] += 20
    r = clients.get(url)
    if kind == "blocking":  # no background tasks: revalidated inline
        assert (r.cache_status, r.text) == ("miss", "2")
    else:
        assert (r.cache_status, r.text) == ("stale", "1")
        clients.runner.run(asyncio.sleep(0.2))  # let the background refresh finish
        script_server.wait_for(lambda: len(seen) == 2)
    r = clients.get(url)
    assert (r.cache_status, r.text) == ("hit", "2")


def test_unsafe_methods_invalidate(script_server: ScriptServer, make: Any) -> None:
    scripted(script_server, "/doc", (200, [("Cache-Control", "max-age=600")], b"doc"))
    scripted(script_server, "/other", (200, [("Cache-Control", "max-age=600")], b"other"))
    scripted(script_server, "/far", (200, [("Cache-Control", "max-age=600")], b"far"))
    script_server.route_respond(
        "/doc-post",
        201,
        [("Location", "/other"), ("Content-Location", "http://elsewhere.invalid/far")],
    )
    cache = aioduct.Cache()
    clients = make(cache=cache)
    base = script_server.url
    for path in ("/doc", "/other", "/far"):
        clients.get(base + path)
    assert len(cache) == 3
    clients.request("POST", base + "/doc-post", content=b"x")
    clients.request("DELETE", base + "/doc")
    assert clients.get(base + "/doc").cache_status == "miss"
    assert clients.get(base + "/other").cache_status == "miss"
    assert clients.get(base + "/far").cache_status == "hit"


def test_streamed_bodies_are_stored_only_when_read_whole(
    script_server: ScriptServer, kind: str
) -> None:
    body = os.urandom(50_000)
    seen = scripted(script_server, "/big", (200, [("Cache-Control", "max-age=600")], body))
    cache = aioduct.Cache(max_entry_size=40_000)
    scripted(script_server, "/ok", (200, [("Cache-Control", "max-age=600")], b"y" * 30_000))
    url, ok = script_server.url + "/big", script_server.url + "/ok"

    async def main() -> None:
        async with aioduct.Client(cache=cache) as client:
            async with client.stream("GET", url) as r:
                assert await r.aread() == body  # over max_entry_size: not stored
            async with client.stream("GET", ok) as r:
                async for _ in r.aiter_bytes(1000):
                    break  # abandoned: not stored
            async with client.stream("GET", ok) as r:
                await r.aread()  # read whole: stored
            assert (await client.get(ok)).cache_status == "hit"
            assert (await client.get(url)).cache_status == "miss"

    if kind == "async":
        aioduct.run(main())
    else:
        with aioduct.BlockingClient(cache=cache) as client:
            with client.stream("GET", url) as r:
                assert r.read() == body
            with client.stream("GET", ok) as r:
                next(r.iter_bytes(1000))
            with client.stream("GET", ok) as r:
                r.read()
            assert client.get(ok).cache_status == "hit"
            assert client.get(url).cache_status == "miss"
    assert len(seen) == 2


def test_memory_store_evicts_least_recently_used(script_server: ScriptServer, make: Any) -> None:
    for i in range(4):
        scripted(script_server, f"/e{i}", (200, [("Cache-Control", "max-age=600")], b"z" * 1000))
    cache = aioduct.Cache(max_entries=3)
    clients = make(cache=cache)
    base = script_server.url
    for i in range(3):
        clients.get(f"{base}/e{i}")
    clients.get(f"{base}/e0")  # e0 used recently: e1 goes first
    clients.get(f"{base}/e3")
    assert len(cache) == 3
    assert clients.get(f"{base}/e1").cache_status == "miss"
    assert clients.get(f"{base}/e0").cache_status == "hit"


def test_blocking_client_threads_share_the_cache(script_server: ScriptServer) -> None:
    seen = scripted(script_server, "/t", (200, [("Cache-Control", "max-age=600")], b"t"))
    cache = aioduct.Cache()
    statuses: list[str | None] = []
    with aioduct.BlockingClient(cache=cache) as client:
        client.get(script_server.url + "/t")

        def worker() -> None:
            statuses.extend(client.get(script_server.url + "/t").cache_status for _ in range(20))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert statuses == ["hit"] * 80 and len(seen) == 1


# -- the directory store ----------------------------------------------------------------------


def test_directory_cache_survives_a_restart(
    script_server: ScriptServer, make: Any, tmp_path: Path
) -> None:
    seen = scripted(script_server, "/d", (200, [("Cache-Control", "max-age=600")], b"disk"))
    url = script_server.url + "/d"
    assert make(cache=aioduct.Cache(tmp_path)).get(url).cache_status == "miss"
    again = make(cache=aioduct.Cache(tmp_path)).get(url)
    assert (again.cache_status, again.text, len(seen)) == ("hit", "disk", 1)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    cache = aioduct.Cache(tmp_path)
    assert aioduct.get(url, cache=cache).cache_status == "hit"  # the one-shot form too
    cache.invalidate(url)
    assert len(cache) == 0 and aioduct.get(url, cache=cache).cache_status == "miss"
    cache.clear()
    assert not list(tmp_path.glob("*.entry")) and len(seen) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "other-key"])
def test_corrupted_disk_entry_is_a_miss_and_removed(
    script_server: ScriptServer, make: Any, tmp_path: Path, damage: str
) -> None:
    seen = scripted(script_server, "/c", (200, [("Cache-Control", "max-age=600")], b"c" * 100))
    url = script_server.url + "/c"
    make(cache=aioduct.Cache(tmp_path)).get(url)
    [file] = [p for p in tmp_path.iterdir() if p.suffix == ".entry"]
    data = file.read_bytes()
    if damage == "truncate":
        file.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        file.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    elif damage == "garbage":
        file.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        file.write_bytes(b"")
    else:  # a valid file for another URL, renamed over this one
        other = aioduct.Cache(tmp_path / "elsewhere")
        clients = make(cache=other)
        clients.get(script_server.url + "/c?x")
        [theirs] = [p for p in (tmp_path / "elsewhere").iterdir() if p.suffix == ".entry"]
        file.write_bytes(theirs.read_bytes())
    r = make(cache=aioduct.Cache(tmp_path)).get(url)
    assert r.cache_status == "miss" and r.content == b"c" * 100
    assert file.exists()  # rewritten by the new response...
    assert make(cache=aioduct.Cache(tmp_path)).get(url).cache_status == "hit"  # ...and sound
    assert len([s for s in seen if s.path == "/c"]) >= 2


def test_directory_store_bounds(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, max_size=3000, max_entries=100)
    entry = aioduct.cache.Entry("u", 200, "OK", "1.1", (), b"x" * 1000, 0.0, 0.0)
    for i in range(5):
        store.save(f"k{i}", [entry])
    assert store.size <= 3000 and len(store) == 2
    assert store.load("k4") and not store.load("k0")
    (tmp_path / ".tmp-leftover").write_bytes(b"half")
    DirectoryStore(tmp_path, max_size=3000, max_entries=100)
    assert not (tmp_path / ".tmp-leftover").exists()


def test_cache_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_size"):
        aioduct.Cache(max_size=0)
    with pytest.raises(TypeError, match=r"Client\(cache=\.\.\.\)"):
        aioduct.ClientConfig(cache=aioduct.Cache())  # type: ignore[arg-type]
    config = aioduct.ClientConfig(cache=True)  # type: ignore[arg-type]
    assert config.cache == aioduct.CacheConfig()
    assert aioduct.ClientConfig.decode(config.encode()) == config


# -- the local engine -------------------------------------------------------------------------


@pytest.mark.nginx
def test_local_engine_workers_keep_their_own_directory_store(nginx: Nginx, tmp_path: Path) -> None:
    tag = f"local-{next(_tags)}"
    url = f"{nginx.http_url}/etag?{tag}"

    async def main() -> tuple[aioduct.Response, aioduct.Response]:
        async with aioduct.Client(engine="local", workers=1, cache=aioduct.Cache(tmp_path)) as c:
            return await c.get(url), await c.get(url, headers={"Cache-Control": "no-cache"})

    first, second = aioduct.run(main())
    assert first.content == second.content == GZIP_BODY
    # The worker stored it in its own subdirectory, and validated it the second time.
    assert [p.name for p in tmp_path.iterdir()] == ["worker-0"]
    assert len(list((tmp_path / "worker-0").glob("*.entry"))) == 1
    assert [e.status for e in nginx.requests_log(uri_contains=tag, min_entries=2)] == [200, 304]


@pytest.mark.nginx
def test_local_engine_from_config_data(nginx: Nginx) -> None:
    config = aioduct.ClientConfig(cache=aioduct.CacheConfig(max_entries=10))
    tag = f"local-map-{next(_tags)}"
    url = f"{nginx.http_url}/etag?{tag}"
    with aioduct.LocalEngine(workers=1, config=config) as engine:
        results = [next(iter(engine.map([url]))) for _ in range(2)]
    assert [r.status for r in results] == [200, 200]
    assert results[0].body == results[1].body == GZIP_BODY


# -- docs/cache.md ----------------------------------------------------------------------------


@pytest.mark.nginx
def test_docs_examples_run(nginx: Nginx, tmp_path: Path) -> None:
    import contextlib
    import io
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "cache.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 3
    for n, block in enumerate(blocks):
        code = block.replace('"https://www.example.org/"', repr(f"{nginx.http_url}/etag?doc{n}"))
        code = code.replace("/tmp/", f"{tmp_path}/")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"docs/cache.md block {n + 1}", "exec"), {})
        assert out.getvalue()
    assert (tmp_path / "aioduct-cache-example").is_dir()
    assert (tmp_path / "aioduct-local-cache" / "worker-0").is_dir()


def test_compressed_entries_are_decoded_when_served(script_server: ScriptServer, kind: str) -> None:
    import gzip

    text = b"cached and compressed " * 100
    seen = scripted(
        script_server,
        "/gz",
        (
            200,
            [("Cache-Control", "max-age=600"), ("Content-Encoding", "gzip")],
            gzip.compress(text),
        ),
    )
    cache = aioduct.Cache()
    url = script_server.url + "/gz"

    async def main() -> list[bytes]:
        async with aioduct.Client(cache=cache) as client:
            got = [(await client.get(url)).content]
            async with client.stream("GET", url) as r:
                assert r.cache_status == "hit"
                got.append(b"".join([c async for c in r.aiter_bytes()]))
            return got

    if kind == "async":
        bodies = aioduct.run(main())
    else:
        with aioduct.BlockingClient(cache=cache) as client:
            bodies = [client.get(url).content]
            with client.stream("GET", url) as r:
                bodies.append(b"".join(r.iter_bytes()))
    assert bodies == [text, text] and len(seen) == 1


def test_send_engine_takes_a_cache_object(script_server: ScriptServer) -> None:
    seen = scripted(script_server, "/se", (200, [("Cache-Control", "max-age=600")], b"se"))
    cache = aioduct.Cache()
    url = script_server.url + "/se"
    with aioduct.SendEngine(concurrency=2, cache=cache) as engine:
        first = list(engine.map([url]))
        second = list(engine.map([url, url]))
    assert [r.body for r in first + second] == [b"se"] * 3 and len(seen) == 1


def test_processes_sharing_a_directory_keep_the_union(tmp_path: Path) -> None:
    # Two stores on one directory stand for two processes (curl CVE-2023-23915: parallel
    # writers of one cache file lost each other's entries).
    a = DirectoryStore(tmp_path, 10**7, 1000)
    b = DirectoryStore(tmp_path, 10**7, 1000)

    def entry(i: int) -> aioduct.cache.Entry:
        return aioduct.cache.Entry(f"u{i}", 200, "OK", "1.1", (), b"%d" % i, 0.0, 0.0)

    def write(store: DirectoryStore, start: int) -> None:
        for i in range(start, 200, 2):
            store.save(f"k{i}", [entry(i)])

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in (a, b, DirectoryStore(tmp_path, 10**7, 1000)):
        assert all(store.load(f"k{i}") == [entry(i)] for i in range(200))


@pytest.mark.nginx
def test_cache_over_http2(nginx: Nginx, tls_ca: Any) -> None:
    tag = f"cache-h2-{next(_tags)}"
    url = f"{nginx.https_url}/etag?{tag}"

    async def main() -> list[tuple[str | None, str]]:
        async with aioduct.Client(cache=aioduct.Cache(), verify=tls_ca.ca_pem_path) as client:
            first = await client.get(url)
            second = await client.get(url, headers={"Cache-Control": "no-cache"})
            assert first.content == second.content == GZIP_BODY
            return [(r.cache_status, r.http_version) for r in (first, second)]

    assert aioduct.run(main()) == [("miss", "HTTP/2"), ("revalidated", "HTTP/2")]
    assert [e.status for e in nginx.requests_log(uri_contains=tag, min_entries=2)] == [200, 304]
