"""niquests, sync: one Session per thread.

Chosen over AsyncSession because it measured faster here on every HTTP/1.1 scenario
(`--clients niquests-async` runs the other one).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import niquests

from benches.harness import Fetched, SyncFetch
from benches.scenarios import Target


def unsupported(target: Target) -> str | None:
    return "no HTTP/2 (h2c) mode in this adapter" if target.http2 else None


@contextmanager
def open_sync(target: Target) -> Iterator[SyncFetch]:
    with niquests.Session() as session:
        if not target.keepalive:
            # no_pool: no keep-alive switch; "Connection: close" forces a new connection per
            # request while the session is reused.
            session.headers["Connection"] = "close"
        url, body = target.url, target.body

        if target.method == "POST":

            def fetch() -> Fetched:
                r = session.post(url, data=body)
                return r.status_code or 0, r.content

        elif target.decode == "json":

            def fetch() -> Fetched:
                r = session.get(url)
                return r.status_code or 0, r.json()

        elif target.decode == "text":

            def fetch() -> Fetched:
                r = session.get(url)
                return r.status_code or 0, r.text

        else:

            def fetch() -> Fetched:
                r = session.get(url)
                return r.status_code or 0, r.content

        yield fetch
