"""Server-Sent Events: a sans-I/O parser and the reconnecting event source.

:class:`SSEDecoder` is the WHATWG "event stream interpretation" as a pure function of
the bytes fed to it (HTML Living Standard, 9.2.6): one leading BOM is dropped, lines end
with CRLF, LF or CR (even when a CRLF is split across two reads), ``:`` starts a comment,
``data`` lines accumulate, ``id`` containing NUL is ignored, ``retry`` counts only when
it is all ASCII digits, and a block without data dispatches nothing. It never does I/O,
so the same code serves :meth:`Response.aiter_sse` and every driver.

:class:`EventSource` adds what a browser's ``EventSource`` does around it: it sends
``Accept: text/event-stream`` and ``Cache-Control: no-store``, checks the answer (a 200
that is not ``text/event-stream`` is an error, a 204 means "stop"), and when the stream
drops it waits the server's ``retry`` delay on the client's runtime and reconnects with
``Last-Event-ID``. A hostile server cannot make it hold more than ``max_event_size``
bytes of one line or one event.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import msgspec

from .errors import AioductError, RemoteProtocolError, TransportError
from .errors import TimeoutError as _Timeout
from .headers import Headers

if TYPE_CHECKING:
    from .models import Response

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_RETRY",
    "EventSource",
    "SSEDecoder",
    "SSEError",
    "ServerSentEvent",
    "check_event_stream",
]

T = TypeVar("T")

#: How large one line or one event's data may grow before the stream is refused.
DEFAULT_MAX_EVENT_SIZE: Final = 1 << 20
#: Seconds to wait before reconnecting while the server has not sent ``retry:``.
DEFAULT_RETRY: Final = 3.0

_BOM: Final = b"\xef\xbb\xbf"
_EOL: Final = re.compile(rb"[\r\n]")


class SSEError(RemoteProtocolError):
    """The server's answer is not a usable event stream (wrong type, status or size)."""


class ServerSentEvent(msgspec.Struct, frozen=True):
    """One dispatched event.

    ``event`` is the type (``"message"`` when the server named none); ``id`` is the
    last event ID at dispatch, which persists across events until the server sets
    another; ``retry`` is the reconnection time in milliseconds if this event's block
    set one.
    """

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None

    @overload
    def json(self) -> Any: ...
    @overload
    def json(self, type: type[T]) -> T: ...
    def json(self, type: Any = Any) -> Any:
        """The data decoded as JSON (optionally validated into ``type``, msgspec-style)."""
        return msgspec.json.decode(self.data, type=type)


