"""Real proxies on loopback for the proxy tests and benchmarks.

* :class:`TinyProxy` -- tinyproxy, an HTTP proxy that forwards plain-http requests and
  opens ``CONNECT`` tunnels, optionally with Basic authentication.
* :class:`MicroSocks` -- microsocks, a SOCKS5 server (remote DNS), optionally with
  RFC 1929 username/password.
* :class:`Dante` -- dante-server (``danted``), SOCKS4 and SOCKS5 without authentication.
* :class:`Socks4Server` -- a minimal SOCKS4/4a relay written here: dante answers
  SOCKS4a requests (a host name for the proxy to resolve) with "request rejected"
  (91), and no Debian package serves SOCKS4a; it also records what each client asked.
* :class:`TLSFront` -- a TLS terminator in front of another proxy, which makes an
  ``https://`` proxy out of tinyproxy (none of the packaged proxies speaks TLS itself).

Like :class:`~aioduct.testing.nginx.Nginx`, each binary runs in the foreground as a
child in its own process group on ports the kernel picked, is stopped on ``stop()``,
``atexit`` or the parent's death, and works under pytest-xdist. ``scripts/setup``
installs the packages (``apt-get install tinyproxy microsocks dante-server``).

Example::

    with TinyProxy(auth=("user", "secret")) as proxy:
        aioduct.BlockingClient(proxy=proxy.url).get("https://localhost:8443/")
        proxy.connects()  # ["localhost:8443"]
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .server import start_loop_thread

__all__ = [
    "PROXY_PACKAGES",
    "Dante",
    "MicroSocks",
    "ProxyProcess",
    "Socks4Server",
    "TLSFront",
    "TinyProxy",
    "missing_proxy_binaries",
]

#: The Debian packages the proxy fixtures need.
PROXY_PACKAGES = ("tinyproxy", "microsocks", "dante-server")
_BINARIES = {"tinyproxy": "tinyproxy", "microsocks": "microsocks", "danted": "dante-server"}

_live: weakref.WeakSet[ProxyProcess] = weakref.WeakSet()


def missing_proxy_binaries() -> list[str]:
    """The packages whose binaries are not installed (empty when all are)."""
    return sorted({pkg for exe, pkg in _BINARIES.items() if _which(exe) is None})


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@atexit.register
def _stop_all() -> None:
    for proc in list(_live):
        proc.stop()


class ProxyProcess:
    """A proxy binary run in the foreground on a free port (see the module docstring)."""

    scheme = "http"
    binary_name = ""

    def __init__(self, *, host: str = "127.0.0.1", auth: tuple[str, str] | None = None) -> None:
        binary = _which(self.binary_name)
        if binary is None:
            raise RuntimeError(
                f"{self.binary_name} is not installed: run scripts/setup as root "
                f"(apt-get install {_BINARIES[self.binary_name]})"
            )
        self.binary = binary
        self.host = host
        self.auth = auth
        self.port = 0
        self.workdir = Path(tempfile.mkdtemp(prefix=f"aioduct-{self.binary_name}-"))
        self.log_path = self.workdir / "log"
        self._proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """The proxy URL, with the credentials when it has them."""
        userinfo = ""
        if self.auth is not None:
            userinfo = f"{quote(self.auth[0], safe='')}:{quote(self.auth[1], safe='')}@"
        return f"{self.scheme}://{userinfo}{_url_host(self.host)}:{self.port}"

    def url_with(self, username: str, password: str, scheme: str | None = None) -> str:
        """This proxy's URL with other credentials (wrong ones, for tests)."""
        userinfo = f"{quote(username, safe='')}:{quote(password, safe='')}@"
        return f"{scheme or self.scheme}://{userinfo}{_url_host(self.host)}:{self.port}"

    def start(self) -> ProxyProcess:
        last = ""
        for _attempt in range(5):
            self.port = _free_port(self.host)
            argv = self.argv()
            setpriv = shutil.which("setpriv")
            if setpriv and threading.current_thread() is threading.main_thread():
                argv = [setpriv, "--pdeathsig", "TERM", *argv]
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                    close_fds=True,
                    cwd=self.workdir,
                )
            if self._wait_port(time.monotonic() + 10):
                _live.add(self)
                return self
            last = self.log()
            self._kill()
        raise RuntimeError(f"{self.binary_name} did not start: {last[-2000:]}")

    def _wait_port(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.01)
        return False

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.binary_name} is not running")
        return self._proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # any child left in the group

    def stop(self) -> None:
        self._kill()
        _live.discard(self)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.scheme}://{_url_host(self.host)}:{self.port}>"


