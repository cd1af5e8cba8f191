"""requests: one Session per thread (Sessions are not thread-safe)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests

from benches.harness import Fetched, SyncFetch
from benches.scenarios import Target


def unsupported(target: Target) -> str | None:
    return "no HTTP/2 (h2c) mode in this adapter" if target.http2 else None


@contextmanager
def open_sync(target: Target) -> Iterator[SyncFetch]:
    with requests.Session() as session:
        if not target.keepalive:
            # no_pool: requests has no keep-alive switch; "Connection: close" makes nginx close
            # after each response, so urllib3 opens a new connection every time (session reused).
            session.headers["Connection"] = "close"
        url, body = target.url, target.body

        if target.method == "POST":

            def fetch() -> Fetched:
                r = session.post(url, data=body)
                return r.status_code, r.content

        elif target.decode == "json":

            def fetch() -> Fetched:
                r = session.get(url)
                return r.status_code, r.json()

        elif target.decode == "text":

            def fetch() -> Fetched:
                r = session.get(url)
                return r.status_code, r.text

        else:

            def fetch() -> Fetched:
                r = session.get(url)
                return r.status_code, r.content

        yield fetch
