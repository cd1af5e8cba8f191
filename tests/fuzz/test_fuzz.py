"""The CI budget of the protocol fuzz harness (:mod:`aioduct.testing.fuzz`): a few seconds.

Each target runs ``AIODUCT_FUZZ_EXAMPLES`` random cases (default 200, under a second each
on one core; HTTP/2 splits them between both HPACK coders): arbitrary server bytes into
the HTTP/1.1 codec and the HTTP/2 protocol, with only aioduct's errors allowed out,
memory per connection bounded and calls per byte bounded. The long run is by hand:
``taskset -c 0 python -m aioduct.testing.fuzz --seconds 600``.
"""

from __future__ import annotations

import os

import pytest

import aioduct.protocol.http2 as protocol
from aioduct.testing import fuzz

EXAMPLES = int(os.environ.get("AIODUCT_FUZZ_EXAMPLES", "200"))


def test_http11_codec_takes_any_server_bytes() -> None:
    fuzz.fuzz_h1(EXAMPLES)
    assert fuzz.STATS["h1"].cases >= EXAMPLES


@pytest.mark.parametrize("backend", ["jh2", "hpack"])
def test_http2_protocol_takes_any_server_bytes(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "hpack":
        monkeypatch.setattr(protocol, "_rust_hpack", None)
    elif protocol._rust_hpack is None:
        pytest.skip("jh2 is not installed")
    fuzz.fuzz_h2(EXAMPLES // 2)
    assert fuzz.STATS["h2"].cases >= EXAMPLES // 2


def test_a_bound_that_breaks_is_reported() -> None:
    """The harness itself: a case over its memory bound fails, naming the numbers."""

    def hog() -> None:
        hog.kept = bytearray(fuzz.MEMORY_BOUND + 1)  # type: ignore[attr-defined]

    with pytest.raises(AssertionError, match="bytes at peak"):
        fuzz._measure("h1", [b"x"], hog)
