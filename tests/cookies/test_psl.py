"""The Public Suffix List's own test data against the registrable-domain function the
jar (``Domain=`` checks, per-site bounds) and the local engine's sharding use."""

from __future__ import annotations

from pathlib import Path

import idna
import pytest

from aioduct.cookies import is_public_suffix, registrable_domain, site_of

DATA = Path(__file__).parent / "data" / "psl" / "tests.txt"


def cases() -> list[tuple[str | None, str | None]]:
    out = []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        given, expected = line.split()
        out.append((None if given == "null" else given, None if expected == "null" else expected))
    return out


CASES = cases()


def test_the_vendored_list_is_complete() -> None:
    assert len(CASES) == 78  # every active line of publicsuffix/list @ e8c9a2b tests.txt


@pytest.mark.parametrize(("given", "expected"), CASES)
def test_registrable_domain_agrees_with_the_psl_tests(
    given: str | None, expected: str | None
) -> None:
    if given is None:
        assert expected is None
        return
    assert registrable_domain(given) == expected
    if not given.isascii():  # the jar sees hosts as URL gives them: A-labels
        a_label = idna.encode(given, uts46=True).decode("ascii")
        a_expected = None if expected is None else idna.encode(expected).decode("ascii")
        assert registrable_domain(a_label) == a_expected


def test_public_suffixes_and_sites() -> None:
    assert is_public_suffix("co.uk") and is_public_suffix("github.io")
    assert is_public_suffix("co.UK") and is_public_suffix("com.")  # curl CVE-2023-46218
    assert not is_public_suffix("example.co.uk")
    assert site_of("a.b.example.co.uk") == "example.co.uk"
    assert site_of("user.github.io") == "user.github.io"
    assert site_of("127.0.0.1") == "127.0.0.1" and site_of("::1") == "::1"
    assert site_of("localhost") == "localhost"  # a public suffix is its own site
