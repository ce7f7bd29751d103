"""Google Gemini through google-genai (`from google import genai`), async client.

google-generativeai is end-of-life and must not be used. Facts this module relies on
(checked against google-genai 3.4.0 and the emulator): an invalid key is a 400
INVALID_ARGUMENT (reason API_KEY_INVALID), not a 401; a blocked prompt is HTTP 200
with prompt_feedback.block_reason and no candidates, and `.text` is then None;
HttpOptions timeouts are in milliseconds; a genai.Client closes its connections when
garbage-collected, so clients are kept.

`client.aio` sends with aiohttp when it is installed (it is: requirements.in), else with
httpx2's AsyncClient. Neither wraps its transport errors: a refused connection is
aiohttp's ClientConnectorError (httpx2's ConnectError), a time-out the built-in
TimeoutError (httpx2's TimeoutException). Unlike the sync client, the aiohttp path
retries a refused connection once after sleeping 1-10 s unless `retry_options` is set,
so it is set to one attempt: retries are ours. A 200 whose body is not JSON surfaces
as a JSONDecodeError.
"""

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace

import aiohttp
import httpx2
from django.conf import settings
from google import genai
from google.genai import errors, types

from core.aio import PerLoop
from credentials.models import AICredential
from credentials.providers.base import (
    GenerationRequest,
    GenerationResult,
    ProviderError,
    TextSink,
    answer_read,
)
from credentials.providers.keys import api_key

_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, httpx2.TransportError)

# Keyed by loop too: the async client's connections belong to the loop that opened them.
_clients: PerLoop[tuple[int, str, str], genai.Client] = PerLoop()


def _client(credential: AICredential) -> genai.Client:
    key = api_key(credential)
    return _clients.get((credential.pk, key, credential.base_url), lambda: _client_build(key, credential.base_url))


def _client_build(key: str, base_url: str) -> genai.Client:
    options = types.HttpOptions(
        base_url=base_url or None,
        timeout=int(settings.AI_REQUEST_TIMEOUT * 1000),
        retry_options=types.HttpRetryOptions(attempts=1),  # see the module doc
    )
    return genai.Client(api_key=key, http_options=options)


class GeminiProvider:
    name = "gemini"

    def __init__(self, credential: AICredential) -> None:
        self.credential = credential

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        # Outside answer_read: no key, or a client that cannot be built, is not an
        # unreadable answer (provider_call reports the latter).
        client = _client(self.credential)
        return await answer_read("Gemini", _generate(client, self.credential.model, request))

    async def stream(self, request: GenerationRequest, on_text: TextSink) -> GenerationResult:
        client = _client(self.credential)
        return await answer_read("Gemini", _stream(client, self.credential.model, request, on_text))


def _contents(request: GenerationRequest) -> list[types.ContentUnion]:
    turns = [*request.history, request.message]
    contents: list[types.ContentUnion] = [
        types.Content(role=t.role, parts=[
            *(types.Part.from_bytes(data=m.data, mime_type=m.mime_type) for m in t.media),
            types.Part(text=t.text),
        ])
        for t in turns
    ]
    return contents


def _config(request: GenerationRequest) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        system_instruction=request.instructions,
        temperature=request.temperature,
        max_output_tokens=request.max_output_tokens,
    )


@contextlib.contextmanager
def _translated(model: str) -> Iterator[None]:
    try:
        yield
    except errors.APIError as failure:
        raise _api_error(failure, model) from None
    except _TRANSPORT_ERRORS as failure:  # aiohttp's ClientPayloadError: a stream cut halfway
        raise ProviderError(
            ProviderError.UNREACHABLE,
            f"Could not reach Gemini ({type(failure).__name__}): {_transport_detail(failure)}",
        ) from None


async def _generate(client: genai.Client, model: str, request: GenerationRequest) -> GenerationResult:
    started = time.perf_counter()
    with _translated(model):
        response = await client.aio.models.generate_content(
            model=model, contents=_contents(request), config=_config(request)
        )
    latency_ms = int((time.perf_counter() - started) * 1000)
    return _result(response, model, latency_ms)


