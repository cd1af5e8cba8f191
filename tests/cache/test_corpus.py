"""The http-tests/cache-tests corpus against aioduct's cache, private and shared.

Every ``required`` test must pass except the ones listed here with the reason; the
counts of every kind are printed (``-s``) and ``python -m tests.cache.corpus`` lists
each failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import aioduct

from .corpus import CORPUS, corpus_server, load_tests, run_corpus

#: Required tests aioduct does not pass, and why (a change here needs a reason).
KNOWN = {
    "headers-store-Transfer-Encoding": (
        "fail",
        "the server sends an unknown Transfer-Encoding; aioduct's HTTP/1.1 codec refuses "
        "any coding but chunked (request-smuggling hardening), so there is no response",
    ),
    "interim-not-cached": (
        "unverifiable",
        "expects to observe the 103 of request 1; aioduct does not expose 1xx responses "
        "(the cache part -- request 2 cached, no interim replayed -- is met)",
    ),
}


@pytest.fixture(scope="module")
def corpus_base(tmp_path_factory: pytest.TempPathFactory) -> object:
    assert (CORPUS / "tests" / "index.mjs").is_file(), f"cache-tests corpus missing at {CORPUS}"
    with corpus_server(Path(tmp_path_factory.mktemp("cache-tests"))) as base:
        yield base


@pytest.mark.parametrize("mode", ["private", "shared"])
def test_required_cache_tests_pass(corpus_base: str, mode: str) -> None:
    report = aioduct.run(run_corpus(corpus_base, mode, load_tests()))
    print(report.summary())
    failures = {o.id: o for o in report.failures("required")}
    unexpected = {
        i: f"{o.result}: {o.message}"
        for i, o in failures.items()
        if i not in KNOWN or KNOWN[i][0] != o.result
    }
    assert not unexpected, unexpected
    passed, run = report.counts("required")
    assert run >= 145 and passed == run - len(failures)
