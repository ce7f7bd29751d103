"""Gemini REST wire format: request parsing and response/error bodies.

Pure functions with no I/O so the shapes can be read (and checked against
Google's documentation) in one place. Field names are the camelCase JSON names
the google-genai client sends and parses (``systemInstruction``,
``generationConfig``, ``usageMetadata``...); snake_case variants are accepted
on input too because hand-written REST callers sometimes use them and the real
API tolerates both.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .._common.server import decoded_size, split_text
from .._common.state import MediaPart
from .state import Turn

API_KEY_INVALID_MESSAGE = "API key not valid. Please pass a valid API key."

# Matches ".../{version}/models[/{name}[:{method}]]", with an optional path
# prefix (a proxy-style base_url such as http://host/gemini) and an optional
# version (the client omits it when api_version is empty).
_PATH_RE = re.compile(
    r"^(?:/.*?)??/(?:(?P<version>v\d+(?:alpha|beta)?\d*)/)?"
    r"(?P<collection>models|tunedModels)"
    r"(?:/(?P<name>[^/:]+)(?::(?P<method>[A-Za-z]+))?)?/?$"
)


@dataclass(frozen=True, slots=True)
class ParsedPath:
    version: str | None
    collection: str
    name: str | None
    method: str | None


def parse_path(path: str) -> ParsedPath | None:
    m = _PATH_RE.match(path)
    if m is None:
        return None
    return ParsedPath(
        version=m.group("version"),
        collection=m.group("collection"),
        name=m.group("name"),
        method=m.group("method"),
    )


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    return obj.get(camel, obj.get(snake))


def _parts(content: Any) -> list[dict[str, Any]]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts or [] if isinstance(p, dict)]


def _parts_text(content: Any) -> str:
    return "".join(p["text"] for p in _parts(content) if isinstance(p.get("text"), str))


def _turn(index: int, content: dict[str, Any]) -> Turn:
    media = []
    for number, part in enumerate(_parts(content)):
        blob = _get(part, "inlineData", "inline_data")
        if blob is None:
            continue
        where = f"contents[{index}].parts[{number}].inline_data"
        mime_type = _get(blob, "mimeType", "mime_type") if isinstance(blob, dict) else None
        if not mime_type:
            raise ValueError(f"* GenerateContentRequest.{where}.mime_type: mime_type is required\n")
        try:
            size = decoded_size(blob.get("data"))
        except ValueError:
            raise ValueError(
                f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed"
            ) from None
        media.append(MediaPart(str(mime_type), size))
    return Turn(str(content.get("role") or "user"), _parts_text(content), tuple(media))


@dataclass(frozen=True, slots=True)
class ParsedGenerateRequest:
    system_instruction: str | None
    contents: tuple[Turn, ...]
    generation_config: dict[str, Any]
    safety_settings: list[dict[str, Any]]


def parse_generate_request(body: Any) -> ParsedGenerateRequest:
    """Extract what tests assert on; raise ValueError with Google's wording for bad bodies."""
    if not isinstance(body, dict):
        raise ValueError("Invalid JSON payload received. Expected an object.")
    raw_contents = body.get("contents")
    if not raw_contents:
        raise ValueError("* GenerateContentRequest.contents: contents is not specified\n")
    if not isinstance(raw_contents, list):
        raise ValueError("Invalid JSON payload received. 'contents' must be a list.")
    contents = tuple(_turn(i, c) for i, c in enumerate(raw_contents) if isinstance(c, dict))
    system = _get(body, "systemInstruction", "system_instruction")
    system_text = _parts_text(system) if system is not None else None
    config = _get(body, "generationConfig", "generation_config") or {}
    safety = _get(body, "safetySettings", "safety_settings") or []
    return ParsedGenerateRequest(
        system_instruction=system_text,
        contents=contents,
        generation_config=dict(config) if isinstance(config, dict) else {},
        safety_settings=list(safety) if isinstance(safety, list) else [],
    )


def estimate_tokens(text: str) -> int:
    # Google documents ~4 characters per token for Gemini; good enough for
    # billing/limit code paths that only need plausible, deterministic numbers.
    return math.ceil(len(text) / 4) if text else 0


# What Gemini counts for an image (and, roughly, for any other inline file).
MEDIA_PART_TOKENS = 258


def prompt_token_count(parsed: ParsedGenerateRequest) -> int:
    total = estimate_tokens(parsed.system_instruction or "")
    return total + sum(
        estimate_tokens(t.text) + MEDIA_PART_TOKENS * len(t.media) for t in parsed.contents
    )


def usage_metadata(prompt_tokens: int, candidate_tokens: int | None) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "totalTokenCount": prompt_tokens + (candidate_tokens or 0),
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }
    # Real blocked-prompt answers omit candidatesTokenCount entirely.
    if candidate_tokens is not None:
        usage["candidatesTokenCount"] = candidate_tokens
    return usage


_HARM_CATEGORIES = (
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)


def safety_ratings(blocked_category: str | None = None) -> list[dict[str, Any]]:
    ratings: list[dict[str, Any]] = []
    for category in _HARM_CATEGORIES:
        rating: dict[str, Any] = {"category": category, "probability": "NEGLIGIBLE"}
        if category == blocked_category:
            rating = {"category": category, "probability": "HIGH", "blocked": True}
        ratings.append(rating)
    return ratings


