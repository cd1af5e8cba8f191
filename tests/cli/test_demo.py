"""``aioduct demo`` runs both engines over many origins and reports zero errors."""

from __future__ import annotations

from .conftest import aioduct


def test_small_demo_is_green() -> None:
    ran = aioduct("demo", "--urls", "2000", "--origins", "8")
    assert ran.code == 0, ran.stdout + ran.stderr
    rows = {line.split()[0]: line.split() for line in ran.stdout.splitlines() if line.strip()}
    for engine in ("send", "local"):
        assert rows[engine][-1] == "0", ran.stdout  # the errors column
    assert "2,000 pages" in ran.stdout
