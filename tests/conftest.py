"""Shared fixtures: a real nginx, scriptable servers, a test CA -- and ``async def`` tests.

Everything here works under pytest-xdist: session fixtures are per worker process, every
server binds 127.0.0.1 on a port the kernel picks, and every server is stopped by a
finalizer (nginx additionally by ``atexit`` and a parent-death signal).

Async tests need no plugin: an ``async def test_...`` runs in a fresh event loop of its
own (``asyncio.Runner``), with its fixtures passed as usual.  Mark it
``@pytest.mark.uvloop`` to run it on uvloop instead.  Async *fixtures* are not supported
(the servers run on their own threads, so none are needed).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aioduct.testing.nginx import NGINX_MISSING_REASON, Nginx, TLSMaterial, nginx_binary
from aioduct.testing.server import BadTLSServers, ScriptServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "uvloop: run this async test on a uvloop event loop (skipped without uvloop)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use the nginx fixture get the `nginx` marker, so `-m "not nginx"` works
    # without every test remembering to mark itself.
    for item in items:
        if "nginx" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.nginx)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests to completion on a fresh loop (pytest cannot by itself)."""
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    if pyfuncitem.get_closest_marker("asyncio") is not None:
        return None  # explicitly handed to pytest-asyncio, should it be installed
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if pyfuncitem.get_closest_marker("uvloop") is not None:
        uvloop = pytest.importorskip("uvloop")
        loop_factory = uvloop.new_event_loop
    kwargs: dict[str, Any] = {
        name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames
    }
    with asyncio.Runner(debug=False, loop_factory=loop_factory) as runner:
        runner.run(func(**kwargs))
    return True


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1 / alt.localhost.

    ``tls_ca.ca_pem_path`` is the client's ``verify=``; ``tls_ca.client_ssl_context()``
    trusts only this CA; ``tls_ca.server_ssl_context()`` serves the certificate;
    ``tls_ca.ca`` is the ``trustme.CA`` for issuing more.
    """
    return TLSMaterial.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory, tls_ca: TLSMaterial) -> Iterator[Nginx]:
    """One nginx per xdist worker with every standard location, on four origins
    (``http_url``, ``alt_http_url``, ``https_url``/``alt_https_url``, ``h2c_url``).

    It is shared by all tests of the worker: to look only at your own requests in the
    access log, bookmark with ``pos = nginx.log_position()`` and pass ``since=pos``.
    """
    if nginx_binary() is None:
        pytest.skip(NGINX_MISSING_REASON)
    with Nginx(tmp_path_factory.mktemp("nginx"), tls=tls_ca.files) as ngx:
        yield ngx


@pytest.fixture
def script_server() -> Iterator[ScriptServer]:
    """A plain-HTTP :class:`ScriptServer` for this test; handler errors fail the test."""
    srv = ScriptServer().start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def tls_script_server(tls_ca: TLSMaterial) -> Iterator[ScriptServer]:
    """A :class:`ScriptServer` over TLS (``https://localhost:PORT``) with the test CA's
    certificate: clients verify it with ``tls_ca.ca_pem_path``."""
    srv = ScriptServer(tls=tls_ca.server_ssl_context()).start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="session")
def bad_tls_servers(tls_ca: TLSMaterial) -> Iterator[BadTLSServers]:
    """HTTPS URLs (``.expired``, ``.wrong_host``, ``.unknown_ca``) whose certificates a
    client trusting ``tls_ca`` must reject; see :class:`BadTLSServers` for the errors."""
    with BadTLSServers.start(tls_ca.ca) as servers:
        yield servers


@pytest.fixture(params=["aioquic", "qh3"])
def quic_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per QUIC library (aioduct.quic): ``Http3Config(backend="auto")``
    follows ``AIODUCT_HTTP3_BACKEND``, which the local engine's workers inherit."""
    backend: str = request.param
    monkeypatch.setenv("AIODUCT_HTTP3_BACKEND", backend)
    return backend


# -- "passed" means "ran" ----------------------------------------------------------------------
# A test that needs a server binary or io_uring and skips for want of it has proven nothing:
# the run fails unless AIODUCT_ALLOW_SKIP=1 says a partial run is what was wanted.


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    import os

    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped or os.environ.get("AIODUCT_ALLOW_SKIP") == "1":
        return
    terminalreporter.section("skipped tests fail this run", sep="=", red=True, bold=True)
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        terminalreporter.write_line(f"{report.nodeid}: {reason}")
    terminalreporter.write_line(
        f"{len(skipped)} test(s) skipped: install what they need (./scripts/setup and "
        ".ci/run say how) or set AIODUCT_ALLOW_SKIP=1 for a partial run"
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import os

    if os.environ.get("AIODUCT_ALLOW_SKIP") == "1" or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
