"""The decoders alone (aioduct.decompress is pure): every coding, split anywhere, bounded.

The same bodies go through real servers and every client driver in test_clients.py; here
each property is pinned down where it lives: pieces never exceed the step whatever the
input, a stream split at any byte decodes the same, the chain cap counts every header
line, and truncated or corrupt streams are refused.
"""

from __future__ import annotations

import zlib

import pytest
import zstandard

from aioduct import BodyTooLarge, DecodeError, decompress
from aioduct.decompress import (
    MAX_CODINGS,
    ContentDecoder,
    decode_body,
    parse_codings,
    response_codings,
)

from .bodies import GIB, MIB, bomb, encode, encode_chain


@pytest.fixture(autouse=True, params=["zlib", "zlib_ng"])
def zlib_module(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test with the standard library's zlib and with zlib-ng (aioduct[speedups])."""
    module = zlib if request.param == "zlib" else pytest.importorskip("zlib_ng.zlib_ng")
    monkeypatch.setattr(decompress, "_zlib", module)


DATA = b"".join(b"line %d of a compressible body\n" % i for i in range(5000))
CODINGS = ["gzip", "deflate", "deflate-raw", "br", "zstd"]


def wire_name(coding: str) -> str:
    return "deflate" if coding == "deflate-raw" else coding


def bound(coding: str, step: int) -> int:
    """The largest piece a decoder call may return (see aioduct.decompress)."""
    if coding == "zstd":  # fed in 128-byte slices: at most 33 blocks of 128 KiB per call
        return 33 * 128 * 1024
    if coding == "br":  # brotli stops growing its buffer (blocks of 32 KiB and up) past it
        return 2 * step + 32 * 1024
    return step


def decode_split(codings: list[str], body: bytes, size: int, step: int) -> list[bytes]:
    decoder = ContentDecoder(codings, step)
    pieces = [p for i in range(0, len(body), size) for p in decoder.decode(body[i : i + size])]
    return pieces + list(decoder.finish())


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("split", [1, 2, 3, 7, 1000, 1 << 30])
def test_a_stream_split_anywhere_decodes_the_same(coding: str, split: int) -> None:
    body = encode(coding, DATA)
    pieces = decode_split([wire_name(coding)], body, split, step=4096)
    assert b"".join(pieces) == DATA
    assert max(map(len, pieces)) <= bound(coding, 4096)


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
@pytest.mark.parametrize("split", [1, 3, 1 << 30])
def test_gzip_members_and_zstd_frames_follow_one_another(coding: str, split: int) -> None:
    body = encode(coding, DATA) + encode(coding, b"second") + encode(coding, b"")
    assert b"".join(decode_split([coding], body, split, step=MIB)) == DATA + b"second"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "zstd"])
def test_bytes_after_the_end_of_the_stream_are_ignored(coding: str) -> None:
    # As zlib and gzip(1) do ("trailing garbage ignored"); brotli's decoder refuses them.
    assert decode_body(encode(coding, DATA) + b"\r\n garbage", [coding], None) == DATA


@pytest.mark.parametrize(
    "chain", [["gzip", "br"], ["br", "gzip"], ["deflate", "zstd", "gzip"], ["zstd", "zstd"]]
)
def test_stacked_codings_are_undone_last_first(chain: list[str]) -> None:
    body = encode_chain(chain, DATA)
    assert decode_body(body, chain, None) == DATA
    assert b"".join(decode_split(chain, body, 5, step=1000)) == DATA


