"""The provider interface: persona instructions + history + new message in, text out."""

import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Literal, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatTurn:
    role: Literal["user", "model"]
    text: str
    author: str = ""  # in groups, who said it, so the AI knows who is talking


@dataclass(frozen=True)
class GenerationRequest:
    instructions: str
    message: ChatTurn
    history: list[ChatTurn] = field(default_factory=list)
    temperature: float = 0.7
    max_output_tokens: int = 1024


@dataclass(frozen=True)
class GenerationResult:
    text: str
    model: str
    latency_ms: int
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str = ""


class ProviderError(Exception):
    """The provider could not produce a reply. `str()` is plain words, safe to show
    and store (never a key). `kind` says what went wrong, for retries and reports."""

    BAD_KEY = "bad_key"
    PERMISSION = "permission"
    MODEL_NOT_FOUND = "model_not_found"
    BAD_REQUEST = "bad_request"
    QUOTA = "quota"  # 429 from the provider
    SERVER = "server"  # 5xx
    UNREACHABLE = "unreachable"  # connection refused, DNS, time-out
    BLOCKED = "blocked"  # the provider declined this prompt (safety)
    RATE_LIMITED = "rate_limited"  # our own per-credential limit: no slot in time
    CIRCUIT_OPEN = "circuit_open"  # recent calls failed; skipping until the cool-down
    INACTIVE = "inactive"  # the credential is switched off

    RETRYABLE = frozenset({QUOTA, SERVER, UNREACHABLE})
    # Failures that say the provider (or our access to it) is unhealthy: they count
    # towards opening the circuit. A blocked prompt or our own limit do not.
    OUTAGE = frozenset({BAD_KEY, PERMISSION, MODEL_NOT_FOUND, QUOTA, SERVER, UNREACHABLE})

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE


class Provider(Protocol):
    name: str

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """One attempt, no retries (the caller owns retries, limits and the circuit).
        Every failure of the call is a ProviderError; only a DecryptionError of the
        credential's key escapes as itself."""
        ...


def unreadable_answer(provider: str, failure: Exception) -> ProviderError:
    """For what no mapping foresaw (an HTML page or broken JSON where a reply was due,
    an SDK surprise): a SERVER error in a few safe words, never the body or a key. The
    details go to the log (whose records are redacted) for whoever investigates."""
    log.warning("%s: unexpected %s from the provider call", provider, type(failure).__name__, exc_info=failure)
    return ProviderError(
        ProviderError.SERVER, f"{provider} sent an answer that could not be read ({type(failure).__name__})."
    )


async def answer_read(provider: str, answer: Awaitable[GenerationResult]) -> GenerationResult:
    """Await a provider's answer; whatever fails in a way no mapping foresaw becomes a
    ProviderError (unreadable_answer), so one odd response never escapes as a crash."""
    try:
        return await answer
    except ProviderError:
        raise
    except Exception as failure:
        raise unreadable_answer(provider, failure) from None


def token_count(value: int | None) -> int | None:
    """A provider's token count, never negative (some servers report -1 for "unknown")."""
    return None if value is None else max(0, value)


def check_request() -> GenerationRequest:
    """The smallest useful live call, for "check credentials"."""
    return GenerationRequest(
        instructions="Answer with the single word OK.",
        message=ChatTurn(role="user", text="Are you there?"),
        temperature=0.0,
        max_output_tokens=16,
    )
