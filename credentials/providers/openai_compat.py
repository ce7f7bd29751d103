"""OpenAI-compatible chat completions through the `openai` package with a base URL:
OpenAI itself, Ollama, vLLM, LM Studio, OpenRouter and the like.

The client's own retries are off (max_retries=0): retries, limits and the circuit
are the caller's, the same for every provider.
"""

import threading
import time

import openai
from django.conf import settings

from credentials.models import AICredential
from credentials.providers.base import GenerationRequest, GenerationResult, ProviderError
from credentials.redaction import redact

_clients: dict[tuple[int, str, str], openai.OpenAI] = {}
_clients_lock = threading.Lock()


def _client(credential: AICredential) -> openai.OpenAI:
    key = credential.api_key.reveal() or "none"  # local servers often need no key
    cache_key = (credential.pk, key, credential.base_url)
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            client = _clients[cache_key] = openai.OpenAI(
                api_key=key, base_url=credential.base_url or None,
                timeout=settings.AI_REQUEST_TIMEOUT, max_retries=0,
            )
        return client


class OpenAICompatProvider:
    name = "openai_compatible"

    def __init__(self, credential: AICredential) -> None:
        self.credential = credential

    def generate(self, request: GenerationRequest) -> GenerationResult:
        messages = [{"role": "system", "content": request.instructions}]
        for turn in [*request.history, request.message]:
            messages.append({"role": "assistant" if turn.role == "model" else "user", "content": turn.text})
        started = time.perf_counter()
        try:
            completion = _client(self.credential).chat.completions.create(
                model=self.credential.model, messages=messages,  # type: ignore[arg-type]
                temperature=request.temperature, max_tokens=request.max_output_tokens,
            )
        except openai.APIStatusError as failure:
            raise _status_error(failure, self.credential.model) from None
        except openai.APIConnectionError as failure:  # includes time-outs
            raise ProviderError(
                ProviderError.UNREACHABLE, f"Could not reach the provider ({type(failure).__name__})."
            ) from None
        choice = completion.choices[0] if completion.choices else None
        if choice is not None and choice.finish_reason == "content_filter" and not choice.message.content:
            raise ProviderError(ProviderError.BLOCKED, "The provider withheld the answer (content_filter).")
        usage = completion.usage
        return GenerationResult(
            text=(choice.message.content or "") if choice else "",
            model=completion.model or self.credential.model,
            latency_ms=int((time.perf_counter() - started) * 1000),
            tokens_in=usage.prompt_tokens if usage else None,
            tokens_out=usage.completion_tokens if usage else None,
            finish_reason=(choice.finish_reason or "").upper() if choice else "",
        )


def _status_error(failure: openai.APIStatusError, model: str) -> ProviderError:
    code, message = failure.status_code, redact(str(failure.message))
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