def generate_response(
    *,
    model: str,
    response_id: str,
    prompt_tokens: int,
    text: str | None,
    finish_reason: str = "STOP",
    include_content: bool = True,
    blocked_category: str | None = None,
) -> dict[str, Any]:
    """A GenerateContentResponse with one candidate.

    ``text=None`` with ``include_content=True`` gives ``content: {role: model}``
    without parts (the empty answer Gemini 2.5 sometimes returns);
    ``include_content=False`` omits content entirely (SAFETY-finished candidate).
    """
    candidate: dict[str, Any] = {"finishReason": finish_reason, "index": 0}
    if include_content:
        content: dict[str, Any] = {"role": "model"}
        if text is not None:
            content["parts"] = [{"text": text}]
        candidate["content"] = content
    if blocked_category is not None:
        candidate["safetyRatings"] = safety_ratings(blocked_category)
    return {
        "candidates": [candidate],
        "usageMetadata": usage_metadata(prompt_tokens, estimate_tokens(text or "")),
        "modelVersion": model,
        "responseId": response_id,
    }


def stream_chunks(body: dict[str, Any], chunks: int) -> list[dict[str, Any]]:
    """A GenerateContentResponse as streamGenerateContent sends it: the text in up to
    ``chunks`` pieces, finishReason and usageMetadata on the last one only. A body
    without text (blocked, safety-finished, empty) is one chunk."""
    candidate = (body.get("candidates") or [{}])[0]
    parts = candidate.get("content", {}).get("parts") or [{}]
    text = parts[0].get("text")
    if not text:
        return [body]
    pieces = split_text(text, chunks)
    head = {k: v for k, v in body.items() if k not in ("candidates", "usageMetadata")}
    result = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": p}]}, "index": 0}], **head}
        for p in pieces
    ]
    last = result[-1]
    last["candidates"][0]["finishReason"] = candidate.get("finishReason", "STOP")
    last["usageMetadata"] = body["usageMetadata"]
    return result


def prompt_blocked_response(*, model: str, response_id: str, prompt_tokens: int) -> dict[str, Any]:
    return {
        "promptFeedback": {
            "blockReason": "SAFETY",
            "safetyRatings": safety_ratings("HARM_CATEGORY_HARASSMENT"),
        },
        "usageMetadata": usage_metadata(prompt_tokens, None),
        "modelVersion": model,
        "responseId": response_id,
    }


def count_tokens_response(total_tokens: int) -> dict[str, Any]:
    return {
        "totalTokens": total_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total_tokens}],
    }


def _display_name(model_id: str) -> str:
    return " ".join(w.capitalize() if not w[0].isdigit() else w for w in model_id.split("-"))


def model_info(model_id: str) -> dict[str, Any]:
    return {
        "name": f"models/{model_id}",
        "version": "001",
        "displayName": _display_name(model_id),
        "description": f"Emulated {model_id}",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "temperature": 1.0,
        "maxTemperature": 2.0,
        "topP": 0.95,
        "topK": 64,
    }


# ---- errors: google.rpc.Status in Google's JSON envelope ----


def error_body(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def api_key_invalid() -> dict[str, Any]:
    return error_body(
        400,
        "INVALID_ARGUMENT",
        API_KEY_INVALID_MESSAGE,
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": API_KEY_INVALID_MESSAGE,
            },
        ],
    )


def api_key_missing() -> dict[str, Any]:
    # What Google answers when no key/credentials are sent at all.
    return error_body(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    )


def model_not_found(model: str, api_version: str | None, method: str) -> dict[str, Any]:
    return error_body(
        404,
        "NOT_FOUND",
        f"models/{model} is not found for API version {api_version or 'v1beta'}, or is not supported "
        f"for {method}. Call ListModels to see the list of available models and their supported methods.",
    )


def format_duration(seconds: float) -> str:
    """google.protobuf.Duration JSON form: "3s", "0.500s"."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:.3f}s"


def rate_limited(model: str, retry_after: float, message: str | None = None) -> dict[str, Any]:
    return error_body(
        429,
        "RESOURCE_EXHAUSTED",
        message
        or "You exceeded your current quota, please check your plan and billing details. For more information "
        "on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": "10",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": format_duration(retry_after),
            },
        ],
    )


# 200 answers that are not a generateContent response (the HTML_BODY / INVALID_JSON faults).
HTML_PAGE = "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Sign in to continue.</body></html>"
TRUNCATED_JSON = '{"candidates": [{"content": {"parts": [{"text": "Hel'

# Usage a server reports when it cannot count (the NEGATIVE_USAGE fault).
NEGATIVE_USAGE = {"promptTokenCount": -1, "candidatesTokenCount": -1, "totalTokenCount": -1}


# (HTTP code, google.rpc status, default message) for the plain error faults.
SIMPLE_ERRORS: dict[str, tuple[int, str, str]] = {
    "internal": (
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    "unavailable": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "deadline_exceeded": (
        504,
        "DEADLINE_EXCEEDED",
        "Deadline expired before operation could complete.",
    ),
    "invalid_argument": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "permission_denied": (403, "PERMISSION_DENIED", "The caller does not have permission"),
}
# A stream that fails reports a 500 INTERNAL (as an event, or as the answer when not streamed).
SIMPLE_ERRORS["stream_error"] = SIMPLE_ERRORS["internal"]
