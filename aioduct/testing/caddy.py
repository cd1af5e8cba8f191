"""Caddy on loopback: a native (Go, quic-go) HTTP/3 server for benchmarks and tests.

nginx in Debian 12 has no QUIC, and the aioquic test server is Python, so it would be
what a benchmark measures. Caddy 2.6 serves HTTP/1.1, HTTP/2 and HTTP/3 on one port
(TCP and UDP) and advertises HTTP/3 with ``Alt-Svc`` on its TCP responses, as
production servers do. It serves files from a directory this class fills:

==================  ===================================================================
``/small``          :data:`~aioduct.testing.nginx.SMALL_BODY`
``/bytes/{64k,1m,10m}``  :func:`~aioduct.testing.nginx.deterministic_bytes` of
                    :data:`~aioduct.testing.nginx.BYTES_SIZES` (as nginx serves them)
==================  ===================================================================

Example::

    with Caddy(workdir, tls_ca.files) as caddy:
        ...  # aioduct.Client(http3_prior_knowledge=True, verify=ca).get(caddy.url + "/small")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .nginx import BYTES_SIZES, SMALL_BODY, TLSFiles, deterministic_bytes

__all__ = ["CADDY_MISSING_REASON", "Caddy", "caddy_binary"]

CADDY_MISSING_REASON = "caddy is not installed (apt-get install caddy; ./scripts/setup does)"


def caddy_binary() -> str | None:
    return os.environ.get("AIODUCT_CADDY") or shutil.which("caddy")


def _free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (Caddy binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both TCP and UDP")


class Caddy:
    """One Caddy process serving the files above over h1, h2 (TLS) and h3."""

    def __init__(self, workdir: Path, tls: TLSFiles) -> None:
        self.workdir = Path(workdir)
        self.tls = tls
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> Caddy:
        binary = caddy_binary()
        if binary is None:
            raise RuntimeError(CADDY_MISSING_REASON)
        root = self.workdir / "www"
        (root / "bytes").mkdir(parents=True, exist_ok=True)
        (root / "small").write_bytes(SMALL_BODY)
        for name, size in BYTES_SIZES.items():
            (root / "bytes" / name).write_bytes(deterministic_bytes(size))
        self.port = _free_port()
        config = self.workdir / "Caddyfile"
        config.write_text(
            "{\n  admin off\n  auto_https off\n"
            "  servers {\n    protocols h1 h2 h3\n  }\n}\n"
            f"https://localhost:{self.port} {{\n"
            f"  bind 127.0.0.1\n"
            f"  tls {self.tls.cert_chain_pem} {self.tls.key_pem}\n"
            f"  root * {root}\n  file_server\n}}\n"
        )
        log = open(self.workdir / "caddy.log", "wb")  # noqa: SIM115 (owned by the process)
        env = dict(os.environ, HOME=str(self.workdir), XDG_DATA_HOME=str(self.workdir))
        self._proc = subprocess.Popen(
            [binary, "run", "--config", str(config), "--adapter", "caddyfile"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 15
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.workdir / "caddy.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"caddy did not start:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def __enter__(self) -> Caddy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
