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

Layers: the workers build their own from the config (HSTS, netrc, ...), and run them
around every hop there. Two policies also run here, around each job, because their
state or objects live with this Client: HSTS (jobs of one host's http and https
origins may go to different workers; this store sees them all, so a job is upgraded
before it is sharded) and challenge auth such as Digest (code, which a worker cannot
receive: a 401 from the job's own origin, after no redirect, is answered here by a
second job).
"""

from __future__ import annotations

from typing import Final

from ..config import ClientConfig, Timeout
from ..hsts import HSTSLayer, store_for
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
        self.hsts: HSTSLayer | None = None
        if config.hsts:
            self.hsts = HSTSLayer(store_for(config), learn=config.verify_certificates)
        #: The layers that run in this process (the Client closes them).
        self.parent_layers: tuple[object, ...] = () if self.hsts is None else (self.hsts,)

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
            request = Request(
                request.method,
                request.url,
                headers=request.headers,
                content=body,
                auth=request.auth,
            )
        seconds = timeout if isinstance(timeout, int | float) else None

        async def run_job(request: Request) -> Response:
            job = Job.from_request(request, timeout=seconds, follow_redirects=follow_redirects)
            result = await self.local.arequest_job(job)
            if result.error is not None:
                url = request.url.redacted()
                exc = error_to_exception(result.error, method=request.method, url=url)
                exc.attempts = result.attempts
                raise exc
            # (Redirected in the worker, response.url is the final URL: DigestAuth
            # answers only a 401 from the URL it sent to.)
            return result_to_response(result, request)

        hsts = self.hsts
        if hsts is not None:
            request = hsts.upgrade(request)
        flow = request.auth
        if flow is None:
            response = await run_job(request)
        else:
            response = await flow(request, run_job)
        if hsts is not None:
            hsts.observe_final(response)
        return response

    async def aclose(self) -> None:
        await self.local.aclose()
