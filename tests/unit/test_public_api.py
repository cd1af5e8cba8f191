"""The public surface is deliberate: everything exported is documented and importable."""

from __future__ import annotations

import inspect

import aioduct


def test_all_is_sorted_and_complete() -> None:
    def isort_style(name: str) -> tuple[int, str]:  # CONSTANTS, Classes, functions (ruff RUF022)
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert aioduct.__all__ == sorted(aioduct.__all__, key=isort_style)
    public = {
        n
        for n in dir(aioduct)
        if not n.startswith("_") and not inspect.ismodule(getattr(aioduct, n))
    }
    assert public - {"annotations"} <= set(aioduct.__all__) | {"__version__"}


def test_every_export_has_a_docstring() -> None:
    for name in aioduct.__all__:
        obj = getattr(aioduct, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"aioduct.{name} has no docstring"


def test_error_tree() -> None:
    assert issubclass(aioduct.ConnectTimeout, aioduct.TimeoutError)
    assert issubclass(aioduct.TimeoutError, TimeoutError)
    assert issubclass(aioduct.TLSError, aioduct.ConnectError)
    assert issubclass(aioduct.InvalidURL, ValueError)
    for name in aioduct.__all__:
        obj = getattr(aioduct, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, aioduct.AioductError), name
    assert aioduct.ReadTimeout("x").is_timeout and not aioduct.ReadTimeout("x").is_connect
    assert aioduct.ConnectTimeout("x").is_connect and aioduct.ConnectTimeout("x").is_timeout
    assert aioduct.TLSError("x").is_connect
    assert not aioduct.StatusError("x", response=aioduct.Response(500)).is_timeout


def test_client_methods_share_one_signature() -> None:
    for name in ("get", "head", "post", "put", "patch", "delete", "options"):
        assert getattr(aioduct.Client, name) is getattr(aioduct.BlockingClient, name)
