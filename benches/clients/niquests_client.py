"""niquests, sync: one Session per thread.

Chosen over AsyncSession because it measured faster here on every HTTP/1.1 scenario
(`--clients niquests-async` runs the other one).

TLS: ``verify=`` the run's CA file; HTTP/2 (niquests' default over TLS) is disabled except
in the h2 scenario, where each thread's Session has its own h2 connection. gzip: decoded
by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import niquests

from benches.clients import quic_prior_knowledge, verify_per_request
from benches.harness import Fetched, SyncFetch
from benches.scenarios import Target

#: The h3_* scenarios run with this adapter (HTTP/3 with prior knowledge).
HTTP3 = True


def unsupported(target: Target) -> str | None:
    return "no h2c (prior knowledge) mode in this adapter" if target.h2c else None


@contextmanager
def open_sync(target: Target) -> Iterator[SyncFetch]:
    with niquests.Session(
        disable_http2=target.tls and not target.http2 and not target.h3,
        quic_cache_layer=quic_prior_knowledge(target),
    ) as session:
        session.headers.update(target.headers)
        if not target.keepalive:
            # no_pool: no keep-alive switch; "Connection: close" forces a new connection per
            # request while the session is reused.
            session.headers["Connection"] = "close"
        url, body = target.url, target.body
        get, post = verify_per_request(target, session.get, session.post)

        if target.method == "POST":

            def fetch() -> Fetched:
                r = post(url, data=body)
                return r.status_code or 0, r.content

        elif target.decode == "json":

            def fetch() -> Fetched:
                r = get(url)
                return r.status_code or 0, r.json()

        elif target.decode == "text":

            def fetch() -> Fetched:
                r = get(url)
                return r.status_code or 0, r.text

        else:

            def fetch() -> Fetched:
                r = get(url)
                return r.status_code or 0, r.content

        yield fetch
