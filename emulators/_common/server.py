"""What the emulators' API handlers share: record, delay, answer, finish.

Every API request is recorded *before* latency and faults are applied, so the
recorded times are arrival times (what a provider-side rate limiter counts) and
even requests that end in an error or a dropped socket are visible to tests.
The protocol (parsing, routing, bodies, most fault kinds) stays in each
emulator's ``ApiHandler`` subclass.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from aiohttp import web

from .control import add_control_routes
from .faults import DROP_CONNECTION, SLOW, STREAM_BREAK, STREAM_ERROR, STREAM_FAULTS, FaultBase
from .state import EmulatorStateBase, FaultT, MediaPart, RecT

# The emulator's own state class, so that a handler sees what its subclass adds.
StateT = TypeVar("StateT", bound=EmulatorStateBase[Any, Any])


class Dropped(Exception):
    """Internal signal: the connection was closed on purpose, no response exists."""


def drop_connection(request: web.Request) -> None:
    # force_close() closes the socket right away; aiohttp then silently fails
    # to write the placeholder response, so the client sees a connection that
    # was closed without any HTTP answer (httpx.RemoteProtocolError,
    # aiohttp.ServerDisconnectedError, openai "server disconnected").
    request.protocol.force_close()
    raise Dropped


class ReplyFunctionFailed(Exception):
    """The test's reply function raised; the emulator answers its API's 500 with this text."""


def decoded_size(data: Any) -> int:
    """Bytes in a base64 string (standard or URL-safe alphabet, padding optional, as Google
    accepts); ValueError when it is not base64."""
    if not isinstance(data, str):
        raise ValueError("base64 data must be a string")
    text = data.translate(str.maketrans("-_", "+/"))
    try:
        return len(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except binascii.Error:
        raise ValueError("Base64 decoding failed") from None


def split_text(text: str, chunks: int) -> list[str]:
    """``text`` in at most ``chunks`` consecutive pieces cut after whitespace; "".join() gives it back."""
    words = re.findall(r"\S*\s*", text)[:-1] or [text]  # each word with its trailing space
    count = max(1, min(chunks, len(words)))
    bounds = [len(words) * i // count for i in range(count + 1)]
    return ["".join(words[a:b]) for a, b in itertools.pairwise(bounds)]


def sse_event(data: Any) -> bytes:
    """One Server-Sent Event carrying ``data`` (JSON, or a bare string such as ``[DONE]``)."""
    # ASCII JSON, as a real server's answer would carry a lone surrogate of a scripted
    # reply: escaped (it cannot be UTF-8).
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"data: {payload}\n\n".encode()


def truncate(text: str, char_limit: int | None) -> str:
    """Cut ``text`` for a "max tokens" finish: to ``char_limit`` characters, or to half when None.

    Never to nothing (unless it was empty) and always visibly shorter than the
    full reply, which is what such an answer looks like.
    """
    cut = char_limit if char_limit is not None else len(text) // 2
    return text[: max(1, min(cut, len(text) - 1))]


class ApiHandler(Generic[RecT, FaultT, StateT]):
    """Base of each emulator's catch-all API handler; ``StateT`` is the emulator's
    ``EmulatorStateBase[RecT, FaultT]`` subclass."""

    # Set by each subclass: names the emulator in default replies and logs
    # ("gemini" -> "[gemini-emulator:model] You said: ...").
    label: ClassVar[str]
    log: ClassVar[logging.Logger]

    def __init__(self, state: StateT) -> None:
        self._state = state
        # Response ids only need to be unique per emulator; a counter keeps them
        # deterministic across runs.
        self._ids = itertools.count(1)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def respond(
        self, rec: RecT, answer: Callable[[], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Apply the latency, then ``answer()``; note on ``rec`` what was sent."""
        status: int | None = None
        try:
            latency = self._state.latency
            if latency > 0:
                # asyncio.sleep, not time.sleep: hundreds of concurrent requests
                # must all be delayed in parallel.
                await asyncio.sleep(latency)
            response = await answer()
            status = response.status
            return response
        except Dropped:
            return web.Response(status=500)  # never reaches the client: the socket is closed
        finally:
            # Also runs on CancelledError (client went away, handler_cancellation)
            # in which case status stays None: nothing was delivered.
            self._state.finish(rec, status)

    async def transport_fault(
        self, request: web.Request, fault: FaultBase, streamed: bool = False
    ) -> bool:
        """Apply the faults that mean the same on every API; True if ``fault`` was one.

        DROP_CONNECTION never returns (the socket is gone); SLOW sleeps, after
        which the request gets its normal answer. A stream fault is applied by
        :meth:`stream` to a streamed answer; an answer that is not streamed breaks
        as a whole instead: STREAM_BREAK drops the connection, STREAM_ERROR is
        left to the emulator (its API's 500).
        """
        if fault.kind == DROP_CONNECTION or (fault.kind == STREAM_BREAK and not streamed):
            drop_connection(request)
        if fault.kind == SLOW:
            await asyncio.sleep(fault.delay_seconds())
            return True
        return streamed and fault.kind in STREAM_FAULTS

    async def stream(
        self,
        request: web.Request,
        events: Sequence[Any],
        fault: FaultBase | None,
        error_event: Any,
        done: str | None = None,
    ) -> web.StreamResponse:
        """Send ``events`` as Server-Sent Events paced by the state's stream timing, then ``done``.

        A STREAM_BREAK/STREAM_ERROR ``fault`` cuts in after ``after_chunks`` events (default
        half of them): the connection is closed, or ``error_event`` ends the stream.
        """
        timing = self._state.stream_timing
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        kind = None
        if fault is not None and fault.kind in STREAM_FAULTS:
            kind = fault.kind
            cut = fault.after_chunks if fault.after_chunks is not None else len(events) // 2
            events = events[:cut]
        for index, event in enumerate(events):
            delay = timing.first_chunk_delay if index == 0 else timing.chunk_delay
            if delay > 0:
                await asyncio.sleep(delay)
            await response.write(sse_event(event))
        if kind == STREAM_BREAK:
            drop_connection(request)
        if kind == STREAM_ERROR:
            await response.write(sse_event(error_event))
        elif done is not None:
            await response.write(sse_event(done))
        await response.write_eof()
        return response

    def reply_text(self, rec: RecT, model: str) -> str:
        """Next scripted reply, else the reply function's, else the default echo."""
        try:
            scripted, fn = self._state.take_reply()
            if scripted is not None:
                return scripted
            if fn is not None:
                return fn(rec)
            return default_reply(self.label, model, rec.last_user_text, rec.last_user_media)
        except Exception as exc:  # a broken test reply fn should surface as a clear 500
            self.log.exception("%s emulator reply function failed", self.label)
            raise ReplyFunctionFailed(
                f"emulator reply function raised {type(exc).__name__}: {exc}"
            ) from exc


def default_reply(
    label: str, model: str, last_user_text: str, media: Sequence[MediaPart] = ()
) -> str:
    received = "".join(f" [received {m.mime_type}, {m.size} bytes]" for m in media)
    return f"[{label}-emulator:{model}] You said: {last_user_text}{received}"


def create_app(
    state: EmulatorStateBase[Any, Any],
    state_key: web.AppKey[Any],
    handler: ApiHandler[Any, Any, Any],
    emulator: str,
) -> web.Application:
    app = web.Application()
    app[state_key] = state
    # Control routes are registered first so the catch-all API route below
    # never shadows /_emulator/...
    add_control_routes(app, state, emulator)
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    return app
