"""One AI text (a reply, a broadcast, a summary, notes about a person), made resilient,
the same way for every provider:

- a per-credential requests-per-minute limit shared by all workers (Redis window);
- a circuit breaker per credential shared by all workers (credentials/circuit.py):
  after repeated outage-type failures it opens and calls fail in milliseconds until
  the cool-down, then one probe decides;
- retries with exponential backoff and jitter on 429/5xx/time-outs, honouring
  Retry-After, within a time budget; never on 400/403/404 or a blocked prompt;
- usage and the last error recorded on the credential.

It runs on the process's I/O loop (core.aio), so that the AI calls of many replies
wait side by side instead of holding a worker thread each: `text_generate_async` for
code on the loop (replies), `text_generate` for sync callers (Celery tasks, commands:
broadcasts, summaries, notes).

Every failure is a ProviderError (a key that is missing or unreadable, a failure no
provider mapping foresaw: credentials.providers.base.provider_call), recorded on the
credential; the caller decides what then (a reply or a broadcast sends the persona's
fallback line; a summary or notes wait for the next time).
"""


from collections.abc import Awaitable, Callable, Iterator
from typing import cast

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from core import aio, dbwork
from core.ratelimit import SlotUnavailable, Window, slot_acquire
from credentials.circuit import Circuit, CircuitOpen
from credentials.models import AICredential
from credentials.providers import (
    GenerationRequest,
    GenerationResult,
    Provider,
    ProviderError,
    api_key,
    provider_call,
    provider_for,
)
from credentials.providers.base import StreamingProvider, TextSink, provider_stream, streams

_backoff = wait_exponential_jitter(initial=0.5, max=8, jitter=0.5)
# "N requests per minute", counted over 61 s: a slot is taken a moment before the request
# reaches the provider, and that moment varies, so two slots exactly 60 s apart could
# land within one of the provider's 60 s windows (measured: 602 in a minute at 600).
RATE_WINDOW_MS = 61_000


def text_generate(*, credential: AICredential | None, request: GenerationRequest) -> GenerationResult:
    """For sync callers: runs `text_generate_async` on the I/O loop and waits. Never from
    the loop's own thread (aio.run refuses): await `text_generate_async` there."""
    return aio.run(text_generate_async(credential=credential, request=request))


async def text_generate_async(
    *, credential: AICredential | None, request: GenerationRequest, on_text: TextSink | None = None,
) -> GenerationResult:
    """The answer, with retries on the transient failures. `on_text`: stream the first
    attempt, calling it with the text so far (drafts); a retry is never streamed (text
    shown once cannot be taken back, and a stream that broke halfway is asked again
    whole), but it waits as any retry does (a 429's retry_after)."""
    provider = provider_for(credential)
    if credential is None or credential.provider == AICredential.Provider.OFFLINE:
        return await provider_call(provider, request)
    if not credential.is_active:
        raise ProviderError(ProviderError.INACTIVE, f"The AI credential “{credential.name}” is switched off.")
    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.AI_MAX_ATTEMPTS) | stop_before_delay(settings.AI_RETRY_BUDGET),
        wait=_wait,
        retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
        reraise=True,
    )
    try:
        api_key(credential)  # a credential that cannot call fails first: no slot, no probe, no retry
        calls = _calls(provider, request, on_text)

        async def attempt() -> GenerationResult:  # a coroutine function: tenacity awaits it
            return await _attempt(provider, credential, request, next(calls))

        result: GenerationResult = await retrying(attempt)
    except ProviderError as failure:
        await _usage_record_off_loop(credential=credential, error=str(failure))
        raise
    await _usage_record_off_loop(credential=credential)
    return result


async def _attempt(
    provider: Provider, credential: AICredential, request: GenerationRequest,
    call: Callable[[], Awaitable[GenerationResult]] | None = None,
) -> GenerationResult:
    circuit = circuit_for(credential)
    try:
        probing = await circuit.before_call()  # first: an open circuit spends no rate-limit slot
    except CircuitOpen:
        raise ProviderError(
            ProviderError.CIRCUIT_OPEN,
            f"Skipped the AI: recent calls with “{credential.name}” failed; it is tried again "
            f"after a {settings.AI_CIRCUIT_COOLDOWN:g} s cool-down.",
        ) from None
    try:
        await slot_acquire(
            windows=[Window(f"botfleet:ai-rate:{credential.pk}", credential.requests_per_minute, RATE_WINDOW_MS)],
            block_key=f"botfleet:ai-block:{credential.pk}",
            max_wait=settings.AI_RATE_LIMIT_MAX_WAIT,
        )
    except SlotUnavailable as busy:
        if probing:
            await circuit.probe_abandon()
        raise ProviderError(
            ProviderError.RATE_LIMITED,
            f"Over this credential's limit of {credential.requests_per_minute} requests per "
            f"minute (next slot in {busy.wait:.0f} s).",
        ) from None
    try:
        result = await (call() if call is not None else provider_call(provider, request))
    except ProviderError as failure:
        if failure.kind in ProviderError.OUTAGE:  # a blocked prompt says nothing of health
            await circuit.record_failure()
        elif probing:
            await circuit.probe_abandon()
        raise
    await circuit.record_success()
    return result


def _calls(
    provider: Provider, request: GenerationRequest, on_text: TextSink | None
) -> Iterator[Callable[[], Awaitable[GenerationResult]] | None]:
    """What each attempt calls: the stream first when asked for and possible, then the
    plain call (None: provider_call)."""
    if on_text is not None and streams(provider):
        streaming = cast(StreamingProvider, provider)
        yield lambda: provider_stream(streaming, request, on_text)
    while True:
        yield None


def _wait(state: RetryCallState) -> float:
    failure = state.outcome.exception() if state.outcome else None
    if isinstance(failure, ProviderError) and failure.retry_after is not None:
        return failure.retry_after
    return _backoff(state)


def circuit_for(credential: AICredential) -> Circuit:
    return Circuit(
        name=f"credential:{credential.pk}",
        fail_max=settings.AI_CIRCUIT_FAILURES,
        cooldown=settings.AI_CIRCUIT_COOLDOWN,
        probe_timeout=settings.AI_REQUEST_TIMEOUT + 5,
    )


async def _usage_record_off_loop(*, credential: AICredential, error: str = "") -> None:
    """The ORM is blocking: on the loop's thread it would stall every other call. The
    process's writer (core.dbwork) records the calls made meanwhile together: one
    UPDATE per credential, not one per AI call."""
    await dbwork.write_many("credentials.usage", usages_record, (credential.pk, error))


def usages_record(calls: list[tuple[int, str]]) -> list[None]:
    """Count AI calls (credential id, error or "") on their credentials."""
    now = timezone.now()
    for credential_id in dict.fromkeys(pk for pk, _ in calls):
        errors = [error for pk, error in calls if pk == credential_id and error]
        fields: dict[str, object] = {
            "requests_total": F("requests_total") + sum(pk == credential_id for pk, _ in calls),
            "last_used_at": now,
        }
        if errors:
            fields.update(failures_total=F("failures_total") + len(errors),
                          last_error=errors[-1][:500], last_error_at=now)
        AICredential.objects.filter(pk=credential_id).update(**fields)
    return [None] * len(calls)
