"""``map(jobs, process="package.module:function")``: user code run where the response is.

A crawler rarely wants whole responses; it wants what it extracts from them. Run in the
local engine's parent, that extraction would make the parent -- the one process every
worker shares -- touch every body, the very work the workers exist to take off it. With
``process=``, each worker calls ``function(result)`` on every Result that has a response
and sends back only the return value, so bodies and headers never leave the worker.

What ``map`` yields then is still one :class:`~aioduct.Result` per job (completion order
needs the id to say which job a value belongs to, and a failure needs a place that is not
an exception ending the map): ``value`` holds the function's return value, ``body`` is
None and ``headers`` empty; status, URLs, timings, ``size``, ``meta`` stay. Results
without a response (``error`` set) are not passed to the function. A function that raises,
or returns something msgpack cannot encode, turns its job's Result into an error Result
of kind ``"ProcessError"`` (the HTTP status stays, so ``ok`` is False but the response
is not denied); the worker carries on.

The value crosses the process boundary as msgpack, so it arrives as plain msgpack types (a
Struct or dataclass as a dict, a tuple as a list). The send engine runs the function in
its own process but puts the value through the same encoding, so both engines yield equal
Results.
"""

from __future__ import annotations

import functools
import importlib
import sys
import sysconfig
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

from .errors import ProcessError
from .jobs import JobError, Result

__all__ = ["KIND", "Function", "Spec", "check_spec", "decoded", "failed", "load", "run", "spec"]

#: ``JobError.kind`` of a Result whose process function failed.
KIND: Final = "ProcessError"

Function = Callable[[Result], Any]

_encoder = msgspec.msgpack.Encoder()


class Spec(msgspec.Struct, frozen=True, array_like=True):
    """A process function as it travels: where to import it, and keyword arguments for
    each call (``process_options=``; anything msgpack encodes)."""

    function: str
    options: dict[str, Any] = {}

    @property
    def key(self) -> bytes:
        """Equal for equal specs (an engine loads each once)."""
        return _encoder.encode(self)


def spec(process: object, options: Mapping[str, Any] | None = None) -> Spec | None:
    """The :class:`Spec` of a ``map(process=, process_options=)`` call, checked in the
    caller's frame (None without ``process=``)."""
    if process is None:
        if options:
            raise TypeError("process_options= needs a process= function to pass them to")
        return None
    found = Spec(check_spec(process), dict(options or {}))
    try:
        found.key  # noqa: B018 (options that cannot travel fail here, not in a worker)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"process_options= must be msgpack-encodable: {exc}") from None
    return found


def check_spec(spec: object) -> str:
    """``spec`` if it looks like ``"package.module:function"`` (else a clear error)."""
    if not isinstance(spec, str):
        raise TypeError(
            f"process= takes an import string 'package.module:function', not "
            f"{type(spec).__name__}: worker processes cannot receive a Python object"
        )
    module, colon, name = spec.partition(":")
    if not colon or not module.strip() or not name.strip() or spec != spec.strip():
        raise ValueError(f"process= must look like 'package.module:function', not {spec!r}")
    return spec


def load(process: Spec, path: list[str] | None = None) -> Function:
    """Import the function ``process`` names, its options bound as keyword arguments
    (``path`` entries are added to ``sys.path`` first).

    Raises :class:`~aioduct.ProcessError` saying what could not be imported and why.
    """
    spec = process.function
    module_name, _, qualname = check_spec(spec).partition(":")
    for entry in path or ():
        if entry not in sys.path:
            sys.path.append(entry)
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception as exc:
        raise ProcessError(f"process={spec!r} cannot be imported: {_describe(exc)}") from None
    if not callable(found):
        raise ProcessError(f"process={spec!r} is a {type(found).__name__}, not a function")
    function: Function = functools.partial(found, **process.options) if process.options else found
    return function


def run(function: Function, spec: str, result: Result) -> Result:
    """``result`` reduced to what ``function`` returned for it, as encoded msgpack.

    ``value`` is a :class:`msgspec.Raw` (encoded once, here: a value msgpack cannot carry
    fails this job, not the batch it would have travelled in); :func:`decoded` turns it
    into plain values where no wire is crossed.
    """
    if result.error is None:
        try:
            value = function(result)
        except Exception as exc:
            return failed(result, f"{_describe(exc)} (in process={spec!r})")
        try:
            result.value = msgspec.Raw(_encoder.encode(value))
        except (TypeError, ValueError, OverflowError) as exc:
            return failed(
                result,
                f"process={spec!r} returned a {type(value).__name__}, which msgpack cannot "
                f"encode ({exc})",
            )
    result.body = None
    result.headers = ()
    return result


def failed(result: Result, message: str) -> Result:
    """``result`` as a ``"ProcessError"`` Result (the response's status stays)."""
    result.error = JobError(KIND, message)
    result.value = None
    result.body = None
    result.headers = ()
    return result


def decoded(result: Result) -> Result:
    """A :func:`run` Result with its ``value`` decoded, as it arrives from a worker."""
    if isinstance(result.value, msgspec.Raw):
        result.value = msgspec.msgpack.decode(result.value)
    return result


def _describe(exc: BaseException) -> str:
    """``Type: message (file:line)``, the line being the innermost frame of the user's
    code that raised: frames of the standard library and installed packages (a
    ``pathlib`` call that failed), importlib's frozen ones and this module's are skipped."""
    text = f"{type(exc).__name__}: {exc}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _theirs(f.filename)]
    if frames:
        last = frames[-1]
        text += f" ({last.filename}:{last.lineno})"
    return text


_NOT_THEIRS: Final = tuple(
    {sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
)


def _theirs(filename: str) -> bool:
    return not (
        filename.startswith("<") or filename == __file__ or filename.startswith(_NOT_THEIRS)
    )
