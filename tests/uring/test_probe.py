"""The io_uring probe: never crashes the caller, explains itself, caches its verdict."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

import aioduct.uring
from aioduct.uring import _probe


@pytest.fixture
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forget the cached verdict (and restore it afterwards for the other tests)."""
    monkeypatch.delenv(_probe.ENV_SWITCH, raising=False)
    _probe._cached_reason.cache_clear()
    yield
    _probe._cached_reason.cache_clear()


def test_importing_the_package_does_not_import_liburing() -> None:
    code = "import sys, aioduct.uring; assert 'liburing' not in sys.modules, sys.modules.keys()"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false"])
def test_forced_off_by_the_environment(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AIODUCT_URING", value)
    assert not aioduct.uring.is_available()
    assert aioduct.uring.unavailable_reason() == f"disabled by AIODUCT_URING={value}"
    with pytest.raises(aioduct.uring.UringUnavailable, match="disabled by AIODUCT_URING"):
        aioduct.uring.new_event_loop()
    with pytest.raises(aioduct.uring.UringUnavailable, match="disabled by AIODUCT_URING"):
        aioduct.uring.require()


def test_other_switch_values_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIODUCT_URING", "on")
    assert aioduct.uring.unavailable_reason() == _probe._cached_reason()


def test_the_subprocess_verdict_is_cached(
    fresh_probe: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = _probe._run_probe

    def counting() -> str | None:
        calls.append(1)
        return real()

    monkeypatch.setattr(_probe, "_run_probe", counting)
    first = aioduct.uring.unavailable_reason()
    assert aioduct.uring.unavailable_reason() == first
    assert aioduct.uring.is_available() is (first is None)
    assert len(calls) == 1
    monkeypatch.setenv("AIODUCT_URING", "off")  # the switch wins over the cache, no new probe
    assert aioduct.uring.unavailable_reason() == "disabled by AIODUCT_URING=off"
    assert len(calls) == 1


def test_a_crashing_child_is_reported_not_fatal(
    fresh_probe: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What an AVX-512 liburing build does on a CPU without AVX-512.
    monkeypatch.setattr(_probe, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    reason = aioduct.uring.unavailable_reason()
    assert reason is not None
    assert reason.startswith("liburing crashed with SIGILL (a build for CPUs with AVX-512?)")
    assert "pin liburing==2024.5.3" in reason
    assert not aioduct.uring.is_available()


def test_without_liburing_or_linux(fresh_probe: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert "liburing is not installed: pip install 'aioduct[uring]'" in (
        aioduct.uring.unavailable_reason() or ""
    )
    _probe._cached_reason.cache_clear()
    monkeypatch.setattr(sys, "platform", "darwin")
    assert aioduct.uring.unavailable_reason() == "io_uring needs Linux; this is darwin"


@pytest.mark.parametrize(
    ("returncode", "stdout", "sysctl", "expected"),
    [
        (0, "ok\n", None, None),
        (-signal.SIGSYS, "", None, "blocked by a seccomp filter"),
        (-signal.SIGKILL, "", None, "the io_uring probe was killed by SIGKILL"),
        (4, f"setup {errno.EPERM}\n", "2", "io_uring is disabled by "
         "/proc/sys/kernel/io_uring_disabled=2"),
        (4, f"setup {errno.EPERM}\n", "1", "io_uring_disabled=1 to the group"),
        (4, f"setup {errno.EPERM}\n", "0", "refused with EPERM: a seccomp profile"),
        (4, f"setup {errno.ENOSYS}\n", None, "this kernel has no io_uring"),
        (4, f"setup {errno.ENOMEM}\n", None, "RLIMIT_MEMLOCK"),
        (3, "import ImportError: libfoo.so\n", None, "liburing failed to import (ImportError"),
        (6, "opcodes IORING_OP_SEND IORING_OP_RECV\n", None, "lacks operations the event loop"),
        (1, "", None, "the io_uring probe failed with exit status 1"),
    ],
)  # fmt: skip
def test_probe_exits_become_reasons(
    monkeypatch: pytest.MonkeyPatch,
    returncode: int,
    stdout: str,
    sysctl: str | None,
    expected: str | None,
) -> None:
    monkeypatch.setattr(_probe, "_read_disabled_sysctl", lambda: sysctl)
    reason = _probe.interpret_probe(returncode, stdout, "Traceback...\nSomeError: boom\n")
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason
