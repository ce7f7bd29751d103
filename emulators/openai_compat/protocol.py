"""OpenAI chat-completions wire format: request parsing, response and error bodies.

Pure functions; shapes follow what the ``openai`` package parses
(``ChatCompletion``, ``Model``, and ``_make_status_error`` which maps the HTTP
status to the exception class and exposes ``body["error"]`` as ``.body``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .._common.server import decoded_size, split_text
from .._common.state import MediaPart
from .state import ChatMessage

_MODEL_PATH_RE = re.compile(r"^.*?/models/(?P<id>.+)$")
_DATA_URL_RE = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)$", re.S
)


def classify(path: str, method: str) -> tuple[str, str | None]:
    """(action, model id from the path). Suffix matching so any base_url prefix works (/v1, /api/v1, ...)."""
    trimmed = path.rstrip("/")
    if trimmed.endswith("/chat/completions"):
        return ("chatCompletions" if method == "POST" else "unknown"), None
    if trimmed.endswith("/models") or trimmed == "/models":
        return ("listModels" if method == "GET" else "unknown"), None
    m = _MODEL_PATH_RE.match(trimmed)
    if m and method == "GET":
        # Model ids of compat providers may contain "/" (e.g. "meta-llama/Llama-3-8b").
        return "getModel", m.group("id")
    return "unknown", None


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and "text" in p
        )
    return ""


@dataclass(frozen=True, slots=True)
class ParsedChatRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    temperature: float | None
    max_tokens: int | None
    max_completion_tokens: int | None
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with the usage


class InvalidRequest(ValueError):
    def __init__(self, message: str, param: str | None, code: str | None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def _media_part(part: dict[str, Any]) -> MediaPart | None:
    """An ``image_url`` part with a base64 data: URL, or an ``input_audio`` part; else None."""
    kind = part.get("type")
    if kind not in ("image_url", "input_audio"):
        return None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        match = _DATA_URL_RE.match(url) if isinstance(url, str) else None
        if match is None:
            raise InvalidRequest(
                "The emulator accepts only base64 data: URLs in image_url (it never fetches a URL).",
                "messages",
                "invalid_image_url",
            )
        mime_type, data = match["mime"], match["data"]
    else:
        audio = part.get("input_audio")
        audio = audio if isinstance(audio, dict) else {}
        mime_type, data = f"audio/{audio.get('format') or 'wav'}", audio.get("data")
    try:
        return MediaPart(mime_type, decoded_size(data))
    except ValueError:
        raise InvalidRequest(
            f"Invalid base64 data in an {kind} part.", "messages", "invalid_value"
        ) from None


def _message(message: dict[str, Any]) -> ChatMessage:
    content = message.get("content")
    parts = [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []
    media = tuple(m for m in map(_media_part, parts) if m is not None)
    return ChatMessage(str(message.get("role", "")), _content_text(content), media)


def parse_chat_request(body: Any) -> ParsedChatRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("We could not parse the JSON body of your request.", None, None)
    for required in ("model", "messages"):
        if required not in body:
            raise InvalidRequest(
                f"Missing required parameter: '{required}'.", required, "missing_required_parameter"
            )
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "'messages' must contain at least one message.", "messages", "invalid_value"
        )
    parsed = tuple(_message(m) for m in messages if isinstance(m, dict))
    options = body.get("stream_options")
    return ParsedChatRequest(
        model=str(body["model"]),
        messages=parsed,
        temperature=body.get("temperature"),
        max_tokens=body.get("max_tokens"),
        max_completion_tokens=body.get("max_completion_tokens"),
        stream=bool(body.get("stream", False)),
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
    )


def estimate_tokens(text: str) -> int:
    # ~4 characters per token (OpenAI's rule of thumb) plus nothing fancy:
    # deterministic, plausible numbers for usage/billing code paths.
    return math.ceil(len(text) / 4) if text else 0


# Roughly what OpenAI counts for a low-detail image; used for any media part.
MEDIA_PART_TOKENS = 85


def prompt_tokens(messages: tuple[ChatMessage, ...]) -> int:
    # OpenAI adds a few tokens of framing per message; mimic that roughly.
    return (
        sum(estimate_tokens(m.content) + MEDIA_PART_TOKENS * len(m.media) + 4 for m in messages) + 3
    )


def chat_completion(
    *,
    completion_id: str,
    created: int,
    model: str,
    content: str | None,
    finish_reason: str,
    prompt_token_count: int,
) -> dict[str, Any]:
    completion_tokens = estimate_tokens(content or "")
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_emulator",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_token_count,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_token_count + completion_tokens,
        },
    }


def stream_chunks(completion: dict[str, Any], chunks: int, include_usage: bool) -> list[Any]:
    """A chat completion as ``stream: true`` sends it (before ``[DONE]``): the content in up
    to ``chunks`` deltas (the first also names the role), a chunk with the finish_reason,
    and with ``include_usage`` a last chunk without choices carrying the usage."""
    head = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")}
    head["object"] = "chat.completion.chunk"
    choice = completion["choices"][0]
    content = choice["message"]["content"]

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        return {**head, "choices": choices}

    pieces = split_text(content, chunks) if content else []
    deltas: list[dict[str, Any]] = [{"content": p} for p in pieces] or [{}]
    deltas[0] = {"role": "assistant", **deltas[0]}
    events = [chunk(d) for d in deltas] + [chunk({}, choice["finish_reason"])]
    if include_usage:
        events.append({**head, "choices": [], "usage": completion["usage"]})
    return events


def model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "emulator"}


def models_list(model_ids: list[str]) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in model_ids]}


# ---- errors: {"error": {message, type, param, code}} ----


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def invalid_api_key() -> dict[str, Any]:
    # The real message echoes a masked key; we leave the key out entirely so
    # exception messages printed by tests can never contain any part of it.
    return error_body(
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    )


def missing_api_key() -> dict[str, Any]:
    return error_body(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using "
        "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        "invalid_request_error",
    )


def model_not_found(model: str) -> dict[str, Any]:
    return error_body(
        f"The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    )


def rate_limited(model: str, retry_after: float, message: str | None = None) -> dict[str, Any]:
    return error_body(
        message
        or f"Rate limit reached for {model} in organization org-emulator on requests per min (RPM): "
        f"Limit 3, Used 3, Requested 1. Please try again in {retry_after:g}s.",
        "requests",
        "rate_limit_exceeded",
    )


def quota_exceeded(message: str | None = None) -> dict[str, Any]:
    return error_body(
        message
        or "You exceeded your current quota, please check your plan and billing details. For more information "
        "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        "insufficient_quota",
    )


# 200 answers that are not a chat completion (the HTML_BODY / INVALID_JSON faults).
HTML_PAGE = "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Sign in to continue.</body></html>"
TRUNCATED_JSON = '{"choices": [{"message": {"role": "assistant", "content": "Hel'

# Usage a server reports when it cannot count (the NEGATIVE_USAGE fault).
NEGATIVE_USAGE = {"prompt_tokens": -1, "completion_tokens": -1, "total_tokens": -1}


# fault kind -> (HTTP status, error type, code, default message)
SIMPLE_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "bad_request": (400, "invalid_request_error", None, "Invalid request."),
    "internal": (
        500,
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "unavailable": (
        503,
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
}
# A stream that fails reports a server_error (as an event, or as the answer when not streamed).
SIMPLE_ERRORS["stream_error"] = SIMPLE_ERRORS["internal"]
