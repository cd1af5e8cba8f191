"""The benchmark scenarios and the per-run `Target` a client subprocess measures.

A `Scenario` is what the runner knows (a path, a shape); a `Target` is what a worker needs:
the absolute URL plus the reference answer the parent fetched once with the standard library,
so every client is checked against the same bytes rather than against its own idea of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

Decode = Literal["bytes", "text", "json"]


@dataclass(frozen=True)
class Scenario:
    """One row group of the report: a request shape against one nginx location."""

    name: str
    path: str
    decode: Decode = "bytes"
    method: str = "GET"
    body_size: int = 0
    concurrency: int = 1
    keepalive: bool = True
    http2: bool = False
    """h2c with prior knowledge against nginx's cleartext HTTP/2 listener."""
    one_at_a_time: bool = False
    """Bulk engines too send each request only after the previous answer (``request()``,
    not a queue of jobs): the round-trip latency a blocking caller sees."""

    @property
    def title(self) -> str:
        shape = "sequential" if self.concurrency == 1 else f"{self.concurrency} in flight"
        if self.one_at_a_time:
            shape += ", one request at a time (latency)"
        if self.http2:
            shape += " over one h2c connection" if self.concurrency > 1 else ", h2c"
        if not self.keepalive:
            shape += ", new connection per request"
        body = f" {self.body_size // 1024} KiB" if self.body_size else ""
        read = {"bytes": "read bytes", "text": "decode text", "json": "decode JSON"}[self.decode]
        return f"{self.method}{body} {self.path}, {read}, {shape}"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("get_small", "/small"),
        Scenario("latency", "/small", one_at_a_time=True),
        Scenario("get_text", "/text", decode="text"),
        Scenario("get_json", "/json", decode="json"),
        Scenario("post_4k", "/post", method="POST", body_size=4096),
        Scenario("download_64k", "/bytes/64k"),
        Scenario("download_1m", "/bytes/1m"),
        Scenario("concurrent_10", "/small", concurrency=10),
        Scenario("concurrent_50", "/small", concurrency=50),
        Scenario("no_pool", "/small", keepalive=False),
        Scenario("h2c_get", "/small", http2=True),
        Scenario("h2c_64k", "/bytes/64k", http2=True),
        Scenario("h2c_1m", "/bytes/1m", http2=True),
        Scenario("h2c_concurrent_10", "/small", concurrency=10, http2=True),
        Scenario("h2c_post_4k", "/post", method="POST", body_size=4096, http2=True),
    )
}

#: The HTTP/2 scenarios, which only clients with an HTTP/2 mode run.
H2_SCENARIOS: tuple[str, ...] = tuple(name for name, s in SCENARIOS.items() if s.http2)


@dataclass(frozen=True)
class Target:
    """Everything a worker needs: what to send and what a correct answer looks like.

    `length` is the body length in bytes, or in characters for `decode == "text"`.
    `sha256` is checked once per worker slot (cheap enough off the hot path); the length,
    text or JSON value is checked on every response.
    """

    scenario: str
    method: str
    url: str
    body_size: int
    decode: Decode
    concurrency: int
    keepalive: bool
    status: int
    length: int
    sha256: str
    text: str | None = None
    json_value: Any = None
    mirrors: tuple[str, ...] = ()
    """The same location on other origins of the same nginx (other ports): a client that
    shards by origin, like the local engine, needs several origins to use several workers."""
    http2: bool = False
    one_at_a_time: bool = False

    @property
    def body(self) -> bytes | None:
        return b"x" * self.body_size if self.body_size else None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        data = dict(data)
        data["mirrors"] = tuple(data.get("mirrors", ()))
        return cls(**data)


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip('"')
    return "utf-8"


def reference_target(
    scenario: Scenario,
    base_url: str,
    mirror_bases: tuple[str, ...] = (),
    h2c_url: str | None = None,
) -> Target:
    """Fetch the scenario's URL once with http.client and freeze the answer as the reference.

    HTTP/2 scenarios are measured against ``h2c_url`` (the same locations over h2c); the
    reference comes from the HTTP/1.1 origin, since http.client has no HTTP/2.
    """
    url = base_url.rstrip("/") + scenario.path
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        body_out = b"x" * scenario.body_size if scenario.body_size else None
        conn.request(scenario.method, parts.path, body=body_out)
        resp = conn.getresponse()
        raw = resp.read()
        content_type = resp.getheader("Content-Type", "")
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"reference {scenario.method} {url} answered {resp.status}")
    text = raw.decode(_charset(content_type)) if scenario.decode == "text" else None
    if scenario.http2:
        if h2c_url is None:
            raise ValueError(f"scenario {scenario.name} needs the h2c origin")
        url = h2c_url.rstrip("/") + scenario.path
    return Target(
        scenario=scenario.name,
        method=scenario.method,
        url=url,
        http2=scenario.http2,
        one_at_a_time=scenario.one_at_a_time,
        body_size=scenario.body_size,
        decode=scenario.decode,
        concurrency=scenario.concurrency,
        keepalive=scenario.keepalive,
        status=resp.status,
        length=len(text) if text is not None else len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        text=text,
        json_value=json.loads(raw) if scenario.decode == "json" else None,
        mirrors=tuple(base.rstrip("/") + scenario.path for base in mirror_bases),
    )
