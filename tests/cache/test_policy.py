"""RFC 9111 rules as pure functions (no server, no clock)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioduct.cache.policy import (
    MAX_DELTA,
    byte_range,
    current_age,
    delta_seconds,
    directives,
    etag_matches,
    freshness_lifetime,
    parse_http_date,
)


def test_directives_first_wins_quoted_and_malformed() -> None:
    cc = directives(
        ['max-age=10, Max-Age=20, no-cache="Set-Cookie, X"', 'private, =bad, s-maxage="5"']
    )
    assert cc == {"max-age": "10", "no-cache": "Set-Cookie, X", "private": None, "s-maxage": "5"}
    assert directives([""]) == {} and directives([",,,"]) == {}


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("10", 10), ("-1", None), ("+1", None), (" 1", None), ("1.5", None),
     ("0x10", None), ("١٢", None), ("", None), (None, None), ("9" * 30, MAX_DELTA),
     ("2147483649", MAX_DELTA)],
)  # fmt: skip
def test_delta_seconds(text: str | None, value: int | None) -> None:
    assert delta_seconds(text) == value


@pytest.mark.parametrize(
    "text",
    ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"],
)
def test_three_date_formats(text: str) -> None:
    assert parse_http_date(text, now=1.7e9) == 784111777.0


@pytest.mark.parametrize(
    "text", ["0", "", "yesterday", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 32 Nov 1994 08:49:37 GMT"]
)
def test_invalid_dates(text: str) -> None:
    assert parse_http_date(text) is None


def test_age_calculation() -> None:
    # RFC 9111 §4.2.3 with a 2 s response delay, a 5 s skewed Date and Age: 10.
    assert current_age("10", 995.0, 998.0, 1000.0, 1000.0) == 12.0
    assert current_age(None, 990.0, 1000.0, 1000.0, 1030.0) == 40.0
    assert current_age("7200, 0", None, 0.0, 0.0, 0.0) == 7200
    assert current_age("junk", 2000.0, 1000.0, 1000.0, 1000.0) == 0.0  # Date ahead: no age


def test_freshness_lifetime_precedence() -> None:
    def life(
        cc: str,
        *,
        shared: bool = False,
        expires: list[str] = (),
        lm: float | None = None,
        status: int = 200,
    ) -> float:  # type: ignore[assignment]
        return freshness_lifetime(
            directives([cc]), status, date=1000.0, expires=expires[0] if expires else None,
            expires_count=len(expires), last_modified=lm, response_time=1000.0, shared=shared,
        )  # fmt: skip

    assert life("max-age=5, s-maxage=50") == 5 and life("max-age=5, s-maxage=50", shared=True) == 50
    assert life("", expires=["Thu, 01 Jan 1970 00:20:00 GMT"]) == 200
    assert life("", expires=["0"]) == 0 and life("", expires=["a", "b"]) == 0
    assert life("max-age=7", expires=["0"]) == 7
    assert life("", lm=0.0) == 100 and life("", lm=0.0, status=201) == 0
    assert life("public", lm=0.0, status=201) == 100


def test_etags_and_ranges() -> None:
    assert etag_matches('W/"a", "b"', '"a"') and etag_matches("*", '"x"')
    assert not etag_matches('"a,b"', '"a"') and not etag_matches('"a"', None)
    assert byte_range("bytes=0-1", 10) == (0, 1) and byte_range("bytes=5-", 10) == (5, 9)
    assert byte_range("bytes=-3", 10) == (7, 9) and byte_range("bytes=8-100", 10) == (8, 9)
    for bad in ("bytes=10-", "bytes=0-1,3-4", "items=0-1", "bytes=a-b", "bytes=-0", "bytes=3-1"):
        assert byte_range(bad, 10) is None


def test_date_zone_is_case_insensitive_but_only_gmt() -> None:
    assert parse_http_date("Thu, 18 Aug 2050 02:01:18 gMT") is not None
    assert parse_http_date("Thu, 18 Aug 2050 02:01:18 UTC") is None


# -- whatever a server sends, the rules answer without raising --------------------------------

_header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x17F), max_size=80)


@given(st.lists(_header_text, max_size=4))
def test_directives_never_raise(values: list[str]) -> None:
    for name, argument in directives(values).items():
        assert name == name.lower() and (argument is None or isinstance(argument, str))


@given(_header_text)
def test_numbers_and_dates_never_raise(text: str) -> None:
    value = delta_seconds(text)
    assert value is None or 0 <= value <= MAX_DELTA
    date = parse_http_date(text, now=1.7e9)
    assert date is None or date == date  # not NaN
    age = current_age(text, date, 0.0, 1.0, 2.0)
    assert age >= 0
    assert byte_range(text, 100) is None or 0 <= byte_range(text, 100)[0] <= 99  # type: ignore[index]
