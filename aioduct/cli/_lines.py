"""A crawl's output line for one Result, made where the Result is.

``aioduct crawl`` hands :func:`line` to its engine as the ``process=`` function, so with
the local engine each JSON line is encoded -- and each ``--save-bodies`` file written --
in the worker that fetched the page, and only the finished line crosses to the parent,
which appends it to the output and records its id for ``--resume``. The parent encodes
the few lines of Results that never reached a worker's function (no response: the
function only sees responses) with the same code, so every line has one shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import msgspec

from ..jobs import Result

__all__ = ["LINE", "line"]

#: ``line`` as a ``process=`` import string.
LINE: Final = "aioduct.cli._lines:line"
#: Body files per directory under --save-bodies.
BODIES_PER_DIR: Final = 10_000

_encoder = msgspec.json.Encoder()
#: Directories this process made already (one ``mkdir`` each, not one per body).
_made: set[Path] = set()


def line(result: Result, *, include_body: bool = False, bodies: str | None = None) -> bytes:
    """``result`` as a JSON line: ``body`` is null unless ``include_body`` (base64), and
    with ``bodies`` the body is written to ``bodies/<id // 10000>/<id>`` and that path
    added as ``body_path``."""
    body_path = None
    if bodies is not None and result.body:  # a 204 or a HEAD has no body to save
        body_path = save_body(Path(bodies), result.id, result.body)
    if not include_body:
        result.body = None
    buffer = bytearray()
    _encoder.encode_into(result, buffer)
    if body_path is not None:
        del buffer[-1]  # the closing brace: one more key follows
        buffer += b',"body_path":'
        _encoder.encode_into(body_path, buffer, -1)
        buffer += b"}"
    buffer += b"\n"
    return bytes(buffer)


def save_body(bodies: Path, job_id: object, body: bytes) -> str:
    number = job_id if isinstance(job_id, int) else 0
    folder = bodies / f"{number // BODIES_PER_DIR:04d}"
    if folder not in _made:
        folder.mkdir(parents=True, exist_ok=True)
        _made.add(folder)
    path = folder / str(job_id)
    path.write_bytes(body)
    return str(path)
