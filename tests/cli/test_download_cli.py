"""``aioduct download URL -o FILE --chunks N`` against nginx."""

from __future__ import annotations

from pathlib import Path

from aioduct.testing.nginx import Nginx, deterministic_bytes

from .conftest import aioduct


def test_download_command(nginx: Nginx, tmp_path: Path) -> None:
    out = tmp_path / "f.bin"
    ran = aioduct("download", nginx.http_url + "/bytes/1m", "-o", str(out), "--chunks", "4")
    assert ran.code == 0, ran.stderr
    assert out.read_bytes() == deterministic_bytes(1024 * 1024)
    assert "1.0 MB" in ran.stderr and "4 chunks" in ran.stderr


def test_download_command_reports_errors(nginx: Nginx, tmp_path: Path) -> None:
    ran = aioduct("download", nginx.http_url + "/bytes/none", "-o", str(tmp_path / "x"))
    assert ran.code == 2 and "404" in ran.stderr and "Traceback" not in ran.stderr
    ran = aioduct("download", nginx.http_url + "/bytes/1m", "--chunks", "0", cwd=tmp_path)
    assert ran.code == 1 and "--chunks" in ran.stderr
