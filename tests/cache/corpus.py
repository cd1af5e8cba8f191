"""Run the http-tests/cache-tests corpus (RFC 9111) against aioduct's cache.

The corpus (http-tests/cache-tests @ b55b8bd, vendored unmodified in
``tests/cache/data``) is a list of tests, each a sequence of requests with the responses
the server must give and what the client must then see. Its own Node server
(``test-engine/server/server.mjs``) replays those responses: this module starts it,
loads the tests through Node (they are ES modules), and plays the client side of
``test-engine/client/test.mjs`` with an ``aioduct.Client(cache=Cache())``: PUT the
test's request list to ``/config/<uuid>``, send the requests through the cache (pausing
3 s where the test says so), then compare what came back, and what the server saw
(``/state/<uuid>``), with the expectations.

Two runs, one per kind of cache:

* **private** (``Cache()``, what aioduct is by default): every test except ``cdn_only``
  ones and those that test a shared cache's rules (:data:`SHARED_ONLY`, each with why);
  ``browser_only`` tests are private-cache tests and run here.
* **shared** (``Cache(shared=True)``): what a proxy cache runs (no ``browser_only``).

Where the harness must stand in for a browser or a proxy it says so:

* fetch()-only fields: ``cache: "no-cache"`` becomes the ``Cache-Control: max-age=0``
  request field fetch() adds for it; ``redirect: "manual"`` is
  ``follow_redirects=False``; ``mode`` and ``credentials`` are ignored. Request field
  values are trimmed, as fetch() trims them.
* A ``disconnect`` request that makes aioduct raise (the server closed the connection)
  counts as the error response a proxy would have generated: it has no status, headers
  or body, so it passes checks that only require the stored response not to be served.
* ``expected_interim_responses`` cannot be checked (aioduct does not hand 1xx responses
  to the caller); a non-empty expectation is reported as unverifiable, not passed.

``python -m tests.cache.corpus`` prints the per-kind counts and every failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aioduct

#: Vendored unmodified under tests/cache/data (a clean clone has nothing beside it);
#: ``AIODUCT_CORPORA`` points at another copy (a directory holding ``cache-tests``).
CORPUS = (
    Path(os.environ["AIODUCT_CORPORA"]) / "cache-tests"
    if os.environ.get("AIODUCT_CORPORA")
    else Path(__file__).parent / "data" / "cache-tests"
)

#: Tests of a shared cache's rules, which a private cache is right to fail.
SHARED_ONLY = {
    "freshness-s-maxage-shared": "s-maxage applies to shared caches only",
    "freshness-max-age-s-maxage-shared-longer": "s-maxage applies to shared caches only",
    "freshness-max-age-s-maxage-shared-longer-reversed": "s-maxage applies to shared caches only",
    "freshness-max-age-s-maxage-shared-longer-multiple": "s-maxage applies to shared caches only",
    "freshness-max-age-s-maxage-shared-shorter": "s-maxage applies to shared caches only",
    "freshness-max-age-s-maxage-shared-shorter-expires": "s-maxage applies to shared caches only",
    "cc-resp-private-shared": "a private cache stores private responses",
    "stale-close-proxy-revalidate": "proxy-revalidate binds shared caches only",
    "stale-close-s-maxage=2": "s-maxage binds shared caches only",
    "other-authorization": "RFC 9111 3.5 binds shared caches only",
    "other-authorization-public": "RFC 9111 3.5 binds shared caches only",
    "other-authorization-must-revalidate": "RFC 9111 3.5 binds shared caches only",
    "other-authorization-smaxage": "RFC 9111 3.5 binds shared caches only",
}

PAUSE = 3.0  # seconds, as test-engine/client/utils.mjs pauses
CONCURRENT = 64  # tests in flight at once
DATE_HEADERS = {"date", "expires", "last-modified", "if-modified-since", "if-unmodified-since"}
LOCATION_HEADERS = {"location", "content-location"}
NO_BODY_STATUS = {204, 304}
SKIP_RESPONSE_HEADERS = {"date"}


class Failure(Exception):
    """An expectation was not met (``setup``: the test could not be set up)."""

    def __init__(self, message: str, setup: bool = False) -> None:
        super().__init__(message)
        self.setup = setup


class Unverifiable(Exception):
    """The test expects something this harness cannot observe through aioduct."""


@dataclass
class Outcome:
    id: str
    kind: str
    result: str  # "pass", "fail", "setup", "dependency", "unverifiable", "error"
    message: str = ""


@dataclass
class Report:
    mode: str
    outcomes: list[Outcome] = field(default_factory=list)
    not_run: dict[str, str] = field(default_factory=dict)
    #: Tests that failed the first round (its message) and passed the second.
    passed_on_rerun: dict[str, str] = field(default_factory=dict)

    def counts(self, kind: str) -> tuple[int, int]:
        """(passed, run) for tests of ``kind``."""
        mine = [o for o in self.outcomes if o.kind == kind]
        return sum(o.result == "pass" for o in mine), len(mine)

    def failures(self, kind: str | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.result != "pass" and kind in (None, o.kind)]

    def summary(self) -> str:
        lines = [f"== {self.mode} cache =="]
        for kind in ("required", "optimal", "check"):
            passed, run = self.counts(kind)
            lines.append(f"{kind}: {passed}/{run} passed")
        lines.extend(f"  [{o.kind}] {o.id}: {o.result}: {o.message}" for o in self.failures())
        lines.extend(f"  not run: {i}: {why}" for i, why in sorted(self.not_run.items()))
        lines.extend(
            f"  passed on a second run: {i} (first: {why})"
            for i, why in sorted(self.passed_on_rerun.items())
        )
        return "\n".join(lines)


def load_tests() -> list[dict[str, Any]]:
    """The corpus's test suites, as ``tests/index.mjs`` exports them (through Node)."""
    index = CORPUS / "tests" / "index.mjs"
    script = f"import t from {json.dumps(index.as_uri())}; process.stdout.write(JSON.stringify(t))"
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    suites: list[dict[str, Any]] = json.loads(out)
    return suites


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def corpus_server(tmp: Path) -> Iterator[str]:
    """The corpus's own Node server on a free loopback port; yields its base URL."""
    port = _free_port()
    env = dict(
        os.environ,
        npm_config_protocol="http",
        npm_config_port=str(port),
        npm_config_pidfile=str(tmp / "cache-tests.pid"),
    )
    log = open(tmp / "cache-tests-server.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        ["node", "test-engine/server/server.mjs"],
        cwd=CORPUS,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the cache-tests server exited: see {log.name}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the cache-tests server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def http_date(now_ms: int, delta: float, rfc850: bool = False) -> str:
    """test-engine/lib/utils.mjs httpDate: ``now_ms`` plus ``delta`` seconds."""
    instant = now_ms / 1000 + delta
    if not rfc850:
        return formatdate(instant, usegmt=True)
    t = time.gmtime(instant)
    return time.strftime("%A, %d-%b-%y %H:%M:%S GMT", t)


def fixup(
    header: list[Any], response_headers: aioduct.Headers | dict[str, str], config: dict[str, Any]
) -> list[Any]:
    """test-engine/lib/header-fixup.mjs: relative dates and magic locations."""
    header = list(header)
    name = header[0].lower()
    if (
        name in DATE_HEADERS
        and isinstance(header[1], int | float)
        and not isinstance(header[1], bool)
    ):
        now = int(response_headers.get("server-now") or 0)
        header[1] = http_date(now, header[1], name in config.get("rfc850date", []))
    if name in LOCATION_HEADERS and config.get("magic_locations"):
        base = response_headers.get("server-base-url")
        header[1] = f"{base}/{header[1]}" if header[1] else f"{base}"
    return header


class Run:
    """One test's run: its requests through ``client``, checked like test.mjs checks."""

    def __init__(
        self, base: str, client: aioduct.Client, plain: aioduct.Client, test: dict[str, Any]
    ) -> None:
        self.base = base
        self.client = client
        self.plain = plain
        self.test = test
        self.uuid = str(uuid.uuid4())
        self.requests = [dict(r, name=test["name"], id=test["id"]) for r in test["requests"]]
        self.responses: list[aioduct.Response | None] = []
        #: Expectations this harness cannot check (the rest of the test still runs).
        self.unverifiable: list[str] = []

    def url(self, config: dict[str, Any]) -> str:
        extra = ""
        if "filename" in config:
            extra += f"/{config['filename']}"
        if "query_arg" in config:
            extra += f"?{config['query_arg']}"
        return f"{self.base}/test/{self.uuid}{extra}"

    async def run(self) -> None:
        put = await self.plain.put(
            f"{self.base}/config/{self.uuid}",
            content=json.dumps(self.requests).encode(),
            headers={"content-type": "application/json"},
        )
        if put.status != 201:
            raise Failure(f"PUT config resulted in {put.status}", setup=True)
        for idx, config in enumerate(self.requests):
            await self.request(idx, config)
            if config.get("pause_after"):
                await asyncio.sleep(PAUSE)
        state = await self.plain.get(f"{self.base}/state/{self.uuid}")
        self.check_server(json.loads(state.text) if state.status == 200 else [])
        if self.unverifiable:
            raise Unverifiable("; ".join(self.unverifiable) + " (every other expectation met)")

    async def request(self, idx: int, config: dict[str, Any]) -> None:
        headers: list[tuple[str, str]] = []
        for header in config.get("request_headers", []):
            header = list(header)
            if config.get("magic_ims") and header[0].lower() == "if-modified-since":
                previous = self.responses[idx - 1]
                header = fixup(header, previous.headers if previous is not None else {}, config)
            headers.append((header[0], str(header[1]).strip()))  # fetch trims values
        if config.get("cache") == "no-cache":
            # fetch()'s "no-cache" mode (Fetch: HTTP-network-or-cache fetch) asks the
            # cache to validate by adding this field: the same request, as a header.
            headers.append(("Cache-Control", "max-age=0"))
        headers.append(("Test-Name", config["name"].strip()))
        headers.append(("Test-ID", config["id"]))
        headers.append(("Req-Num", str(idx + 1)))
        options: dict[str, Any] = {"headers": headers}
        if "request_body" in config:
            options["content"] = str(config["request_body"]).encode()
        if config.get("redirect") == "manual":
            options["follow_redirects"] = False
        method = config.get("request_method", "GET")
        try:
            response = await self.client.request(method, self.url(config), **options)
        except aioduct.AioductError as exc:
            if not config.get("disconnect"):
                raise Failure(f"request {idx + 1} raised {type(exc).__name__}: {exc}") from None
            self.responses.append(None)  # the error response a proxy would have made
            self.check_error_response(idx, config)
            return
        self.responses.append(response)
        self.check_response(idx, config, response)

    def setup(self, config: dict[str, Any], member: str) -> bool:
        return config.get("setup") is True or member in config.get("setup_tests", [])

    def check(self, is_setup: bool, ok: bool, message: str) -> None:
        if not ok:
            raise Failure(message, setup=is_setup)

    def check_error_response(self, idx: int, config: dict[str, Any]) -> None:
        num = idx + 1
        if config.get("expected_type") == "cached":
            self.check(
                self.setup(config, "expected_type"),
                False,
                f"Response {num} does not come from cache (the request raised)",
            )
        if config.get("expected_status") is not None:
            self.check(
                self.setup(config, "expected_status"),
                False,
                f"Response {num} raised, not status {config['expected_status']}",
            )
        for header in config.get("expected_response_headers", []):
            self.check(
                self.setup(config, "expected_response_headers"),
                False,
                f"Response {num} raised: no {header}",
            )

    def check_response(self, idx: int, config: dict[str, Any], response: aioduct.Response) -> None:
        num = idx + 1
        headers = response.headers
        try:
            res_num = int(headers.get("server-request-count", ""))
        except ValueError:
            res_num = None
        numbers = headers.get("request-numbers")
        if numbers:
            seen = [n for n in numbers.split(" ")]
            self.check(False, len(seen) == len(set(seen)), "retry")
        expected_type = config.get("expected_type")
        if expected_type is not None:
            type_setup = self.setup(config, "expected_type")
            if expected_type == "cached" and not (response.status == 304 and res_num is None):
                self.check(
                    type_setup,
                    res_num is not None and res_num < num,
                    f"Response {num} does not come from cache",
                )
            if expected_type == "not_cached":
                self.check(type_setup, res_num == num, f"Response {num} comes from cache")
        if "expected_status" in config:
            if config["expected_status"] is not None:
                self.check(
                    self.setup(config, "expected_status"),
                    response.status == config["expected_status"],
                    f"Response {num} status is {response.status}, not {config['expected_status']}",
                )
        elif "response_status" in config:
            self.check(
                True,
                response.status == config["response_status"][0],
                f"Response {num} status is {response.status}, not {config['response_status'][0]}",
            )
        elif response.status == 999:
            self.check(
                self.setup(config, "expected_type"),
                False,
                f"Request {num} should have been conditional, but it was not.",
            )
        else:
            self.check(
                True, response.status == 200, f"Response {num} status is {response.status}, not 200"
            )
        present_setup = self.setup(config, "expected_response_headers")
        for header in config.get("expected_response_headers", []):
            if isinstance(header, str):
                self.check(
                    present_setup, header in headers, f"Response {num} {header} header not present."
                )
            elif len(header) > 2:
                self.check(
                    present_setup,
                    header[0] in headers,
                    f"Response {num} {header[0]} header not present.",
                )
                value = headers.get(header[0])
                if header[1] == "=":
                    expected = headers.get(header[2])
                    ok, msg = value == expected, f"match {header[2]} ({expected})"
                elif header[1] == ">":
                    try:
                        ok = int(value or "") > header[2]
                    except ValueError:
                        ok = False
                    msg = f"be bigger than {header[2]}"
                else:
                    raise RuntimeError(f"unknown operator {header[1]!r}")
                self.check(
                    present_setup, ok, f"Response {num} header {header[0]} is {value}, should {msg}"
                )
            else:
                expected_value = str(fixup(header, headers, config)[1])
                self.check(
                    present_setup,
                    headers.get(header[0]) == expected_value,
                    f'Response {num} header {header[0]} is "{headers.get(header[0])}", '
                    f'not "{expected_value}"',
                )
        missing_setup = self.setup(config, "expected_response_headers_missing")
        for header in config.get("expected_response_headers_missing", []):
            if isinstance(header, str):
                self.check(
                    missing_setup,
                    header not in headers,
                    f'Response {num} includes unexpected header {header}: "{headers.get(header)}"',
                )
            else:
                # test.mjs indexes the Headers object as a dict here, which is never set:
                # the check cannot fail there, so it does not here either.
                pass
        if config.get("expected_interim_responses"):
            self.unverifiable.append(
                f"request {num} expects interim (1xx) responses, which aioduct does not expose"
            )
        # body
        body = response.text
        if config.get("check_body") is False:
            return
        if "expected_response_text" in config:
            if config["expected_response_text"] is not None:
                self.check(
                    self.setup(config, "expected_response_text"),
                    body == config["expected_response_text"],
                    f'Response body is "{body}", not "{config["expected_response_text"]}"',
                )
        elif config.get("response_body") is not None:
            self.check(
                True,
                body == config["response_body"],
                f'Response body is "{body}", not "{config["response_body"]}"',
            )
        elif response.status not in NO_BODY_STATUS and config.get("request_method") != "HEAD":
            self.check(
                True, body == self.uuid, f'Response body is "{body[:80]}", not "{self.uuid}"'
            )

    def check_server(self, state: list[dict[str, Any]]) -> None:
        test_idx = 0
        for i, config in enumerate(self.requests):
            num = i + 1
            response = self.responses[i] if i < len(self.responses) else None
            server_request = state[test_idx] if test_idx < len(state) else None
            type_setup = self.setup(config, "expected_type")
            validating: list[str] = []
            expected_type = config.get("expected_type")
            if expected_type == "cached":
                continue
            if expected_type == "not_cached":
                self.check(
                    type_setup,
                    server_request is not None and server_request["request_num"] == num,
                    f"Response {num} comes from cache "
                    f"({server_request and server_request['request_num']} on server)",
                )
            if expected_type == "etag_validated":
                validating.append("if-none-match")
            if expected_type == "lm_validated":
                validating.append("if-modified-since")
            test_idx += 1
            for name in validating:
                self.check(
                    type_setup, server_request is not None, f"request {num} wasn't sent to server"
                )
                assert server_request is not None
                self.check(
                    type_setup,
                    name in server_request["request_headers"],
                    f"request {num} doesn't have {name} header",
                )
            request_headers = (server_request or {}).get("request_headers", {})
            req_setup = self.setup(config, "expected_request_headers")
            for header in config.get("expected_request_headers", []):
                if isinstance(header, str):
                    self.check(
                        req_setup,
                        header.lower() in request_headers,
                        f"Request {num} {header} header not present.",
                    )
                else:
                    value = request_headers.get(header[0].lower())
                    self.check(
                        req_setup,
                        value == header[1],
                        f'Request {num} header {header[0]} is "{value}", not "{header[1]}"',
                    )
            miss_setup = self.setup(config, "expected_request_headers_missing")
            for header in config.get("expected_request_headers_missing", []):
                if isinstance(header, str):
                    self.check(
                        miss_setup,
                        header.lower() not in request_headers,
                        f"Request {num} {header} header present.",
                    )
                else:
                    value = request_headers.get(header[0].lower())
                    self.check(
                        miss_setup,
                        value != header[1],
                        f'Request {num} header {header[0]} is "{value}"',
                    )
            if (
                server_request is not None
                and "response_headers" in server_request
                and response is not None
            ):
                for name, value in server_request["response_headers"]:
                    if name.lower() in SKIP_RESPONSE_HEADERS:
                        continue
                    received = response.headers.get(name)
                    if isinstance(value, list):
                        value = ", ".join(str(v) for v in value)
                    self.check(
                        True,
                        received == str(value),
                        f'Response {num} header {name} is "{received}", not "{value}"',
                    )
            if "expected_method" in config:
                got = server_request and server_request["request_method"]
                self.check(
                    self.setup(config, "expected_method"),
                    got == config["expected_method"],
                    f"Request {num} had method {got}, not {config['expected_method']}",
                )


def select(suites: list[dict[str, Any]], mode: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The tests a ``mode`` ("private" or "shared") cache runs, and why others do not."""
    chosen, not_run = [], {}
    for suite in suites:
        for test in suite["tests"]:
            if test.get("cdn_only"):
                not_run[test["id"]] = "cdn_only (CDN-Cache-Control is for CDNs)"
            elif mode == "private" and test["id"] in SHARED_ONLY:
                not_run[test["id"]] = (
                    f"shared-cache rule ({SHARED_ONLY[test['id']]}): run by the shared cache"
                )
            elif mode == "shared" and test.get("browser_only"):
                not_run[test["id"]] = "browser_only (private-cache rule): run by the private cache"
            else:
                chosen.append(test)
    return chosen, not_run


async def run_corpus(base: str, mode: str, suites: list[dict[str, Any]] | None = None) -> Report:
    """Run every test ``mode`` applies to, up to :data:`CONCURRENT` at once (each has its
    own URLs), then the ones that did not pass once more (a far smaller round).

    Many tests give a response two seconds of freshness and expect the next request to
    find it fresh: on a loaded machine (the whole suite on two cores) a test can lose
    that race while waiting its turn. A failure that repeats is the cache's; one that
    does not is counted as passed and listed in ``Report.passed_on_rerun``.
    """
    suites = suites if suites is not None else load_tests()
    tests, not_run = select(suites, mode)
    report = Report(mode, not_run=not_run)
    cache = aioduct.Cache(shared=mode == "shared")
    results: dict[str, Outcome] = {}
    async with (
        aioduct.Client(cache=cache, timeout=20, max_connections=400) as client,
        aioduct.Client(timeout=20) as plain,
    ):
        slots = asyncio.Semaphore(CONCURRENT)

        async def one(test: dict[str, Any]) -> None:
            async with slots:
                await attempt(test)

        async def attempt(test: dict[str, Any]) -> None:
            kind = test.get("kind", "required")
            try:
                await Run(base, client, plain, test).run()
                results[test["id"]] = Outcome(test["id"], kind, "pass")
            except Failure as exc:
                results[test["id"]] = Outcome(
                    test["id"], kind, "setup" if exc.setup else "fail", str(exc)
                )
            except Unverifiable as exc:
                results[test["id"]] = Outcome(test["id"], kind, "unverifiable", str(exc))
            except Exception as exc:
                results[test["id"]] = Outcome(
                    test["id"], kind, "error", f"{type(exc).__name__}: {exc}"
                )

        await asyncio.gather(*(one(t) for t in tests))
        first = dict(results)
        again = [t for t in tests if first[t["id"]].result in ("fail", "setup", "error")]
        await asyncio.gather(*(one(t) for t in again))
        for test in again:
            if results[test["id"]].result == "pass":
                report.passed_on_rerun[test["id"]] = first[test["id"]].message
    for test in tests:
        outcome = results[test["id"]]
        failed_deps = [
            d for d in test.get("depends_on", []) if d in results and results[d].result != "pass"
        ]
        if outcome.result != "pass" and failed_deps:
            outcome = Outcome(
                outcome.id,
                outcome.kind,
                "dependency",
                f"depends on {', '.join(failed_deps)} ({outcome.message})",
            )
        report.outcomes.append(outcome)
    return report


def main() -> None:
    import sys
    import tempfile

    modes = sys.argv[1:] or ["private", "shared"]
    suites = load_tests()
    with tempfile.TemporaryDirectory() as tmp, corpus_server(Path(tmp)) as base:
        for mode in modes:
            report = aioduct.run(run_corpus(base, mode, suites))
            print(report.summary())


if __name__ == "__main__":
    main()
