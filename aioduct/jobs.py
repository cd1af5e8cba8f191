"""Jobs and Results: requests and their outcomes as plain data.

The bulk engines (:class:`~aioduct.LocalEngine`, :class:`~aioduct.SendEngine`) take
:class:`Job` values in and give :class:`Result` values back. Both are ``msgspec`` Structs
so that they cross process boundaries as compact msgpack frames and land in a crawler's
JSON-lines output unchanged. A failed request is a Result too (``status == 0`` and an
:class:`JobError`), never an exception that would end a ten-million-URL map.

This module also converts between the two worlds: a :class:`~aioduct.Request` to a Job,
a :class:`~aioduct.Response` or an exception to a Result, and a Result back to a
Response or to the exception it stands for (``Client(engine="local")`` needs both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec

from . import errors as _errors
from .config import Timeout, seconds
from .errors import AioductError, InvalidURL
from .headers import Headers, header_field
from .models import Request, Response, Timings
from .url import URL
from .validation import check_request

if TYPE_CHECKING:
    from .client import RequestOptions

__all__ = ["Job", "JobError", "Result", "error_to_exception", "result_to_response"]

Pairs = tuple[tuple[str, str], ...]


def _pairs(headers: object) -> Pairs:
    if isinstance(headers, Mapping):
        return tuple(header_field(k, v) for k, v in headers.items())
    return tuple(header_field(*pair) for pair in headers)  # type: ignore[attr-defined]


class Job(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One request to run. ``map()`` also accepts a plain URL string for a GET.

    Building one checks its method and headers (:mod:`aioduct.validation`) and raises
    :class:`~aioduct.LocalProtocolError` for any that cannot go on the wire.
    """

    url: str
    method: str = "GET"
    id: int | str | None = None
    """Echoed on the Result; the engine numbers jobs in input order when ``None``."""
    headers: Pairs = ()
    """Added to the engine's default headers (a dict or pairs is accepted)."""
    body: bytes | None = None
    content: Any = None
    """The body as the request methods take it: ``bytes``, or ``str`` (UTF-8, with
    ``Content-Type: text/plain; charset=utf-8`` unless set). Stored in :attr:`body`."""
    json: Any = None
    """A value sent as JSON (``Content-Type: application/json`` unless set). Stored,
    encoded, in :attr:`body`."""
    timeout: float | None = None
    """Total deadline for this job (each attempt); ``None`` uses the engine's config.
    Seconds, or an :class:`aioduct.Timeout` that sets only ``total``."""
    follow_redirects: bool | None = None
    """``None`` uses the engine's config."""
    meta: Any = None
    """Anything msgpack can encode; echoed on the Result untouched."""
    save_to: str | None = None
    """Download the URL into this file (``Client.download``: parallel ranges, If-Range,
    resume) instead of returning its body. One worker runs the whole download, so the
    ranges of a file never cross workers; the Result has ``status`` 200, ``size`` and
    ``value`` (the :class:`~aioduct.Download` as a dict), no body."""
    chunks: int = 8
    """Ranges a ``save_to`` download fetches at once."""

    def __post_init__(self) -> None:
        # Runs for every job a map() builds, mostly a bare GET: that case returns at once.
        headers = self.headers
        if (
            headers == ()
            and self.method == "GET"
            and self.body is None
            and self.content is None
            and self.json is None
            and self.timeout is None
        ):
            return
        if (type(headers) is not tuple or headers) and not (
            isinstance(headers, tuple) and all(type(h) is tuple for h in headers)
        ):
            msgspec.structs.force_setattr(self, "headers", _pairs(headers))
        if self.content is not None or self.json is not None:
            self._encode_body()
        body = self.body
        if body is not None and isinstance(body, bytearray | memoryview):
            msgspec.structs.force_setattr(self, "body", bytes(body))
        timeout = self.timeout
        if timeout is not None and type(timeout) is not float:
            msgspec.structs.force_setattr(self, "timeout", _job_timeout(timeout))
        method = self.method
        if method != "GET":
            method = method.upper()
            if method != self.method:
                msgspec.structs.force_setattr(self, "method", method)
        # What the job would put on the wire, checked now: an invalid method or header
        # raises LocalProtocolError here, before any engine or worker contacts anyone.
        # (Its URL is checked by job_url(), which turns a bad one into an error Result.)
        if method != "GET" or self.headers:
            check_request(method, self.headers)

    def _encode_body(self) -> None:
        """Move ``content=``/``json=`` into ``body`` (what travels and what is sent)."""
        given = [name for name in ("body", "content", "json") if getattr(self, name) is not None]
        if len(given) > 1:
            raise TypeError(f"pass only one of body=, content= or json= (got {', '.join(given)})")
        content, value = self.content, self.json
        kind = None
        if value is not None:
            body = _JSON_ENCODER.encode(value)
            kind = "application/json"
        elif isinstance(content, str):
            body = content.encode()
            kind = "text/plain; charset=utf-8"
        elif isinstance(content, bytes | bytearray | memoryview):
            body = bytes(content)
        else:
            raise TypeError(f"content= must be bytes or str, not {type(content).__name__}")
        if kind is not None and not any(n.lower() == "content-type" for n, _ in self.headers):
            msgspec.structs.force_setattr(self, "headers", (*self.headers, ("Content-Type", kind)))
        msgspec.structs.force_setattr(self, "body", body)
        msgspec.structs.force_setattr(self, "content", None)
        msgspec.structs.force_setattr(self, "json", None)

    def request_options(self) -> RequestOptions:
        """``Client.request`` keywords for this job: only what it sets."""
        options: RequestOptions = {}
        if self.headers:
            options["headers"] = self.headers
        if self.body is not None:
            options["content"] = self.body
        if self.timeout is not None:
            options["timeout"] = self.timeout
        if self.follow_redirects is not None:
            options["follow_redirects"] = self.follow_redirects
        return options

    @classmethod
    def coerce(cls, item: Job | str) -> Job:
        """A Job from a Job or a URL string (anything else is a TypeError that says so)."""
        if isinstance(item, Job):
            return item
        if isinstance(item, str):
            return cls(url=item)
        raise TypeError(f"map() takes Jobs or URL strings, not {type(item).__name__}: {item!r}")

    @classmethod
    def from_request(cls, request: Request, *, timeout: float | None = None, **kw: Any) -> Job:
        """The Job that sends ``request`` (its body must be bytes, not a stream)."""
        if request.stream is not None:
            raise TypeError("a streamed request body cannot be sent as a Job; pass bytes")
        return cls(
            url=str(request.url),
            method=request.method,
            # Host comes from the URL in the worker (and changes with redirects there).
            headers=tuple(h for h in request.headers.multi_items() if h[0].lower() != "host"),
            body=request.content,
            timeout=timeout,
            **kw,
        )


