"""ClientConfig is data: it validates, round-trips through msgpack, and teaches on typos."""

from __future__ import annotations

import msgspec
import pytest

import aioduct
from aioduct import ClientConfig


def test_roundtrip_through_msgpack_is_equal() -> None:
    cfg = ClientConfig(
        timeout=30,
        max_redirects=5,
        headers={"X-A": "1"},
        cert=("c.pem", "k.pem"),
        verify="/tmp/ca.pem",
        base_url="http://example.com/api/",
    )
    wire = msgspec.msgpack.encode(cfg)
    assert msgspec.msgpack.decode(wire, type=ClientConfig) == cfg
    assert ClientConfig.decode(cfg.encode()) == cfg
    assert cfg.timeout == 30.0 and isinstance(cfg.timeout, float)
    assert cfg.headers == (("X-A", "1"),)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"timeout": -1}, ValueError, "timeout must be a finite number of seconds >= 0"),
        ({"read_timeout": float("inf")}, ValueError, "read_timeout"),
        ({"connect_timeout": "5"}, TypeError, "connect_timeout must be a number"),
        ({"max_redirects": -1}, ValueError, "max_redirects must be an integer >= 0"),
        ({"max_connections": 0}, ValueError, "max_connections must be an integer >= 1"),
        ({"cert": ("only-one",)}, ValueError, "cert must be a path or"),
        ({"base_url": "nope"}, aioduct.InvalidURL, "missing scheme"),
        ({"headers": {"X A": "1"}}, ValueError, "invalid headers option: invalid header name"),
        ({"headers": {"X-A": "1\r\nX-B: 2"}}, ValueError, "value contains CR"),
    ],
)
def test_bad_values_are_rejected_clearly(options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        ClientConfig(**options)


def test_http2_flood_bound_is_checked() -> None:
    with pytest.raises(ValueError, match=r"max_unproductive_frames must be an integer in \[16,"):
        aioduct.Http2Config(max_unproductive_frames=15)
    cfg = ClientConfig(http2_config=aioduct.Http2Config(max_unproductive_frames=100))
    assert ClientConfig.decode(cfg.encode()) == cfg


def test_bad_values_are_rejected_on_decode_too() -> None:
    wire = msgspec.msgpack.encode({"timeout": -5.0})
    with pytest.raises(ValueError, match="timeout must be"):
        ClientConfig.decode(wire)
    with pytest.raises(ValueError, match="invalid ClientConfig"):
        ClientConfig.decode(msgspec.msgpack.encode({"max_redirects": "ten"}))


def test_unknown_option_suggests_the_right_name() -> None:
    with pytest.raises(
        TypeError, match=r"unknown client option 'timout' \(did you mean 'timeout'\?\)"
    ):
        aioduct.Client(timout=3)
    with pytest.raises(TypeError, match="unknown client option"):
        ClientConfig().replace(retries=3)


def test_client_and_config_take_the_same_names() -> None:
    cfg = ClientConfig(max_redirects=3, referer=True)
    assert aioduct.Client(max_redirects=3, referer=True).config == cfg
    assert aioduct.Client(config=cfg).config is cfg
    assert aioduct.Client(config=cfg, referer=False).config.referer is False