class SSEDecoder:
    """Bytes in, :class:`ServerSentEvent` out; call :meth:`end` when a stream ends.

    ``last_event_id`` is the ID to resume from (sent as ``Last-Event-ID``); ``retry`` is
    the server's reconnection time in milliseconds, or ``None`` until it sends one.
    """

    def __init__(
        self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE, last_event_id: str = ""
    ) -> None:
        if max_event_size < 1:
            raise ValueError(f"max_event_size must be at least 1, not {max_event_size}")
        self.max_event_size = max_event_size
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self._buf = bytearray()
        self._started = False  # past the place where a BOM may be
        self._skip_lf = False  # the last line ended with a CR: a leading LF belongs to it
        self._reset_event()

    def _reset_event(self) -> None:
        self._data: list[str] = []
        self._size = 0
        self._event = ""
        self._event_retry: int | None = None
        self._id = self.last_event_id

    def feed(self, data: bytes | bytearray | memoryview) -> list[ServerSentEvent]:
        """The events completed by ``data`` (possibly none)."""
        if not data:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == 0x0A:
                data = data[1:]
        buf = self._buf
        buf += data
        if not self._started:
            if len(buf) < 3 and _BOM.startswith(buf):
                return []  # may still be the start of a BOM
            self._started = True
            if buf.startswith(_BOM):
                del buf[:3]
        events: list[ServerSentEvent] = []
        if b"\r" not in buf:
            # LF line ends only (what servers send): split the complete lines at once
            # and decode them in one call (U+FFFD never stands for an LF, so the lines
            # are the same), unless a line could be longer than max_event_size.
            last = buf.rfind(b"\n")
            if last < 0:
                if len(buf) > self.max_event_size:
                    self._too_large("line")
                return events
            if last <= self.max_event_size:
                block = buf[:last].decode("utf-8", "replace")
                del buf[: last + 1]
                events = [e for e in map(self._line, block.split("\n")) if e is not None]
                if len(buf) > self.max_event_size:
                    self._too_large("line")
                return events
        pos = 0
        end_of_buf = len(buf)
        search = _EOL.search
        while (match := search(buf, pos)) is not None:
            end = match.start()
            after = end + 1
            if buf[end] == 0x0D:
                if after < end_of_buf:
                    if buf[after] == 0x0A:
                        after += 1
                else:
                    self._skip_lf = True
            if end - pos > self.max_event_size:
                self._too_large("line")
            event = self._line(buf[pos:end].decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
            pos = after
        if pos:
            del buf[:pos]
        if len(buf) > self.max_event_size:
            self._too_large("line")
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None  # a comment (servers send them as keep-alives)
        field, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._size += len(value) + 1
            if self._size > self.max_event_size:
                self._too_large("event")
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry = self._event_retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id
        if not self._data:
            self._reset_event()
            return None
        event = ServerSentEvent(
            self._event or "message", "\n".join(self._data), self.last_event_id, self._event_retry
        )
        self._reset_event()
        return event

    def _too_large(self, what: str) -> None:
        self._buf.clear()
        self._reset_event()
        raise SSEError(
            f"the server sent an event-stream {what} longer than max_event_size="
            f"{self.max_event_size} bytes; raise max_event_size if the stream is trusted"
        )

    def end(self) -> None:
        """The stream ended: an unfinished line or event is discarded (not dispatched),
        and the next stream (a reconnection) may start with a BOM again."""
        self._buf.clear()
        self._started = self._skip_lf = False
        self._reset_event()


def _mime(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def check_event_stream(response: Response) -> None:
    """Raise :class:`SSEError` unless ``response`` is a 200 ``text/event-stream``.

    A 4xx/5xx raises :class:`StatusError` as ``raise_for_status()`` would.
    """
    names = response._request_names()
    if response.status >= 400:
        response.raise_for_status()
    if response.status != 200:
        raise SSEError(
            f"expected 200 with an event stream, got {response.status} {response.reason}".rstrip(),
            **names,
        )
    content_type = response.headers.get("content-type")
    if _mime(content_type) != "text/event-stream":
        raise SSEError(
            f"expected Content-Type: text/event-stream, got {content_type or 'none'}: this "
            "URL does not serve Server-Sent Events (read it with stream() instead)",
            **names,
        )


#: Failures after which a stream is reopened: the connection, not the server's answer.
_DROPPED: Final = (TransportError, _Timeout)

Opener = Callable[[Headers], Awaitable["Response"]]
Sleeper = Callable[[float], Awaitable[None]]


class EventSource:
    """The events of one URL across reconnections: ``async for event in source``.

    Made by :meth:`Client.sse` (which opens the first connection before handing it
    over). ``response`` is the current connection's response; ``last_event_id`` what a
    reconnection sends; ``reconnects`` how many it has made.
    """

    def __init__(
        self,
        open: Opener,
        sleep: Sleeper,
        *,
        headers: Headers,
        reconnect: bool = True,
        max_reconnects: int | None = None,
        retry: float = DEFAULT_RETRY,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
    ) -> None:
        if max_reconnects is not None and max_reconnects < 0:
            raise ValueError(f"max_reconnects must be >= 0 or None, not {max_reconnects}")
        if retry < 0:
            raise ValueError(f"retry must be >= 0 seconds, not {retry}")
        self._open = open
        self._sleep = sleep
        self._headers = headers
        self._reconnect = reconnect
        self._max_reconnects = max_reconnects
        self._retry = retry
        self._decoder = SSEDecoder(max_event_size=max_event_size)
        self.response: Response | None = None
        self.reconnects = 0
        self._closed = False
        self._events: AsyncIterator[ServerSentEvent] | None = None

    @property
    def last_event_id(self) -> str:
        return self._decoder.last_event_id

    @property
    def retry(self) -> float:
        """Seconds the next reconnection waits (the server's ``retry:``, else the default)."""
        ms = self._decoder.retry
        return self._retry if ms is None else ms / 1000

    async def _connect(self) -> Response | None:
        """Open the stream; ``None`` when the server answered 204 (stop, per the spec)."""
        headers = Headers(self._headers)
        headers["Accept"] = "text/event-stream"
        headers["Cache-Control"] = "no-store"
        if self._decoder.last_event_id:
            headers["Last-Event-ID"] = self._decoder.last_event_id
        response = await self._open(headers)
        if response.status == 204:
            await response.aclose()
            return None
        try:
            check_event_stream(response)
        except BaseException:
            await response.aclose()
            raise
        return response

    async def start(self) -> EventSource:
        self.response = await self._connect()
        if self.response is None:
            self._closed = True
        return self

    def __aiter__(self) -> AsyncIterator[ServerSentEvent]:
        if self._events is None:
            self._events = self._run()
        return self._events

    async def __anext__(self) -> ServerSentEvent:
        return await self.__aiter__().__anext__()

    async def _run(self) -> AsyncIterator[ServerSentEvent]:
        decoder = self._decoder
        while not self._closed:
            response = self.response
            assert response is not None
            failure: AioductError | None = None
            try:
                async for chunk in response.aiter_bytes():
                    for event in decoder.feed(chunk):
                        yield event
            except SSEError:
                raise
            except _DROPPED as exc:
                failure = exc  # the stream dropped: reconnect, as a browser does
            finally:
                await response.aclose()
            decoder.end()
            self.response = None
            if self._closed or not self._reconnect:
                if failure is not None:
                    raise failure
                return
            self.response = await self._reconnect_after(failure)
            if self.response is None:
                return

    async def _reconnect_after(self, failure: AioductError | None) -> Response | None:
        while True:
            limit = self._max_reconnects
            if limit is not None and self.reconnects >= limit:
                if failure is not None:
                    raise failure
                return None  # ended cleanly and may not reconnect again: the end
            await self._sleep(self.retry)
            if self._closed:
                return None
            self.reconnects += 1
            try:
                return await self._connect()
            except SSEError:
                raise  # the server answered, and not with events: "fail the connection"
            except _DROPPED as exc:
                failure = exc

    async def aclose(self) -> None:
        """Stop: close the current connection and never reconnect."""
        self._closed = True
        response, self.response = self.response, None
        events, self._events = self._events, None
        if events is not None:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
        if response is not None:
            await response.aclose()


class BlockingEventSource:
    """:class:`EventSource` for :class:`~aioduct.BlockingClient`: ``for event in source``."""

    def __init__(self, source: EventSource, run: Callable[[Awaitable[Any]], Any]) -> None:
        self._source = source
        self._run = run

    @property
    def response(self) -> Response | None:
        return self._source.response

    @property
    def last_event_id(self) -> str:
        return self._source.last_event_id

    @property
    def reconnects(self) -> int:
        return self._source.reconnects

    def __iter__(self) -> Iterator[ServerSentEvent]:
        events = self._source.__aiter__()
        while True:
            try:
                yield self._run(events.__anext__())
            except StopAsyncIteration:
                return

    def close(self) -> None:
        self._run(self._source.aclose())
