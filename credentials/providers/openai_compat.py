"""OpenAI-compatible chat completions through the `openai` package with a base URL:
OpenAI itself, Ollama, vLLM, LM Studio, OpenRouter and the like. Async client.

The client's own retries are off (max_retries=0): retries, limits and the circuit
are the caller's, the same for every provider. Time-outs and refused connections are
APIConnectionError (APITimeoutError is one). A 200 that is not JSON comes back as the
body's text instead of a ChatCompletion (the client trusts the content type), and broken
JSON as a JSONDecodeError: both are reported as an unreadable answer.
"""

import base64
import contextlib
import time
from collections.abc import Iterator

import openai
from django.conf import settings
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionContentPartImageParam,
    ChatCompletionMessageParam,
)

from core.aio import PerLoop
from credentials.models import AICredential
from credentials.providers.base import (
    GenerationRequest,
    GenerationResult,
    MediaPart,
    ProviderError,
    TextSink,
    answer_read,
)
from credentials.providers.keys import api_key

# Keyed by loop too: an AsyncOpenAI's httpx pool belongs to the loop that opened it.
_clients: PerLoop[tuple[int, str, str], openai.AsyncOpenAI] = PerLoop()


def _client(credential: AICredential) -> openai.AsyncOpenAI:
    key = api_key(credential) or "none"  # a local server may take none; the SDK wants one
    return _clients.get(
        (credential.pk, key, credential.base_url),
        lambda: openai.AsyncOpenAI(
            api_key=key, base_url=credential.base_url or None,
            timeout=settings.AI_REQUEST_TIMEOUT, max_retries=0,
        ),
    )


class OpenAICompatProvider:
    name = "openai_compatible"

    def __init__(self, credential: AICredential) -> None:
        self.credential = credential

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        # Outside answer_read: no key, or a client that cannot be built, is not an
        # unreadable answer (provider_call reports the latter).
        client = _client(self.credential)
        return await answer_read("The provider", _generate(client, self.credential.model, request))

    async def stream(self, request: GenerationRequest, on_text: TextSink) -> GenerationResult:
        client = _client(self.credential)
        return await answer_read("The provider", _stream(client, self.credential.model, request, on_text))


def _image_part(media: MediaPart) -> ChatCompletionContentPartImageParam:
    """An image as the Chat Completions API takes it inline: a data URL."""
    encoded = base64.b64encode(media.data).decode()
    return {"type": "image_url", "image_url": {"url": f"data:{media.mime_type};base64,{encoded}"}}


def _messages(request: GenerationRequest) -> list[ChatCompletionMessageParam]:
    messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": request.instructions}]
    for turn in [*request.history, request.message]:
        if turn.role == "model":
            messages.append({"role": "assistant", "content": turn.text})
        elif turn.media:
            messages.append({"role": "user", "content": [*map(_image_part, turn.media), {"type": "text", "text": turn.text}]})
        else:
            messages.append({"role": "user", "content": turn.text})
    return messages


@contextlib.contextmanager
def _translated(model: str) -> Iterator[None]:
    try:
        yield
    except openai.APIStatusError as failure:
        raise _status_error(failure, model) from None
    except openai.APIConnectionError as failure:  # includes time-outs and a stream cut halfway
        raise ProviderError(
            ProviderError.UNREACHABLE, f"Could not reach the provider ({type(failure).__name__})."
        ) from None
    except openai.APIError as failure:  # an error event in the middle of a stream
        raise ProviderError(ProviderError.SERVER, f"The provider failed mid-answer: {failure.message}") from None


async def _generate(client: openai.AsyncOpenAI, model: str, request: GenerationRequest) -> GenerationResult:
    started = time.perf_counter()
    with _translated(model):
        completion = await client.chat.completions.create(
            model=model, messages=_messages(request),
            temperature=request.temperature, max_tokens=request.max_output_tokens,
        )
    if not isinstance(completion, ChatCompletion):  # e.g. an HTML page with status 200
        shape = "not JSON" if isinstance(completion, str) else "JSON of another shape"
        raise ProviderError(
            ProviderError.SERVER, f"The provider sent an answer that is not a chat completion ({shape})."
        )
    return _result(completion, model, latency_ms=int((time.perf_counter() - started) * 1000))


async def _stream(
    client: openai.AsyncOpenAI, model: str, request: GenerationRequest, on_text: TextSink
) -> GenerationResult:
    started = time.perf_counter()
    text, first_token_ms, finish, used_model = "", None, "", model
    tokens_in = tokens_out = None
    with _translated(model):
        chunks = await client.chat.completions.create(
            model=model, messages=_messages(request), stream=True, stream_options={"include_usage": True},
            temperature=request.temperature, max_tokens=request.max_output_tokens,
        )
        async for chunk in chunks:
            used_model = chunk.model or used_model
            if chunk.usage is not None:
                tokens_in, tokens_out = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
            choice = chunk.choices[0] if chunk.choices else None
            if choice is None:
                continue
            finish = choice.finish_reason or finish
            if choice.delta.content:
                if first_token_ms is None:
                    first_token_ms = int((time.perf_counter() - started) * 1000)
                text += choice.delta.content
                await on_text(text)
    if finish == "content_filter" and not text:
        raise ProviderError(ProviderError.BLOCKED, "The provider withheld the answer (content_filter).")
    return GenerationResult(
        text=text, model=used_model, latency_ms=int((time.perf_counter() - started) * 1000),
        tokens_in=tokens_in, tokens_out=tokens_out, finish_reason=finish.upper(),
        first_token_ms=first_token_ms,
    )


def _result(completion: ChatCompletion, model: str, latency_ms: int) -> GenerationResult:
    choice = completion.choices[0] if completion.choices else None
    if choice is not None and choice.finish_reason == "content_filter" and not choice.message.content:
        raise ProviderError(ProviderError.BLOCKED, "The provider withheld the answer (content_filter).")
    usage = completion.usage
    return GenerationResult(
        text=(choice.message.content or "") if choice else "",
        model=completion.model or model,
        latency_ms=latency_ms,
        tokens_in=usage.prompt_tokens if usage else None,
        tokens_out=usage.completion_tokens if usage else None,
        finish_reason=(choice.finish_reason or "").upper() if choice else "",
    )


def _status_error(failure: openai.APIStatusError, model: str) -> ProviderError:
    code, message = failure.status_code, str(failure.message)
    if code == 401:
        return ProviderError(ProviderError.BAD_KEY, "The provider rejected the API key (401).")
    if code == 403:
        return ProviderError(ProviderError.PERMISSION, f"The provider refused access (403): {message}")
    if code == 404:
        return ProviderError(ProviderError.MODEL_NOT_FOUND, f"The provider has no model “{model}” (404).")
    if code == 429:
        retry_after = failure.response.headers.get("retry-after")
        return ProviderError(
            ProviderError.QUOTA, f"Quota exhausted or rate limited by the provider (429): {message}",
            retry_after=float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None,
        )
    if code >= 500:
        return ProviderError(ProviderError.SERVER, f"The provider failed ({code}): {message}")
    return ProviderError(ProviderError.BAD_REQUEST, f"The provider rejected the request ({code}): {message}")
