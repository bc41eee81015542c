"""Streaming helpers shared by the dialects: prime a stream so early errors get a real status,
stop work when the client goes away, and encode NDJSON/SSE."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from deskml.core.context import current_record, whole_reply
from deskml.core.errors import DeskmlError

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the reply was ready."""


def dumps(value: Any) -> str:
    # ensure_ascii=False: Cyrillic and emoji travel as UTF-8, not \\u escapes (the seed's problem 6)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it (which frees its slot) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise ClientGone()


async def collect(events: AsyncIterator[T]) -> list[T]:
    """The whole reply, before the client gets any of it (so the router may retry a failure mid-way)."""
    with whole_reply():
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            return [event async for event in events]


def _note_stream_error(exc: Exception) -> None:
    """A stream that failed after its 200 went out keeps that status, as a drained one does; the record
    (history, access log) says why it ended early."""
    record = current_record()
    if record is not None and record.error is None:
        record.error = exc.message if isinstance(exc, DeskmlError) else f"internal error: {type(exc).__name__}"


async def prime(request: Request, events: AsyncIterator[T]) -> tuple[T | None, AsyncIterator[T]]:
    """Take the first item now, so errors before the first token become an HTTP status. Until then
    the client has no response at all (a queued request waits here), so a client that leaves
    cancels the wait and frees its place."""
    return await until_disconnected(request, _first(events))


async def _first(events: AsyncIterator[T]) -> tuple[T | None, AsyncIterator[T]]:
    try:
        first = await anext(events)
    except StopAsyncIteration:
        return None, events
    except BaseException:
        with contextlib.suppress(BaseException):
            await events.aclose()  # type: ignore[attr-defined]
        raise
    return first, events


def stream_response(
    lines: AsyncIterator[str], media_type: str, headers: dict[str, str] | None = None
) -> StreamingResponse:
    # Starlette encodes str chunks as UTF-8 itself, and ClosingStreamingResponse closes `lines` however
    # the reply ends: no wrapping generator, one hop less for every streamed token.
    return ClosingStreamingResponse(lines, media_type=media_type, headers=headers)


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that closes its body when the reply ends, however it ends.

    Starlette leaves the body generator suspended when the client disconnects mid-stream; it would
    be closed later by the garbage collector, after the middlewares had finished with the request.
    Closing it here lets the engine stream stop and note the tokens it generated on the request
    record before the rate limiter charges them and the record goes to history."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


async def ndjson_lines(
    first: T | None,
    rest: AsyncIterator[T],
    render: Callable[[T], list[dict[str, Any]]],
    on_error: Callable[[DeskmlError | Exception], dict[str, Any]],
) -> AsyncIterator[str]:
    """Render a primed event stream as NDJSON; an error mid-stream becomes one final error line."""
    try:
        if first is not None:
            for item in render(first):
                yield dumps(item) + "\n"
        async for event in rest:
            for item in render(event):
                yield dumps(item) + "\n"
    except Exception as exc:  # DeskmlError or an engine fault after the headers went out: tell the client
        _note_stream_error(exc)
        yield dumps(on_error(exc)) + "\n"
    finally:
        with contextlib.suppress(BaseException):
            await rest.aclose()  # type: ignore[attr-defined]


async def sse_lines(
    first: T | None,
    rest: AsyncIterator[T],
    render: Callable[[T], list[dict[str, Any]]],
    on_error: Callable[[DeskmlError | Exception], dict[str, Any]],
) -> AsyncIterator[str]:
    """Render a primed event stream as server-sent events ending `data: [DONE]`, as OpenAI streams;
    an error mid-stream becomes one final `data: {"error": ...}` event (the `openai` client raises it)."""
    try:
        if first is not None:
            for item in render(first):
                yield f"data: {dumps(item)}\n\n"
        async for event in rest:
            for item in render(event):
                yield f"data: {dumps(item)}\n\n"
    except Exception as exc:  # DeskmlError or an engine fault after the headers went out
        _note_stream_error(exc)
        yield f"data: {dumps(on_error(exc))}\n\n"
        return
    finally:
        with contextlib.suppress(BaseException):
            await rest.aclose()  # type: ignore[attr-defined]
    yield "data: [DONE]\n\n"
