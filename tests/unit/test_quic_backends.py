"""Choosing the QUIC library (aioduct.quic): ``auto``, the environment override, and
the error that names the pip extra when the one asked for is not installed."""

from __future__ import annotations

import sys

import pytest

import aioduct
from aioduct.quic import load_backend, resolve_backend


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIODUCT_HTTP3_BACKEND", raising=False)


def hide(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make ``package`` not importable, as if it were not installed."""
    monkeypatch.setitem(sys.modules, package, None)


def test_auto_prefers_qh3_then_aioquic(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_backend("auto") == "qh3"
    hide(monkeypatch, "qh3")
    assert resolve_backend("auto") == "aioquic"
    assert load_backend("auto").name == "aioquic"
    hide(monkeypatch, "aioquic")
    with pytest.raises(aioduct.EngineUnavailable, match=r"aioduct\[http3-fast\]"):
        resolve_backend("auto")


def test_the_environment_steers_auto_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIODUCT_HTTP3_BACKEND", "aioquic")
    assert resolve_backend("auto") == "aioquic"
    assert resolve_backend("qh3") == "qh3"
    monkeypatch.setenv("AIODUCT_HTTP3_BACKEND", "quiche")
    with pytest.raises(aioduct.EngineUnavailable, match="AIODUCT_HTTP3_BACKEND='quiche'"):
        resolve_backend("auto")


@pytest.mark.parametrize(("backend", "extra"), [("qh3", "http3-fast"), ("aioquic", "http3")])
def test_a_missing_backend_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, backend: str, extra: str
) -> None:
    hide(monkeypatch, backend)
    config = aioduct.Http3Config(backend=backend)
    with pytest.raises(aioduct.EngineUnavailable) as caught:
        aioduct.Client(http3_prior_knowledge=True, http3_config=config)
    message = str(caught.value)
    assert f"'{backend}' is not installed" in message
    assert f"pip install 'aioduct[{extra}]'" in message
    with pytest.raises(aioduct.EngineUnavailable, match=extra):
        aioduct.BlockingClient(http3=True, http3_config=config)
    # A client that never uses HTTP/3 does not care.
    aioduct.BlockingClient(http3_config=config).close()


def test_a_missing_backend_for_one_request(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "qh3")
    config = aioduct.Http3Config(backend="qh3")
    with (
        aioduct.BlockingClient(http3_config=config) as client,
        pytest.raises(aioduct.EngineUnavailable, match=r"aioduct\[http3-fast\]"),
    ):
        client.get("https://127.0.0.1:9/", version="3")


def test_an_unknown_backend_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="backend must be 'auto', 'qh3' or 'aioquic'"):
        aioduct.Http3Config(backend="quiche")