def _job_timeout(value: object) -> float | None:
    if isinstance(value, Timeout):
        given = value.options()
        if given.keys() - {"timeout"}:
            raise TypeError(
                f"a Job's timeout is its total deadline only ({value!r} sets more); set "
                "connect/read/write/pool timeouts on the engine, e.g. "
                "LocalEngine(timeout=aioduct.Timeout(...))"
            )
        return given.get("timeout")
    return seconds("timeout", value)


_JSON_ENCODER: Final = msgspec.json.Encoder()


class JobError(msgspec.Struct, frozen=True):
    """Why a job has no response. ``kind`` is the aioduct exception's class name."""

    kind: str
    """e.g. ``"ConnectError"``, ``"ReadTimeout"``, ``"TLSError"``, ``"WorkerCrashed"``."""
    message: str


class Result(msgspec.Struct, kw_only=True, omit_defaults=False):
    """What happened to one :class:`Job`."""

    id: int | str | None
    url: str
    """The job's URL."""
    final_url: str | None = None
    """The URL of the final response, after redirects."""
    status: int = 0
    """0 when there is no response (see :attr:`error`)."""
    headers: Pairs = ()
    body: bytes | None = None
    http_version: str | None = None
    error: JobError | None = None
    timings: Timings | None = None
    worker: int = -1
    """The local engine worker that ran it; -1 for the send engine."""
    attempts: int = 1
    """Tries it took: > 1 after retries or after its worker died mid-request."""
    meta: Any = None
    reason: str = ""
    size: int = 0
    """Body length in bytes (kept when a crawler drops :attr:`body`)."""
    value: Any = None
    """What the ``map(..., process=)`` function returned for this Result (such Results
    carry no headers and no body: the function had them, where the response was)."""
    trailers: Pairs = ()
    """Trailer fields sent after the body (HTTP/1.1 chunked, HTTP/2); usually none."""

    @property
    def ok(self) -> bool:
        """A response arrived and its status is below 400."""
        return self.error is None and 0 < self.status < 400