@pytest.mark.parametrize("coding", CODINGS)
def test_a_truncated_stream_is_a_decode_error(coding: str) -> None:
    body = encode(coding, DATA)
    with pytest.raises(DecodeError, match=r"truncated|corrupt"):
        decode_body(body[: len(body) // 2], [wire_name(coding)], None)


@pytest.mark.parametrize("coding", CODINGS)
def test_a_corrupt_stream_is_a_decode_error(coding: str) -> None:
    body = bytearray(encode(coding, DATA))
    middle = len(body) // 2
    body[middle : middle + 16] = b"\xff" * 16
    if coding == "deflate-raw":
        # Raw deflate has no checksum: only invalid structure shows, here a block type 3.
        body[0] = 0x07
    if coding == "zstd":
        # A zstd frame's checksum is optional: damage in a frame without one can pass.
        body = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(DATA))
        body[middle : middle + 16] = b"\xff" * 16
    name = wire_name(coding)
    # (a corrupt stream may also read as one that does not end)
    with pytest.raises(DecodeError, match=f"corrupt {name} body|{name} body is truncated"):
        decode_body(bytes(body), [wire_name(coding)], None)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_an_empty_body_decodes_to_nothing(coding: str) -> None:
    # An empty body with a Content-Encoding (servers send them) is no stream at all.
    assert decode_body(b"", [coding], None) == b""
    assert decode_body(encode(coding, b""), [coding], None) == b""


def test_not_a_stream_at_all_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="corrupt gzip body"):
        decode_body(b"this is plain text", ["gzip"], None)
    with pytest.raises(DecodeError, match="corrupt zstd body"):
        decode_body(b"this is plain text", ["zstd"], None)


def test_parse_codings() -> None:
    assert parse_codings([]) == ()
    assert parse_codings(["identity"]) == ()
    assert parse_codings(["GZIP"]) == ("gzip",)
    assert parse_codings(["gzip, br", " zstd "]) == ("gzip", "br", "zstd")
    assert parse_codings(["x-gzip"]) == ("x-gzip",)
    # An unknown coding anywhere: the body is left as sent, Content-Encoding says what it is.
    assert parse_codings(["gzip, compress"]) == ()
    assert parse_codings(["foo"]) == ()


def test_the_chain_is_capped_like_urllib3_and_curl() -> None:
    # urllib3 CVE-2025-66418 / curl CVE-2022-32206: 6 codings fail, 5 are decoded.
    six = "gzip, deflate, br, zstd, gzip, deflate"
    with pytest.raises(
        DecodeError, match=f"too many content codings in the chain: 6 > {MAX_CODINGS}"
    ):
        parse_codings([six])
    five = ["gzip", "deflate", "br", "zstd", "gzip"]
    assert parse_codings([", ".join(five)]) == tuple(five)
    assert decode_body(encode_chain(five, DATA), five, None) == DATA


def test_the_chain_cap_counts_every_header_line() -> None:
    # curl CVE-2023-23916: a cap per line is bypassed by repeating the header.
    with pytest.raises(DecodeError, match="6 > 5"):
        parse_codings(["gzip"] * 6)


def test_bodyless_responses_are_never_decoded() -> None:
    assert response_codings("HEAD", 200, ["gzip"]) == ()
    assert response_codings("GET", 204, ["gzip"]) == ()
    assert response_codings("GET", 304, ["gzip"]) == ()
    assert response_codings("GET", 103, ["gzip"]) == ()
    assert response_codings("GET", 200, ["gzip"]) == ("gzip",)
    # and a bodyless response's header is not even checked
    assert response_codings("HEAD", 200, ["gzip"] * 10) == ()


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_a_bomb_is_refused_at_the_limit_without_decoding_the_rest(coding: str) -> None:
    body = bomb(coding, 2 * GIB)
    with pytest.raises(BodyTooLarge, match=f"max_body_size={MIB}"):
        decode_body(body, [coding], MIB)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_a_bomb_streams_out_in_bounded_pieces(coding: str) -> None:
    decoder = ContentDecoder([coding], step=64 * 1024)
    body = bomb(coding, 2 * GIB)
    seen = 0
    for start in range(0, len(body), 65536):
        for piece in decoder.decode(body[start : start + 65536]):
            assert len(piece) <= bound(coding, 65536)
            seen += len(piece)
            if seen > 16 * MIB:
                return
    raise AssertionError("the bomb never produced 16 MiB")


def test_a_bomb_inside_a_chain_is_bounded_at_every_stage() -> None:
    # gzip(bomb) inside br: the inner stage's output is bounded too, not just the last.
    inner = bomb("gzip", GIB)
    body = encode("br", inner)
    decoder = ContentDecoder(["gzip", "br"], step=65536)
    seen = 0
    for piece in decoder.decode(body):
        assert len(piece) <= 65536
        seen += len(piece)
        if seen > 8 * MIB:
            break
    assert seen > 8 * MIB
