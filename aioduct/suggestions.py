"""Name suggestions for misspelt options, and the Struct metaclass that makes them.

Kept apart from :mod:`aioduct.config` so that option structs used inside
:class:`~aioduct.ClientConfig` (:class:`~aioduct.RetryConfig`,
:class:`~aioduct.RateLimit`) can use it without importing the config module.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import msgspec

__all__ = ["SuggestingMeta", "suggest"]


def suggest(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the valid name closest to a misspelt ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class SuggestingMeta(msgspec.StructMeta):
    """Struct metaclass: an unknown keyword names the closest valid field.

    msgspec's own message for ``ClientConfig(timout=5)`` is "Unexpected keyword argument
    'timout'"; checked only once construction failed, so a valid call costs nothing more.
    Decoding does not come through here (msgspec validates names there itself).
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except TypeError:
            fields = cls.__struct_fields__
            for name in kwargs:
                if name not in fields:
                    raise TypeError(
                        f"{cls.__name__} has no option {name!r}{suggest(name, fields)}"
                    ) from None
            raise
