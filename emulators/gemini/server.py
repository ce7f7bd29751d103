"""aiohttp application: the Gemini REST surface plus the ``/_emulator`` control API.

Recording, latency, the SLOW/DROP_CONNECTION faults, scripted replies and the
control API are shared (``emulators._common``); this module is Gemini's
routing, key handling, answers and the fault kinds only this API has.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from typing import Any

from aiohttp import web

from .._common import server as common
from . import protocol
from .state import EmulatorState, Fault, FaultKind, RecordedRequest

STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("gemini_emulator_state", EmulatorState)


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _error(body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return _json(body, status=int(body["error"]["code"]), headers=headers)


GENERATE_ACTIONS = ("generateContent", "streamGenerateContent")


def _classify(parsed: protocol.ParsedPath | None, method: str) -> str:
    if parsed is None or parsed.collection != "models":
        return "unknown"
    if parsed.name is None:
        return "listModels" if method == "GET" else "unknown"
    if parsed.method is None:
        return "getModel" if method == "GET" else "unknown"
    if method == "POST" and parsed.method in GENERATE_ACTIONS + ("countTokens",):
        return parsed.method
    return "unknown"



class GeminiHandler(common.ApiHandler[RecordedRequest, Fault, EmulatorState]):
    label = "gemini"
    log = logging.getLogger("emulators.gemini")

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
        if action in GENERATE_ACTIONS + ("countTokens",) and body_error is None:
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
        return await self.respond(
            rec, functools.partial(self._answer, request, rec, action, parsed, generate, body_error)
        )

    async def _answer(
        self,
        request: web.Request,
        rec: RecordedRequest,
        action: str,
        parsed: protocol.ParsedPath | None,
        generate: protocol.ParsedGenerateRequest | None,
        body_error: str | None,
    ) -> web.StreamResponse:
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
        if action == "streamGenerateContent" and request.query.get("alt") != "sse":
            message = "The emulator streams only as Server-Sent Events (?alt=sse)."
            return _error(protocol.error_body(400, "INVALID_ARGUMENT", message))

        fault = self._state.take_fault(rec)
        body = await self._generate(request, rec, model, generate, fault)
        if isinstance(body, web.Response):
            return body
        if action == "generateContent":
            return _json(body)
        code, status, message = protocol.SIMPLE_ERRORS["stream_error"]
        error_event = protocol.error_body(code, status, (fault and fault.message) or message)
        chunks = protocol.stream_chunks(body, self._state.stream_timing.chunks)
        return await self.stream(request, chunks, fault, error_event)

    async def _generate(
        self,
        request: web.Request,
        rec: RecordedRequest,
        model: str,
        generate: protocol.ParsedGenerateRequest,
        fault: Fault | None,
    ) -> dict[str, Any] | web.Response:
        """The GenerateContentResponse body, or an answer that is not one (an error, a broken page)."""
        response_id = f"gemini-emu-{next(self._ids):06d}"
        prompt_tokens = protocol.prompt_token_count(generate)
        kind = fault.kind if fault else None
        streamed = rec.action == "streamGenerateContent"

        if fault is not None and not await self.transport_fault(request, fault, streamed):
            if kind is FaultKind.RATE_LIMIT:
                retry_after = fault.retry_after_seconds()
                headers = {"Retry-After": str(math.ceil(retry_after))}
                return _error(protocol.rate_limited(model, retry_after, fault.message), headers)
            elif kind is not None and kind.value in protocol.SIMPLE_ERRORS:
                code, status, message = protocol.SIMPLE_ERRORS[kind.value]
                return _error(protocol.error_body(code, status, fault.message or message))
            elif kind is FaultKind.PROMPT_BLOCKED:
                return protocol.prompt_blocked_response(
                    model=model, response_id=response_id, prompt_tokens=prompt_tokens
                )
            elif kind is FaultKind.SAFETY_FINISH:
                return protocol.generate_response(
                    model=model,
                    response_id=response_id,
                    prompt_tokens=prompt_tokens,
                    text=None,
                    finish_reason="SAFETY",
                    include_content=False,
                    blocked_category="HARM_CATEGORY_HARASSMENT",
                )
            elif kind is FaultKind.EMPTY_TEXT:
                return protocol.generate_response(
                    model=model, response_id=response_id, prompt_tokens=prompt_tokens, text=""
                )
            elif kind is FaultKind.HTML_BODY:
                return web.Response(text=protocol.HTML_PAGE, content_type="text/html")
            elif kind is FaultKind.INVALID_JSON:
                return web.Response(text=protocol.TRUNCATED_JSON, content_type="application/json")
            elif kind is FaultKind.EMPTY_CONTENT:
                return protocol.generate_response(
                    model=model, response_id=response_id, prompt_tokens=prompt_tokens, text=None
                )

        try:
            text = self.reply_text(rec, model)
        except common.ReplyFunctionFailed as exc:
            return _error(protocol.error_body(500, "INTERNAL", str(exc)))

        finish_reason = "STOP"
        if kind is FaultKind.MAX_TOKENS:
            finish_reason = "MAX_TOKENS"
            text = common.truncate(text, _char_limit(generate.generation_config))
        body = protocol.generate_response(
            model=model,
            response_id=response_id,
            prompt_tokens=prompt_tokens,
            text=text,
            finish_reason=finish_reason,
        )
        if kind is FaultKind.NEGATIVE_USAGE:
            body["usageMetadata"] = dict(protocol.NEGATIVE_USAGE)
        return body


def _char_limit(generation_config: dict[str, Any]) -> int | None:
    # Roughly maxOutputTokens tokens (4 chars each); None (cut to half) when unset.
    max_output_tokens = generation_config.get("maxOutputTokens")
    if isinstance(max_output_tokens, int) and max_output_tokens > 0:
        return max_output_tokens * 4
    return None


def create_app(state: EmulatorState) -> web.Application:
    return common.create_app(state, STATE_KEY, GeminiHandler(state), "gemini")
