"""A live check of a credential: one minimal call, the outcome in plain words, saved."""

from dataclasses import dataclass

from django.utils import timezone

from core import aio
from credentials.models import AICredential
from credentials.providers import ProviderError, provider_call, provider_for
from credentials.providers.base import check_request


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str


def credential_check(*, credential: AICredential) -> CheckResult:
    # Straight to the provider: a check must see the provider as it is now, not
    # through our retries, rate limit or an open circuit. The providers are async: the
    # call runs on the process's I/O loop.
    try:
        answer = aio.run(provider_call(provider_for(credential), check_request()))
    except ProviderError as failure:
        result = CheckResult(ok=False, message=str(failure))
    else:
        result = CheckResult(ok=True, message=f"OK: {answer.model} answered in {answer.latency_ms} ms.")
    AICredential.objects.filter(pk=credential.pk).update(
        last_checked_at=timezone.now(), last_check_ok=result.ok, last_check_message=result.message[:500]
    )
    return result
