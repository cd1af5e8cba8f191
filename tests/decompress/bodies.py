"""Encoded bodies for the decompression tests: each coding, stacks, bombs, corrupt streams.

Bombs are built without compressing gigabytes: a deflate block of 1 MiB of zeros ended by
a full flush (which resets the compressor's history) compresses the same way every time,
so repeating it makes a stream of any decoded size; zstd frames may follow one another.
The bombs never end (no trailer): a client must refuse them at its size limit long before.
"""

from __future__ import annotations

import functools
import gzip
import zlib

import brotli
import zstandard

MIB = 1024 * 1024
GIB = 1024 * MIB


def encode(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.compress(data, mtime=0)
    if coding == "deflate":  # zlib-wrapped, as RFC 9110 says
        return zlib.compress(data)
    if coding == "deflate-raw":  # what some servers send as "deflate"; browsers accept it
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return c.compress(data) + c.flush()
    if coding == "br":
        return bytes(brotli.compress(data))
    if coding == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(coding)


def encode_chain(codings: list[str], data: bytes) -> bytes:
    """``data`` with ``codings`` applied in order (as ``Content-Encoding`` lists them)."""
    for coding in codings:
        data = encode(coding, data)
    return data


@functools.cache
def zlib_bomb(coding: str, decoded: int) -> bytes:
    """A gzip or deflate stream of ``decoded`` zero bytes (and more: it never ends)."""
    wbits = 31 if coding == "gzip" else 15
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(MIB)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(block) + c.flush(zlib.Z_FULL_FLUSH) == again
    return first + again * (decoded // MIB)


@functools.cache
def zstd_bomb(decoded: int) -> bytes:
    frame = zstandard.ZstdCompressor().compress(bytes(64 * MIB))
    return frame * (decoded // (64 * MIB))


@functools.cache
def br_bomb(decoded: int) -> bytes:
    c = brotli.Compressor(quality=1)
    block = bytes(4 * MIB)
    return b"".join(bytes(c.process(block)) for _ in range(decoded // len(block)))


def bomb(coding: str, decoded: int) -> bytes:
    if coding == "br":
        return br_bomb(decoded)
    if coding == "zstd":
        return zstd_bomb(decoded)
    return zlib_bomb(coding, decoded)
