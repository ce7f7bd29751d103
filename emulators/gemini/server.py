"""aiohttp application: the Gemini REST surface plus the ``/_emulator`` control API.

Every API request is recorded *before* latency/faults are applied, so the
recorded times are arrival times (what a rate limiter on Google's side counts)
and even requests that end in an error or a dropped socket are visible to tests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
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

log = logging.getLogger("emulators.gemini")

STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("gemini_emulator_state", EmulatorState)


class _Dropped(Exception):
    """Internal signal: the connection was closed on purpose, no response exists."""


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _error(body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return _json(body, status=int(body["error"]["code"]), headers=headers)


def _drop(request: web.Request) -> None:
    # force_close() closes the socket right away; aiohttp then silently fails
    # to write the placeholder response, so the client sees a connection that
    # was closed without any HTTP answer (httpx.RemoteProtocolError,
    # aiohttp.ServerDisconnectedError).
    request.protocol.force_close()
    raise _Dropped


def _classify(parsed: protocol.ParsedPath | None, method: str) -> str:
    if parsed is None or parsed.collection != "models":
        return "unknown"
    if parsed.name is None:
        return "listModels" if method == "GET" else "unknown"
    if parsed.method is None:
        return "getModel" if method == "GET" else "unknown"
    if method == "POST" and parsed.method in ("generateContent", "countTokens"):
        return parsed.method
    return "unknown"


class GeminiHandler:
    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        # Response ids only need to be unique per emulator; a counter keeps them
        # deterministic across runs.
        self._ids = itertools.count(1)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        parsed = protocol.parse_path(request.path)
        action = _classify(parsed, request.method)
        raw = await request.read()
        body: Any = None
        body_error: str | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_error = "Invalid JSON payload received. Unexpected token."

        generate: protocol.ParsedGenerateRequest | None = None
        if action in ("generateContent", "countTokens") and body_error is None:
            try:
                generate = protocol.parse_generate_request(body)
            except ValueError as exc:
                body_error = str(exc)

        # Google accepts the key as a header (what google-genai sends) or as ?key=.
        api_key = request.headers.get("x-goog-api-key") or request.query.get("key")
        rec = self._state.record(
            method=request.method,
            path=request.path,
            action=action,
            api_version=parsed.version if parsed else None,
            model=parsed.name.removeprefix("models/") if parsed and parsed.name else None,
            api_key=api_key,
            system_instruction=generate.system_instruction if generate else None,
            contents=generate.contents if generate else (),
            generation_config=generate.generation_config if generate else {},
            safety_settings=generate.safety_settings if generate else [],
            body=body,
        )

        status: int | None = None
        try:
            latency = self._state.latency
            if latency > 0:
                # asyncio.sleep, not time.sleep: hundreds of concurrent requests
                # must all be delayed in parallel.
                await asyncio.sleep(latency)
            response = await self._answer(request, rec, action, parsed, generate, body_error)
            status = response.status
            return response
        except _Dropped:
            return web.Response(status=500)  # never reaches the client: the socket is closed
        finally:
            # Also runs on CancelledError (client went away, handler_cancellation)
            # in which case status stays None: nothing was delivered.
            self._state.finish(rec, status)

    async def _answer(
        self,
        request: web.Request,
        rec: RecordedRequest,
        action: str,
        parsed: protocol.ParsedPath | None,
        generate: protocol.ParsedGenerateRequest | None,
        body_error: str | None,
    ) -> web.Response:
        if action == "unknown" or parsed is None:
            return _error(
                protocol.error_body(
                    404, "NOT_FOUND", f"Method not found: {request.method} {request.path}"
                )
            )

        # Real Google order: authentication first, then the request itself.
        if not rec.api_key:
            return _error(protocol.api_key_missing())
        if not self._state.key_allowed(rec.api_key):
            return _error(protocol.api_key_invalid())

        if action == "listModels":
            models = self._state.known_models() or []
            return _json({"models": [protocol.model_info(m) for m in models]})

        model = rec.model or ""
        if not self._state.model_known(model):
            return _error(
                protocol.model_not_found(
                    model, parsed.version, action if action != "getModel" else "get"
                )
            )
        if action == "getModel":
            return _json(protocol.model_info(model))

        if body_error is not None:
            return _error(protocol.error_body(400, "INVALID_ARGUMENT", body_error))

        assert generate is not None  # generateContent/countTokens with a parsed body
        if action == "countTokens":
            return _json(protocol.count_tokens_response(protocol.prompt_token_count(generate)))

        return await self._generate(request, rec, model, generate)

    async def _generate(
        self,
        request: web.Request,
        rec: RecordedRequest,
        model: str,
        generate: protocol.ParsedGenerateRequest,
    ) -> web.Response:
        response_id = f"gemini-emu-{next(self._ids):06d}"
        prompt_tokens = protocol.prompt_token_count(generate)
        fault = self._state.take_fault(rec)
        kind = fault.kind if fault else None

        if fault is not None:
            if kind is FaultKind.DROP_CONNECTION:
                _drop(request)
            if kind is FaultKind.SLOW:
                await asyncio.sleep(
                    fault.delay if fault.delay is not None else DEFAULT_SLOW_DELAY_SECONDS
                )
            elif kind is FaultKind.RATE_LIMIT:
                retry_after = (
                    fault.retry_after
                    if fault.retry_after is not None
                    else DEFAULT_RETRY_AFTER_SECONDS
                )
                headers = {"Retry-After": str(math.ceil(retry_after))}
                return _error(protocol.rate_limited(model, retry_after, fault.message), headers)
            elif kind is not None and kind.value in protocol.SIMPLE_ERRORS:
                code, status, message = protocol.SIMPLE_ERRORS[kind.value]
                return _error(protocol.error_body(code, status, fault.message or message))
            elif kind is FaultKind.PROMPT_BLOCKED:
                body = protocol.prompt_blocked_response(
                    model=model, response_id=response_id, prompt_tokens=prompt_tokens
                )
                return _json(body)
            elif kind is FaultKind.SAFETY_FINISH:
                body = protocol.generate_response(
                    model=model,
                    response_id=response_id,
                    prompt_tokens=prompt_tokens,
                    text=None,
                    finish_reason="SAFETY",
                    include_content=False,
                    blocked_category="HARM_CATEGORY_HARASSMENT",
                )
                return _json(body)
            elif kind is FaultKind.EMPTY_TEXT:
                body = protocol.generate_response(
                    model=model, response_id=response_id, prompt_tokens=prompt_tokens, text=""
                )
                return _json(body)
            elif kind is FaultKind.EMPTY_CONTENT:
                body = protocol.generate_response(
                    model=model, response_id=response_id, prompt_tokens=prompt_tokens, text=None
                )
                return _json(body)

        try:
            text = self._reply_text(rec, model)
        except Exception as exc:  # a broken test reply fn should surface as a clear 500
            log.exception("gemini emulator reply function failed")
            body = protocol.error_body(
                500, "INTERNAL", f"emulator reply function raised {type(exc).__name__}: {exc}"
            )
            return _error(body)

        finish_reason = "STOP"
        if kind is FaultKind.MAX_TOKENS:
            finish_reason = "MAX_TOKENS"
            text = _truncate(text, generate.generation_config.get("maxOutputTokens"))
        body = protocol.generate_response(
            model=model,
            response_id=response_id,
            prompt_tokens=prompt_tokens,
            text=text,
            finish_reason=finish_reason,
        )
        return _json(body)

    def _reply_text(self, rec: RecordedRequest, model: str) -> str:
        scripted, fn = self._state.take_reply()
        if scripted is not None:
            return scripted
        if fn is not None:
            return fn(rec)
        return default_reply(model, rec.last_user_text)


def default_reply(model: str, last_user_text: str) -> str:
    return f"[gemini-emulator:{model}] You said: {last_user_text}"


def _truncate(text: str, max_output_tokens: Any) -> str:
    # Cut to roughly maxOutputTokens tokens (4 chars each), or to half when unset,
    # so the text is visibly shorter than the full reply.
    if isinstance(max_output_tokens, int) and max_output_tokens > 0:
        limit = max_output_tokens * 4
    else:
        limit = len(text) // 2
    return text[: max(1, min(limit, max(1, len(text) - 1)))]


def create_app(state: EmulatorState) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state
    # Control routes are registered first so the catch-all API route below
    # never shadows /_emulator/...
    add_control_routes(app, state)
    app.router.add_route("*", "/{tail:.*}", GeminiHandler(state).handle)
    return app
