"""One AI reply, made resilient, the same way for every provider:

- a per-credential requests-per-minute limit shared by all workers (Redis window);
- a circuit breaker per credential shared by all workers (pybreaker, Redis state):
  after repeated outage-type failures it opens and calls fail in milliseconds until
  the cool-down, then one probe decides;
- retries with exponential backoff and jitter on 429/5xx/time-outs, honouring
  Retry-After, within a time budget; never on 400/403/404 or a blocked prompt;
- usage and the last error recorded on the credential.

The caller sends the persona's fallback reply when this raises ProviderError.
"""

import threading

import pybreaker
from django.conf import settings
from django.db.models import F
from django.utils import timezone
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from config.ratelimit import SlotUnavailable, Window, slot_acquire
from config.redis import redis_client
from credentials.models import AICredential
from credentials.providers import GenerationRequest, GenerationResult, ProviderError, provider_for

_breakers: dict[tuple[int, int, float], pybreaker.CircuitBreaker] = {}
_breakers_lock = threading.Lock()
_backoff = wait_exponential_jitter(initial=0.5, max=8, jitter=0.5)


def reply_generate(*, credential: AICredential | None, request: GenerationRequest) -> GenerationResult:
    provider = provider_for(credential)
    if credential is None or credential.provider == AICredential.Provider.OFFLINE:
        return provider.generate(request)
    if not credential.is_active:
        raise ProviderError(ProviderError.INACTIVE, f"The AI credential “{credential.name}” is switched off.")
    retrying = Retrying(
        stop=stop_after_attempt(settings.AI_MAX_ATTEMPTS) | stop_before_delay(settings.AI_RETRY_BUDGET),
        wait=_wait,
        retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
        reraise=True,
    )
    try:
        result = retrying(_attempt, provider, credential, request)
    except ProviderError as failure:
        usage_record(credential=credential, error=str(failure))
        raise
    usage_record(credential=credential)
    return result


def _attempt(provider, credential: AICredential, request: GenerationRequest) -> GenerationResult:  # type: ignore[no-untyped-def]
    try:
        slot_acquire(
            windows=[Window(f"botfleet:ai-rate:{credential.pk}", credential.requests_per_minute, 60_000)],
            block_key=f"botfleet:ai-block:{credential.pk}",
            max_wait=settings.AI_RATE_LIMIT_MAX_WAIT,
        )
    except SlotUnavailable as busy:
        raise ProviderError(
            ProviderError.RATE_LIMITED,
            f"Over this credential's limit of {credential.requests_per_minute} requests per "
            f"minute (next slot in {busy.wait:.0f} s).",
        ) from None
    try:
        return breaker_for(credential).call(provider.generate, request)
    except pybreaker.CircuitBreakerError:
        raise ProviderError(
            ProviderError.CIRCUIT_OPEN,
            f"Skipped the AI: recent calls with “{credential.name}” failed; it is tried again "
            f"after a {settings.AI_CIRCUIT_COOLDOWN:g} s cool-down.",
        ) from None


def _wait(state: RetryCallState) -> float:
    failure = state.outcome.exception() if state.outcome else None
    if isinstance(failure, ProviderError) and failure.retry_after is not None:
        return failure.retry_after
    return _backoff(state)


def _counts_as_healthy(error: BaseException) -> bool:
    """pybreaker 'exclude' hook: only outage-type failures count towards opening."""
    return not (isinstance(error, ProviderError) and error.kind in ProviderError.OUTAGE)


def breaker_for(credential: AICredential) -> pybreaker.CircuitBreaker:
    # Keyed by the settings too: a changed threshold or cool-down takes effect.
    key = (credential.pk, settings.AI_CIRCUIT_FAILURES, settings.AI_CIRCUIT_COOLDOWN)
    with _breakers_lock:
        breaker = _breakers.get(key)
        if breaker is None:
            storage = pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, redis_client(), namespace=f"botfleet:breaker:{credential.pk}"
            )
            breaker = _breakers[key] = pybreaker.CircuitBreaker(
                fail_max=settings.AI_CIRCUIT_FAILURES,
                reset_timeout=settings.AI_CIRCUIT_COOLDOWN,
                exclude=[_counts_as_healthy],
                state_storage=storage,
                name=f"credential-{credential.pk}",
                throw_new_error_on_trip=False,  # the tripping call reports the real error
            )
        return breaker


def usage_record(*, credential: AICredential, error: str = "") -> None:
    now = timezone.now()
    fields: dict[str, object] = {"requests_total": F("requests_total") + 1, "last_used_at": now}
    if error:
        fields.update(failures_total=F("failures_total") + 1, last_error=error[:500], last_error_at=now)
    AICredential.objects.filter(pk=credential.pk).update(**fields)