async def _stream(client: genai.Client, model: str, request: GenerationRequest, on_text: TextSink) -> GenerationResult:
    started = time.perf_counter()
    text, first_token_ms, last = "", None, None
    with _translated(model):
        chunks = await client.aio.models.generate_content_stream(
            model=model, contents=_contents(request), config=_config(request)
        )
        async for chunk in chunks:
            last = chunk
            piece = _chunk_text(chunk)
            if piece:
                if first_token_ms is None:
                    first_token_ms = int((time.perf_counter() - started) * 1000)
                text += piece
                await on_text(text)
    if last is None:
        raise ProviderError(ProviderError.SERVER, "Gemini's stream ended without an answer.")
    result = _result(last, model, int((time.perf_counter() - started) * 1000), text=text)
    return replace(result, first_token_ms=first_token_ms)


def _chunk_text(chunk: types.GenerateContentResponse) -> str:
    parts = chunk.candidates[0].content.parts if chunk.candidates and chunk.candidates[0].content else None
    return "".join(part.text for part in parts or [] if part.text and not part.thought)


def _transport_detail(failure: Exception) -> str:
    if isinstance(failure, TimeoutError):  # its str() is empty
        return f"no answer within {settings.AI_REQUEST_TIMEOUT:g} s"
    if isinstance(failure, aiohttp.ClientConnectorError):  # its str() names the SSL context object
        return str(failure.os_error)
    return str(failure)


def _result(
    response: types.GenerateContentResponse, model: str, latency_ms: int, *, text: str | None = None
) -> GenerationResult:
    """`text`: a stream's whole text (its last chunk carries the finish and the usage)."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        raise ProviderError(
            ProviderError.BLOCKED, f"Gemini blocked the prompt ({feedback.block_reason.name})."
        )
    candidate = response.candidates[0] if response.candidates else None
    finish = candidate.finish_reason.name if candidate and candidate.finish_reason else ""
    text = (response.text or "") if text is None else text
    if not text.strip() and finish in ("SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII"):
        raise ProviderError(ProviderError.BLOCKED, f"Gemini withheld the answer ({finish}).")
    usage = response.usage_metadata
    return GenerationResult(
        text=text,
        model=response.model_version or model,
        latency_ms=latency_ms,
        tokens_in=usage.prompt_token_count if usage else None,
        tokens_out=usage.candidates_token_count if usage else None,
        finish_reason=finish,
    )


def _api_error(failure: errors.APIError, model: str) -> ProviderError:
    status, message = failure.status or "", failure.message or ""
    if failure.code == 400 and ("API_KEY_INVALID" in str(failure.details) or "API key not valid" in message):
        return ProviderError(ProviderError.BAD_KEY, "Gemini rejected the API key (API_KEY_INVALID).")
    if failure.code == 403:
        return ProviderError(
            ProviderError.PERMISSION,
            f"Gemini refused access (403 {status}): the key may lack access to this API or model.",
        )
    if failure.code == 404:
        return ProviderError(ProviderError.MODEL_NOT_FOUND, f"Gemini has no model “{model}” (404).")
    if failure.code == 429:
        return ProviderError(
            ProviderError.QUOTA, f"Gemini quota exhausted or rate limited (429): {message}",
            retry_after=_retry_after(failure),
        )
    if failure.code >= 500:
        return ProviderError(ProviderError.SERVER, f"Gemini failed ({failure.code} {status}): {message}")
    return ProviderError(ProviderError.BAD_REQUEST, f"Gemini rejected the request ({failure.code} {status}): {message}")


def _retry_after(failure: errors.APIError) -> float | None:
    """Retry-After header, else google.rpc.RetryInfo's retryDelay ("3s")."""
    response = getattr(failure, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    if header:
        try:
            return float(header)
        except ValueError:
            pass
    details = failure.details if isinstance(failure.details, dict) else {}
    for detail in details.get("error", {}).get("details", []):
        delay = str(detail.get("retryDelay", ""))
        if delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                pass
    return None
