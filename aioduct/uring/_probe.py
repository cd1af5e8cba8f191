"""Can this process use io_uring? Asked in a child process, answered in words.

Why a subprocess: the ways io_uring fails here are not all exceptions. A liburing wheel
built for AVX-512 dies with ``SIGILL`` on the first call (the 2026.3.x releases do on
these machines), a seccomp profile may kill the process with ``SIGSYS`` instead of
returning ``EPERM``, and a wedged ring would hang. A short-lived ``python -c`` child that
imports liburing, sets up a ring, submits a NOP and reaps it takes those blows; the parent
turns its exit status into one sentence that says what is wrong and what to do.

The answer is cached for the life of the process (the check costs ~0.1 s), except for the
``AIODUCT_URING=off`` switch, which is read on every call so tests and operators can
force the fallback path at any time.
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import os
import signal
import subprocess
import sys
from typing import Final

from ._import import LOCK_PATH

__all__ = [
    "ENV_SWITCH",
    "UringUnavailable",
    "explain_setup_errno",
    "is_available",
    "require",
    "unavailable_reason",
]

#: Set to ``off`` (or ``0``/``false``/``no``) to make io_uring count as unavailable.
ENV_SWITCH: Final = "AIODUCT_URING"
_OFF_VALUES: Final = frozenset(("off", "0", "false", "no"))
_DISABLED_SYSCTL: Final = "/proc/sys/kernel/io_uring_disabled"
_PROBE_TIMEOUT: Final = 20.0
_PIN: Final = "liburing==2024.5.3"

#: The opcodes the io_uring event loop submits (names from liburing's ``io_uring_op``).
REQUIRED_OPCODES: Final = (
    "IORING_OP_NOP",
    "IORING_OP_POLL_ADD",
    "IORING_OP_TIMEOUT",
    "IORING_OP_ACCEPT",
    "IORING_OP_ASYNC_CANCEL",
    "IORING_OP_CONNECT",
    "IORING_OP_CLOSE",
    "IORING_OP_SEND",
    "IORING_OP_RECV",
)

# The child prints one line "<stage> <detail>" and exits with a stage-specific code, so
# the parent can tell an import problem from a refused ring from a broken NOP.
_CHILD: Final = f"""
import fcntl, sys
try:  # under aioduct's import lock: liburing's loader races (see aioduct.uring._import)
    with open({LOCK_PATH!r}, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        import liburing as L
except BaseException as exc:
    print("import", type(exc).__name__ + ": " + str(exc)); sys.exit(3)
ring = L.io_uring()
try:
    L.io_uring_queue_init(8, ring, 0)
except OSError as exc:
    print("setup", exc.errno); sys.exit(4)
try:
    sqe = L.io_uring_get_sqe(ring)
    L.io_uring_prep_nop(sqe)
    sqe.user_data = 7
    L.io_uring_submit(ring)
    cqe = L.io_uring_cqe()
    L.io_uring_wait_cqe(ring, cqe)
    if cqe.user_data != 7 or cqe.res != 0:
        print("nop", "unexpected completion user_data=%d res=%d" % (cqe.user_data, cqe.res))
        sys.exit(5)
    L.io_uring_cqe_seen(ring, cqe)
    probe = L.io_uring_get_probe_ring(ring)
    missing = [name for name in {REQUIRED_OPCODES!r}
               if not L.io_uring_opcode_supported(probe, L.io_uring_op[name])]
    L.io_uring_free_probe(probe)
except OSError as exc:
    print("nop", "errno %d (%s)" % (exc.errno, exc.strerror)); sys.exit(5)
L.io_uring_queue_exit(ring)
if missing:
    print("opcodes", " ".join(missing)); sys.exit(6)
print("ok")
"""


class UringUnavailable(RuntimeError):
    """io_uring cannot be used in this process; the message says why and what to do."""


def _switched_off() -> str | None:
    value = os.environ.get(ENV_SWITCH, "")
    if value.strip().lower() in _OFF_VALUES:
        return f"disabled by {ENV_SWITCH}={value}"
    return None


def is_available() -> bool:
    """Whether the io_uring event loop can run here (never raises, never crashes)."""
    return unavailable_reason() is None


def unavailable_reason() -> str | None:
    """``None`` when io_uring is usable, else a sentence saying why not (cached)."""
    return _switched_off() or _cached_reason()


def require() -> None:
    """Raise :class:`UringUnavailable` with the reason when io_uring is not usable."""
    reason = unavailable_reason()
    if reason is not None:
        raise UringUnavailable(reason)


@functools.cache
def _cached_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"io_uring needs Linux; this is {sys.platform}"
    if importlib.util.find_spec("liburing") is None:
        return f"liburing is not installed: pip install 'aioduct[uring]' (which pins {_PIN})"
    return _run_probe()


def _run_probe() -> str | None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return (
            f"the io_uring probe (set up a ring, submit a NOP) did not finish within "
            f"{_PROBE_TIMEOUT:.0f} s; io_uring looks wedged on this kernel"
        )
    except OSError as exc:
        return f"could not start the io_uring probe ({sys.executable}): {exc}"
    return interpret_probe(done.returncode, done.stdout, done.stderr)


def interpret_probe(returncode: int, stdout: str, stderr: str = "") -> str | None:
    """Turn the probe child's exit into ``None`` (usable) or a reason (exposed for tests)."""
    if returncode < 0:
        return _explain_signal(-returncode)
    lines = stdout.strip().splitlines()
    stage, _, detail = (lines[-1] if lines else "").partition(" ")
    if returncode == 0 and stage == "ok":
        return None
    if stage == "import":
        return f"liburing failed to import ({detail}): reinstall it with pip install '{_PIN}'"
    if stage == "setup" and detail.isdigit():
        return explain_setup_errno(int(detail))
    if stage == "nop":
        return f"io_uring set up a ring but a NOP did not complete: {detail}"
    if stage == "opcodes":
        return (
            f"this kernel's io_uring lacks operations the event loop needs ({detail}); "
            f"Linux 5.19 or newer has them all"
        )
    tail = (stderr.strip().splitlines() or ["no output"])[-1]
    return f"the io_uring probe failed with exit status {returncode}: {tail}"


def _explain_signal(signum: int) -> str:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    if signum == signal.SIGILL:
        return (
            f"liburing crashed with SIGILL (a build for CPUs with AVX-512?): pin {_PIN}, "
            f"which builds from source for this CPU"
        )
    if signum == signal.SIGSYS:
        return (
            "io_uring syscalls are blocked by a seccomp filter (the probe was killed with "
            "SIGSYS); run with a seccomp profile that allows io_uring_setup/io_uring_enter"
        )
    return f"the io_uring probe was killed by {name}"


def explain_setup_errno(code: int) -> str:
    """Why ``io_uring_setup`` failed with ``code``, in words (shared with ring creation)."""
    if code == errno.EPERM:
        sysctl = _read_disabled_sysctl()
        if sysctl == "2":
            return f"io_uring is disabled by {_DISABLED_SYSCTL}=2"
        if sysctl == "1":
            return (
                f"io_uring is restricted by {_DISABLED_SYSCTL}=1 to the group in "
                f"/proc/sys/kernel/io_uring_group, and this process is not in it"
            )
        return (
            "io_uring_setup was refused with EPERM: a seccomp profile (Docker's default "
            "blocks io_uring) or a security module forbids it"
        )
    if code == errno.ENOSYS:
        return (
            "this kernel has no io_uring (io_uring_setup: ENOSYS): it needs Linux 5.19+ "
            "built with CONFIG_IO_URING, or a seccomp filter answers ENOSYS"
        )
    if code == errno.ENOMEM:
        return (
            "io_uring_setup failed with ENOMEM: on kernels before 5.12 rings count against "
            "RLIMIT_MEMLOCK; raise it (ulimit -l) or upgrade the kernel"
        )
    if code in (errno.EMFILE, errno.ENFILE):
        return "io_uring_setup failed: out of file descriptors"
    return f"io_uring_setup failed: [Errno {code}] {os.strerror(code)}"


def _read_disabled_sysctl() -> str | None:
    try:
        with open(_DISABLED_SYSCTL) as f:
            return f.read().strip()
    except OSError:
        return None
