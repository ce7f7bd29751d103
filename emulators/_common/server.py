"""What the emulators' API handlers share: record, delay, answer, finish.

Every API request is recorded *before* latency and faults are applied, so the
recorded times are arrival times (what a provider-side rate limiter counts) and
even requests that end in an error or a dropped socket are visible to tests.
The protocol (parsing, routing, bodies, most fault kinds) stays in each
emulator's ``ApiHandler`` subclass.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic

from aiohttp import web

from .control import add_control_routes
from .faults import DROP_CONNECTION, SLOW, FaultBase
from .state import EmulatorStateBase, FaultT, RecT


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


def truncate(text: str, char_limit: int | None) -> str:
    """Cut ``text`` for a "max tokens" finish: to ``char_limit`` characters, or to half when None.

    Never to nothing (unless it was empty) and always visibly shorter than the
    full reply, which is what such an answer looks like.
    """
    cut = char_limit if char_limit is not None else len(text) // 2
    return text[: max(1, min(cut, len(text) - 1))]


class ApiHandler(Generic[RecT, FaultT]):
    """Base of each emulator's catch-all API handler."""

    # Set by each subclass: names the emulator in default replies and logs
    # ("gemini" -> "[gemini-emulator:model] You said: ...").
    label: ClassVar[str]
    log: ClassVar[logging.Logger]

    def __init__(self, state: EmulatorStateBase[RecT, FaultT]) -> None:
        self._state = state
        # Response ids only need to be unique per emulator; a counter keeps them
        # deterministic across runs.
        self._ids = itertools.count(1)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def respond(
        self, rec: RecT, answer: Callable[[], Awaitable[web.Response]]
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

    async def transport_fault(self, request: web.Request, fault: FaultBase) -> bool:
        """Apply the faults that mean the same on every API; True if ``fault`` was one.

        DROP_CONNECTION never returns (the socket is gone); SLOW sleeps, after
        which the request gets its normal answer.
        """
        if fault.kind == DROP_CONNECTION:
            drop_connection(request)
        if fault.kind == SLOW:
            await asyncio.sleep(fault.delay_seconds())
            return True
        return False

    def reply_text(self, rec: RecT, model: str) -> str:
        """Next scripted reply, else the reply function's, else the default echo."""
        try:
            scripted, fn = self._state.take_reply()
            if scripted is not None:
                return scripted
            if fn is not None:
                return fn(rec)
            return default_reply(self.label, model, rec.last_user_text)
        except Exception as exc:  # a broken test reply fn should surface as a clear 500
            self.log.exception("%s emulator reply function failed", self.label)
            raise ReplyFunctionFailed(
                f"emulator reply function raised {type(exc).__name__}: {exc}"
            ) from exc


def default_reply(label: str, model: str, last_user_text: str) -> str:
    return f"[{label}-emulator:{model}] You said: {last_user_text}"


def create_app(
    state: EmulatorStateBase[Any, Any],
    state_key: web.AppKey[Any],
    handler: ApiHandler[Any, Any],
    emulator: str,
) -> web.Application:
    app = web.Application()
    app[state_key] = state
    # Control routes are registered first so the catch-all API route below
    # never shadows /_emulator/...
    add_control_routes(app, state, emulator)
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    return app
