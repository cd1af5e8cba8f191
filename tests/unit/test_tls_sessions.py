"""SessionCache: which saved TLS session a new connection may offer."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest

from aioduct.testing.nginx import TLSMaterial
from aioduct.tls import SessionCache, SessionKey
from tests.protocol.test_tls import connect, read_all

NewSession = Callable[[], ssl.SSLSession]


@pytest.fixture(scope="module")
def contexts(tls_ca: TLSMaterial) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return tls_ca.client_ssl_context(), tls_ca.server_ssl_context()


@pytest.fixture
def new_session(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> NewSession:
    """A fresh, resumable session of the client context (a TLS 1.3 ticket), in memory."""

    def make() -> ssl.SSLSession:
        client, _server = connect(*contexts)
        read_all(client)  # the tickets
        session = client.ssl_object.session
        assert session is not None and session.has_ticket
        return session

    return make


def key(contexts: tuple[ssl.SSLContext, ssl.SSLContext], host: str = "localhost") -> SessionKey:
    return SessionKey(contexts[0], host, 443)


def test_the_latest_session_is_offered_until_replaced(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], new_session: NewSession
) -> None:
    cache = SessionCache()
    assert cache.get(key(contexts)) is None and cache.wants(key(contexts))
    first, second = new_session(), new_session()
    cache.save(key(contexts), first)
    assert not cache.wants(key(contexts))  # fresh: no need to fetch another
    assert cache.get(key(contexts)) is first
    assert cache.get(key(contexts)) is first  # offered again: getting does not use it up
    cache.save(key(contexts), second)
    assert cache.get(key(contexts)) is second and len(cache) == 1


def test_sessions_are_kept_apart_by_key(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    new_session: NewSession,
    tls_ca: TLSMaterial,
) -> None:
    cache = SessionCache()
    cache.save(key(contexts), new_session())
    other_settings = SessionKey(tls_ca.client_ssl_context(), "localhost", 443)
    assert cache.get(other_settings) is None
    assert cache.get(key(contexts, "127.0.0.1")) is None
    assert cache.get(SessionKey(contexts[0], "localhost", 8443)) is None
    assert cache.get(key(contexts)) is not None


def test_a_session_without_ticket_or_id_is_not_kept(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """A TLS 1.3 session before its ticket arrived cannot be resumed."""
    client, _server = connect(*contexts)  # the tickets are delivered, not read
    session = client.ssl_object.session
    assert session is not None and not session.has_ticket and not session.id
    cache = SessionCache()
    cache.save(key(contexts), session)
    cache.save(key(contexts), None)
    assert len(cache) == 0 and cache.wants(key(contexts))


def test_a_declined_session_is_no_longer_offered(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], new_session: NewSession
) -> None:
    cache = SessionCache()
    declined, newer = new_session(), new_session()
    cache.save(key(contexts), declined)
    cache.discard(key(contexts), declined)
    assert cache.get(key(contexts)) is None and cache.wants(key(contexts))
    cache.save(key(contexts), newer)
    cache.discard(key(contexts), declined)  # a late verdict on an older one changes nothing
    assert cache.get(key(contexts)) is newer


def test_bounded_in_servers_least_recently_used_first(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], new_session: NewSession
) -> None:
    cache = SessionCache(max_keys=2)
    cache.save(key(contexts, "a"), new_session())
    cache.save(key(contexts, "b"), new_session())
    assert cache.get(key(contexts, "a")) is not None  # "a" is now the most recently used
    cache.save(key(contexts, "c"), new_session())  # evicts "b"
    assert len(cache) == 2
    assert cache.get(key(contexts, "b")) is None
    assert cache.get(key(contexts, "a")) is not None
    assert cache.get(key(contexts, "c")) is not None


def test_aging_and_expiry(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], new_session: NewSession
) -> None:
    session = new_session()
    now = [float(session.time)]
    cache = SessionCache(clock=lambda: now[0])
    cache.save(key(contexts), session)
    now[0] += session.timeout / 2 - 1
    assert not cache.wants(key(contexts))
    now[0] += 1  # half its lifetime gone: offered still, but a fresh one is wanted
    assert cache.wants(key(contexts)) and cache.get(key(contexts)) is session
    now[0] = session.time + session.timeout  # expired: the server would refuse it
    assert cache.get(key(contexts)) is None
    assert len(cache) == 0
