"""Behaviour kept by the local engine's CPU shortcuts (no timings asserted here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aioduct import Job
from aioduct.local import wire


@pytest.mark.parametrize(
    ("kwargs", "field", "expected"),
    [
        ({}, "headers", ()),
        ({"headers": []}, "headers", ()),
        ({"headers": {}}, "headers", ()),
        ({"headers": {"A": "1"}}, "headers", (("A", "1"),)),
        ({"headers": [["A", "1"]]}, "headers", (("A", "1"),)),
        ({"headers": (("A", "1"),)}, "headers", (("A", "1"),)),
        ({"method": "get"}, "method", "GET"),
        ({"method": "Post"}, "method", "POST"),
        ({"method": "GET"}, "method", "GET"),
        ({"body": bytearray(b"ab")}, "body", b"ab"),
        ({"body": memoryview(b"ab")}, "body", b"ab"),
        ({"body": b"ab"}, "body", b"ab"),
    ],
)
def test_job_normalizes_its_fields(kwargs: dict[str, object], field: str, expected: object) -> None:
    job = Job(url="http://a/", **kwargs)  # type: ignore[arg-type]
    value = getattr(job, field)
    assert value == expected
    assert type(value) is type(expected)
    # and the same after a trip over the wire, where __post_init__ runs again
    out = bytearray()
    wire.append_frame(out, wire.JOBS, ([1], [job], {}))
    ((_, decoded),) = wire.FrameReader().feed(out)
    assert isinstance(decoded, wire.JobBatch) and decoded.jobs == [job]


def test_worker_malloc_tuning_is_harmless() -> None:
    code = (
        "from aioduct.local.worker import _tune_malloc\n"
        "_tune_malloc(); _tune_malloc()\n"
        "big = [bytes(1 << 20) for _ in range(8)]; del big\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
