"""requests: one Session per thread (Sessions are not thread-safe).

TLS: ``Session.verify`` = the run's CA file; no HTTP/2. gzip: urllib3 decodes by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests

from benches.clients import verify_per_request
from benches.harness import Fetched, SyncFetch
from benches.scenarios import Target


def unsupported(target: Target) -> str | None:
    return "no HTTP/2 in requests" if target.http2 else None


@contextmanager
def open_sync(target: Target) -> Iterator[SyncFetch]:
    with requests.Session() as session:
        session.headers.update(target.headers)
        if not target.keepalive:
            # no_pool: requests has no keep-alive switch; "Connection: close" makes nginx close
            # after each response, so urllib3 opens a new connection every time (session reused).
            session.headers["Connection"] = "close"
        url, body = target.url, target.body
        get, post = verify_per_request(target, session.get, session.post)

        if target.method == "POST":

            def fetch() -> Fetched:
                r = post(url, data=body)
                return r.status_code, r.content

        elif target.decode == "json":

            def fetch() -> Fetched:
                r = get(url)
                return r.status_code, r.json()

        elif target.decode == "text":

            def fetch() -> Fetched:
                r = get(url)
                return r.status_code, r.text

        else:

            def fetch() -> Fetched:
                r = get(url)
                return r.status_code, r.content

        yield fetch
