"""aiohttp application: OpenAI-compatible ``/v1/chat/completions`` + ``/v1/models`` and the control API.

Requests are recorded on arrival (before latency/faults), so recorded times are
what a provider-side rate limiter would count and failed requests stay visible.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import time
from typing import Any

from aiohttp import web

from . import protocol
from .control import add_control_routes
from .state import (
    DEFAULT_RETRY_AFTER_SECONDS,
    DEFAULT_SLOW_DELAY_SECONDS,
    EmulatorState,
    FaultKind,
    RecordedRequest,
)

log = logging.getLogger("emulators.openai_compat")

STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("openai_emulator_state", EmulatorState)

# "Authorization: Bearer <key>"; the scheme name is case-insensitive.
_BEARER = "bearer "


class _Dropped(Exception):
    """Internal signal: the socket was closed on purpose; no response exists."""


def _error(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _api_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[: len(_BEARER)].lower() == _BEARER:
        return header[len(_BEARER) :].strip() or None
    return None


def _int_header(request: web.Request, name: str) -> int | None:
    try:
        return int(request.headers[name])
    except (KeyError, ValueError):
        return None


class OpenAIHandler:
    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._ids = itertools.count(1)  # deterministic, unique per emulator

    async def handle(self, request: web.Request) -> web.StreamResponse:
        action, path_model = protocol.classify(request.path, request.method)
        raw = await request.read()
        body: Any = None
        invalid: protocol.InvalidRequest | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                invalid = protocol.InvalidRequest(
                    "We could not parse the JSON body of your request.", None, None
                )

        chat: protocol.ParsedChatRequest | None = None
        if action == "chatCompletions" and invalid is None:
            try:
                chat = protocol.parse_chat_request(body)
            except protocol.InvalidRequest as exc:
                invalid = exc

        rec = self._state.record(
            method=request.method,
            path=request.path,
            action=action,
            model=chat.model
            if chat
            else (body.get("model") if isinstance(body, dict) else path_model),
            api_key=_api_key(request),
            messages=chat.messages if chat else (),
            temperature=chat.temperature if chat else None,
            max_tokens=chat.max_tokens if chat else None,
            max_completion_tokens=chat.max_completion_tokens if chat else None,
            stream=chat.stream if chat else False,
            retry_count=_int_header(request, "x-stainless-retry-count"),
            body=body,
        )

        status: int | None = None
        try:
            latency = self._state.latency
            if latency > 0:
                # Non-blocking: concurrent requests are all delayed in parallel.
                await asyncio.sleep(latency)
            response = await self._answer(request, rec, action, chat, invalid)
            status = response.status
            return response
        except _Dropped:
            return web.Response(status=500)  # never delivered: the socket is already closed
        finally:
            # Also reached on CancelledError (client gave up); status stays None then.
            self._state.finish(rec, status)

    async def _answer(
        self,
        request: web.Request,
        rec: RecordedRequest,
        action: str,
        chat: protocol.ParsedChatRequest | None,
        invalid: protocol.InvalidRequest | None,
    ) -> web.Response:
        if action == "unknown":
            body = protocol.error_body(
                f"Invalid URL ({request.method} {request.path})", "invalid_request_error"
            )
            return _error(404, body)

        # OpenAI authenticates before looking at the request.
        if not rec.api_key:
            return _error(401, protocol.missing_api_key())
        if not self._state.key_allowed(rec.api_key):
            return _error(401, protocol.invalid_api_key())

        if action == "listModels":
            return web.json_response(protocol.models_list(self._state.listed_models()))
        if action == "getModel":
            model = rec.model or ""
            if not self._state.model_known(model):
                return _error(404, protocol.model_not_found(model))
            return web.json_response(protocol.model_object(model))

        if invalid is not None:
            return _error(
                400,
                protocol.error_body(
                    str(invalid), "invalid_request_error", invalid.code, invalid.param
                ),
            )
        assert chat is not None
        if chat.stream:
            body = protocol.error_body(
                "stream=true is not supported by the emulator.",
                "invalid_request_error",
                "unsupported_value",
                "stream",
            )
            return _error(400, body)
        if not self._state.model_known(chat.model):
            return _error(404, protocol.model_not_found(chat.model))
        return await self._complete(request, rec, chat)

    async def _complete(
        self, request: web.Request, rec: RecordedRequest, chat: protocol.ParsedChatRequest
    ) -> web.Response:
        fault = self._state.take_fault(rec)
        kind = fault.kind if fault else None

        if fault is not None:
            if kind is FaultKind.DROP_CONNECTION:
                # Closes the socket now; aiohttp then fails quietly to write the
                # placeholder, so the client sees "server disconnected".
                request.protocol.force_close()
                raise _Dropped
            if kind is FaultKind.SLOW:
                await asyncio.sleep(
                    fault.delay if fault.delay is not None else DEFAULT_SLOW_DELAY_SECONDS
                )
            elif kind is FaultKind.AUTH_ERROR:
                return _error(401, protocol.invalid_api_key())
            elif kind is FaultKind.RATE_LIMIT:
                retry_after = (
                    fault.retry_after
                    if fault.retry_after is not None
                    else DEFAULT_RETRY_AFTER_SECONDS
                )
                headers = {
                    # Retry-After is whole seconds by spec; retry-after-ms carries the exact
                    # value, and the openai package prefers it, so sub-second test delays work.
                    "Retry-After": str(math.ceil(retry_after)),
                    "retry-after-ms": str(round(retry_after * 1000)),
                    "x-ratelimit-limit-requests": "3",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{retry_after:g}s",
                }
                return _error(
                    429, protocol.rate_limited(chat.model, retry_after, fault.message), headers
                )
            elif kind is FaultKind.QUOTA_EXCEEDED:
                return _error(429, protocol.quota_exceeded(fault.message))
            elif kind is not None and kind.value in protocol.SIMPLE_ERRORS:
                code, type_, err_code, message = protocol.SIMPLE_ERRORS[kind.value]
                return _error(code, protocol.error_body(fault.message or message, type_, err_code))
            elif kind is FaultKind.CONTENT_FILTER:
                return self._completion(chat, content=None, finish_reason="content_filter")
            elif kind is FaultKind.EMPTY:
                return self._completion(chat, content="", finish_reason="stop")

        try:
            text = self._reply_text(rec, chat.model)
        except Exception as exc:  # a broken test reply fn should surface as a clear 500
            log.exception("openai emulator reply function failed")
            body = protocol.error_body(
                f"emulator reply function raised {type(exc).__name__}: {exc}", "server_error"
            )
            return _error(500, body)

        if kind is FaultKind.LENGTH:
            limit = chat.max_completion_tokens or chat.max_tokens
            cut = limit * 4 if limit else len(text) // 2
            return self._completion(
                chat, content=text[: max(1, min(cut, len(text) - 1))], finish_reason="length"
            )
        return self._completion(chat, content=text, finish_reason="stop")

    def _completion(
        self, chat: protocol.ParsedChatRequest, *, content: str | None, finish_reason: str
    ) -> web.Response:
        body = protocol.chat_completion(
            completion_id=f"chatcmpl-emu-{next(self._ids):06d}",
            created=int(time.time()),
            model=chat.model,
            content=content,
            finish_reason=finish_reason,
            prompt_token_count=protocol.prompt_tokens(chat.messages),
        )
        return web.json_response(body)

    def _reply_text(self, rec: RecordedRequest, model: str) -> str:
        scripted, fn = self._state.take_reply()
        if scripted is not None:
            return scripted
        if fn is not None:
            return fn(rec)
        return default_reply(model, rec.last_user_text)


def default_reply(model: str, last_user_text: str) -> str:
    return f"[openai-emulator:{model}] You said: {last_user_text}"


def create_app(state: EmulatorState) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state
    add_control_routes(app, state)  # before the catch-all so /_emulator/... is never shadowed
    app.router.add_route("*", "/{tail:.*}", OpenAIHandler(state).handle)
    return app