def job_url(job: Job) -> URL:
    """The job's URL, parsed and checked (scheme, host) before it takes any slot.

    Raises :class:`~aioduct.InvalidURL` for anything that cannot be requested.
    """
    try:
        url = URL(job.url)
        url.origin  # noqa: B018 (validates scheme and host)
    except InvalidURL:
        raise
    except ValueError as exc:
        raise InvalidURL(str(exc)) from None
    return url


def response_result(job: Job, response: Response, *, worker: int = -1, attempts: int = 1) -> Result:
    body = response.content
    result = Result(
        id=job.id,
        url=job.url,
        final_url=str(response.url) if response.url is not None else job.url,
        status=response.status,
        headers=tuple(response.headers._list),
        body=body,
        http_version=response.http_version,
        timings=response.timings,
        worker=worker,
        attempts=attempts,
        meta=job.meta,
        reason=response.reason,
        size=len(body),
    )
    if response._trailers:
        result.trailers = tuple(response._trailers)
    return result


def error_result(job: Job, exc: BaseException, *, worker: int = -1, attempts: int = 1) -> Result:
    return Result(
        id=job.id,
        url=job.url,
        error=exception_to_error(exc),
        worker=worker,
        attempts=attempts,
        meta=job.meta,
    )


#: Kinds that are not aioduct exception classes.
INTERNAL: Final = "InternalError"


def exception_to_error(exc: BaseException) -> JobError:
    """The JobError describing ``exc``: aioduct errors by class name, others as internal."""
    if isinstance(exc, AioductError):
        return JobError(type(exc).__name__, str(exc))
    return JobError(INTERNAL, f"{type(exc).__name__}: {exc}")


def error_to_exception(
    error: JobError, *, method: str | None = None, url: str | None = None
) -> AioductError:
    """The exception a Result's error stands for (the same class where it is an aioduct one)."""
    found = getattr(_errors, error.kind, None)
    if not (isinstance(found, type) and issubclass(found, AioductError)):
        return AioductError(f"{error.kind}: {error.message}", method=method, url=url)
    if found is _errors.TooManyRedirects:  # the chain stayed in the worker
        return found(error.message, history=[], method=method, url=url)
    if found is _errors.StatusError:  # needs a response; never produced by a job
        return AioductError(error.message, method=method, url=url)
    return found(error.message, method=method, url=url)


def result_to_response(result: Result, request: Request | None = None) -> Response:
    """A buffered :class:`Response` built from a successful Result."""
    response = Response(
        result.status,
        headers=Headers._adopt(list(result.headers)),
        reason=result.reason,
        http_version=result.http_version or "HTTP/1.1",
        content=result.body if result.body is not None else b"",
        request=request,
        timings=result.timings,
    )
    if result.final_url is not None:
        response.url = URL(result.final_url)
    if result.trailers:
        response._trailers = list(result.trailers)
    if result.attempts != 1:
        response._attempts = result.attempts
    return response
