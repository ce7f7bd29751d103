"""aiohttp application: OpenAI-compatible ``/v1/chat/completions`` + ``/v1/models`` and the control API.

Recording, latency, the SLOW/DROP_CONNECTION faults, scripted replies and the
control API are shared (``emulators._common``); this module is this API's
routing, key handling, answers and the fault kinds only it has.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from typing import Any

from aiohttp import web

from .._common import server as common
from . import protocol
from .state import EmulatorState, Fault, FaultKind, RecordedRequest

STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("openai_emulator_state", EmulatorState)

# "Authorization: Bearer <key>"; the scheme name is case-insensitive.
_BEARER = "bearer "


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


class OpenAIHandler(common.ApiHandler[RecordedRequest, Fault, EmulatorState]):
    label = "openai"
    log = logging.getLogger("emulators.openai_compat")

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
        return await self.respond(
            rec, functools.partial(self._answer, request, rec, action, chat, invalid)
        )

    async def _answer(
        self,
        request: web.Request,
        rec: RecordedRequest,
        action: str,
        chat: protocol.ParsedChatRequest | None,
        invalid: protocol.InvalidRequest | None,
    ) -> web.StreamResponse:
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
        if not self._state.model_known(chat.model):
            return _error(404, protocol.model_not_found(chat.model))
        fault = self._state.take_fault(rec)
        completion = await self._complete(request, rec, chat, fault)
        if isinstance(completion, web.Response):
            return completion
        if not chat.stream:
            return web.json_response(completion)
        _status, type_, code, message = protocol.SIMPLE_ERRORS["stream_error"]
        error_event = protocol.error_body((fault and fault.message) or message, type_, code)
        timing = self._state.stream_timing
        events = protocol.stream_chunks(completion, timing.chunks, chat.include_usage)
        return await self.stream(request, events, fault, error_event, done="[DONE]")

    async def _complete(
        self,
        request: web.Request,
        rec: RecordedRequest,
        chat: protocol.ParsedChatRequest,
        fault: Fault | None,
    ) -> dict[str, Any] | web.Response:
        """The chat completion body, or an answer that is not one (an error, a broken page)."""
        kind = fault.kind if fault else None

        if fault is not None and not await self.transport_fault(request, fault, chat.stream):
            if kind is FaultKind.AUTH_ERROR:
                return _error(401, protocol.invalid_api_key())
            elif kind is FaultKind.RATE_LIMIT:
                retry_after = fault.retry_after_seconds()
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
            elif kind is FaultKind.HTML_BODY:
                return web.Response(text=protocol.HTML_PAGE, content_type="text/html")
            elif kind is FaultKind.INVALID_JSON:
                return web.Response(text=protocol.TRUNCATED_JSON, content_type="application/json")

        try:
            text = self.reply_text(rec, chat.model)
        except common.ReplyFunctionFailed as exc:
            return _error(500, protocol.error_body(str(exc), "server_error"))

        if kind is FaultKind.LENGTH:
            # Roughly the token limit at 4 chars a token; None (cut to half) when unset.
            limit = chat.max_completion_tokens or chat.max_tokens
            content = common.truncate(text, limit * 4 if limit else None)
            return self._completion(chat, content=content, finish_reason="length")
        return self._completion(
            chat, content=text, finish_reason="stop", negative_usage=kind is FaultKind.NEGATIVE_USAGE
        )

    def _completion(
        self,
        chat: protocol.ParsedChatRequest,
        *,
        content: str | None,
        finish_reason: str,
        negative_usage: bool = False,
    ) -> dict[str, Any]:
        body = protocol.chat_completion(
            completion_id=f"chatcmpl-emu-{next(self._ids):06d}",
            created=int(time.time()),
            model=chat.model,
            content=content,
            finish_reason=finish_reason,
            prompt_token_count=protocol.prompt_tokens(chat.messages),
        )
        if negative_usage:
            body["usage"] = dict(protocol.NEGATIVE_USAGE)
        return body


def create_app(state: EmulatorState) -> web.Application:
    return common.create_app(state, STATE_KEY, OpenAIHandler(state), "openai_compat")
