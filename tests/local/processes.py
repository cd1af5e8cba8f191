"""``process=`` functions the local-engine tests run in worker processes."""

from __future__ import annotations

import hashlib
from typing import Any

from aioduct import Result


def digest(result: Result) -> dict[str, Any]:
    """What a crawler extracts: a little of everything the worker had."""
    body = result.body or b""
    return {
        "sha256": hashlib.sha256(body).hexdigest(),
        "length": len(body),
        "type": dict(result.headers).get("Content-Type"),
        "id": result.id,
        "meta": result.meta,
    }


def fails_on_odd_ids(result: Result) -> int:
    if isinstance(result.id, int) and result.id % 2:
        raise ValueError(f"odd id {result.id}")
    return len(result.body or b"")


def unencodable(result: Result) -> object:
    return object()


not_a_function = 42


def scaled(result: Result, *, factor: int, label: str = "") -> list[object]:
    return [len(result.body or b"") * factor, label]