class TinyProxy(ProxyProcess):
    """tinyproxy: forwards plain http, tunnels with CONNECT; Basic auth with ``auth``."""

    binary_name = "tinyproxy"

    def argv(self) -> list[str]:
        lines = [
            f"Port {self.port}",
            f"Listen {self.host}",
            "Timeout 600",
            "MaxClients 1000",
            "LogLevel Connect",
            "DisableViaHeader Yes",
            # Every port may be tunnelled to (no ConnectPort line); loopback only.
        ]
        if self.auth is not None:
            lines.append(f"BasicAuth {self.auth[0]} {self.auth[1]}")
        config = self.workdir / "tinyproxy.conf"
        config.write_text("\n".join(lines) + "\n")
        return [self.binary, "-d", "-c", str(config)]

    def requests(self) -> list[str]:
        """The request lines tinyproxy received (``CONNECT host:port HTTP/1.1``, ...)."""
        out = []
        for line in self.log().splitlines():
            _, sep, rest = line.partition("]: Request (file descriptor ")
            if sep:
                out.append(rest.split("): ", 1)[1])
        return out

    def connects(self) -> list[str]:
        """The targets of the ``CONNECT`` requests it received, in order."""
        return [r.split()[1] for r in self.requests() if r.startswith("CONNECT ")]


class MicroSocks(ProxyProcess):
    """microsocks: SOCKS5 (no authentication, or username/password with ``auth``)."""

    scheme = "socks5h"
    binary_name = "microsocks"

    def argv(self) -> list[str]:
        argv = [self.binary, "-i", self.host, "-p", str(self.port)]
        if self.auth is not None:
            argv += ["-u", self.auth[0], "-P", self.auth[1]]
        return argv


class Dante(ProxyProcess):
    """dante-server: SOCKS4 and SOCKS5 without authentication (``socks4://`` URL)."""

    scheme = "socks4"
    binary_name = "danted"

    def argv(self) -> list[str]:
        external = "::1" if ":" in self.host else "127.0.0.1"
        config = self.workdir / "danted.conf"
        config.write_text(
            f"logoutput: {self.log_path}\n"
            f"internal: {self.host} port = {self.port}\n"
            f"external: {external}\n"
            "socksmethod: none\n"
            "clientmethod: none\n"
            f"user.privileged: {_user()}\n"
            f"user.unprivileged: {_user()}\n"
            "client pass { from: 0/0 to: 0/0 }\n"
            "socks pass { from: 0/0 to: 0/0 protocol: tcp }\n"
        )
        return [self.binary, "-f", str(config), "-N", "1"]


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


class _LoopServer:
    """A server on its own loop thread (the ScriptServer pattern)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.errors: list[dict[str, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections_accepted = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _ssl(self) -> ssl.SSLContext | None:
        return None

    def start(self) -> _LoopServer:
        async def listen() -> None:
            loop = asyncio.get_running_loop()

            def accepted(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                self.connections_accepted += 1
                task = loop.create_task(self._guard(r, w))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

            self._server = await asyncio.start_server(accepted, self.host, 0, ssl=self._ssl())
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop, self._thread = start_loop_thread(
            listen, name=type(self).__name__, on_error=self.errors.append
        )
        return self

    async def _guard(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    def __enter__(self) -> _LoopServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
) -> None:
    up_reader, up_writer = await asyncio.open_connection(host, port)
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


class Socks4Server(_LoopServer):
    """A SOCKS4 and SOCKS4a relay (see the module docstring); ``requests`` holds
    ``(user_id, host, port)`` per request, the host as the client sent it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.requests: list[tuple[str, str, int]] = []

    @property
    def url(self) -> str:
        return f"socks4a://{_url_host(self.host)}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(8)
        version, command, port = struct.unpack("!BBH", head[:4])
        user = (await reader.readuntil(b"\x00"))[:-1].decode()
        raw_ip = head[4:]
        if raw_ip[:3] == b"\x00\x00\x00" and raw_ip[3] != 0:
            host = (await reader.readuntil(b"\x00"))[:-1].decode()
        else:
            host = str(ipaddress.IPv4Address(raw_ip))
        self.requests.append((user, host, port))
        if version != 4 or command != 1:
            writer.write(b"\x00\x5b" + b"\x00" * 6)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.write(b"\x00\x5b" + b"\x00" * 6)
            return
        writer.write(b"\x00\x5a" + b"\x00" * 6)
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


class TLSFront(_LoopServer):
    """TLS in front of ``backend`` (``(host, port)``): ``https://`` proxy URLs."""

    def __init__(
        self,
        backend: tuple[str, int],
        context: ssl.SSLContext,
        *,
        host: str = "127.0.0.1",
        auth: tuple[str, str] | None = None,
        server_name: str = "localhost",
    ) -> None:
        super().__init__(host)
        self.backend = backend
        self.context = context
        self.auth = auth
        self.server_name = server_name

    def _ssl(self) -> ssl.SSLContext:
        return self.context

    @property
    def url(self) -> str:
        userinfo = ""
        if self.auth is not None:
            userinfo = f"{quote(self.auth[0], safe='')}:{quote(self.auth[1], safe='')}@"
        return f"https://{userinfo}{self.server_name}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _relay(reader, writer, *self.backend)
