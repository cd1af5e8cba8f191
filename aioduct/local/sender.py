"""``Client(engine="local")``: the Client API with a LocalEngine doing the sending.

The Client still builds each :class:`~aioduct.Request` (base URL, default headers,
params, auth, body encoding) in the caller's process; this adapter turns it into a
:class:`~aioduct.Job`, lets the worker for its origin run it (redirects, timeouts and
pooling happen there), and turns the :class:`~aioduct.Result` back into a
:class:`~aioduct.Response` or into the exception it records.

What differs from the send engine, by construction: responses arrive fully buffered
(``stream()`` works, over the buffered body), redirect ``history`` stays in the worker
(``response.url`` is the final URL), and a streamed request body is read into memory
before it is sent.
"""

from __future__ import annotations

from typing import Final

from ..config import ClientConfig, Timeout
from ..jobs import Job, error_to_exception, result_to_response
from ..models import Request, Response
from .engine import LocalEngine

__all__ = ["LocalSender"]

_UNSET: Final = object()


class LocalSender:
    """Sends a Client's requests through a :class:`LocalEngine`."""

    name = "local"

    def __init__(self, config: ClientConfig, *, workers: int | None = None) -> None:
        self.local = LocalEngine(workers=workers, config=config)

    async def send(
        self,
        request: Request,
        *,
        stream: bool = False,
        timeout: float | object | None = _UNSET,  # noqa: ASYNC109 (a deadline)
        follow_redirects: bool | None = None,
    ) -> Response:
        if isinstance(timeout, Timeout):
            given = timeout.options()
            if given.keys() - {"timeout"}:
                raise TypeError(
                    f"on the local engine a request's own timeout is its total deadline "
                    f"only ({timeout!r} sets more); set connect/read/write/pool timeouts "
                    f"on the client (its workers apply them), e.g. Client(engine='local', "
                    f"timeout=aioduct.Timeout(...))"
                )
            timeout = given.get("timeout", _UNSET)
        if request.stream is not None:
            body = b"".join([bytes(chunk) async for chunk in request.stream])
            request = Request(request.method, request.url, headers=request.headers, content=body)
        job = Job.from_request(
            request,
            timeout=timeout if isinstance(timeout, int | float) else None,
            follow_redirects=follow_redirects,
        )
        result = await self.local.arequest_job(job)
        if result.error is not None:
            url = request.url.redacted()
            exc = error_to_exception(result.error, method=request.method, url=url)
            exc.attempts = result.attempts
            raise exc
        return result_to_response(result, request)

    async def aclose(self) -> None:
        await self.local.aclose()
