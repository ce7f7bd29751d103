"""The provider interface: persona instructions + history + new message in, text out."""

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from core.redaction import redact

log = logging.getLogger(__name__)

# A failure's words are shown in the admin and the dashboard and stored with the reply
# (the credential's last_error holds 500): a provider's error page must not fill them.
MESSAGE_MAX_LENGTH = 300


@dataclass(frozen=True)
class MediaPart:
    """A photo, voice note or video shown to the AI with a turn (inline bytes)."""

    mime_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ChatTurn:
    role: Literal["user", "model"]
    text: str
    author: str = ""  # in groups, who said it, so the AI knows who is talking
    media: tuple[MediaPart, ...] = ()


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
    first_token_ms: int | None = None  # streamed: when the first text arrived

    def __post_init__(self) -> None:
        # Never negative, whatever the provider said (some report -1 for "unknown"):
        # the counts are stored with each reply and summed.
        for name in ("tokens_in", "tokens_out"):
            value = getattr(self, name)
            if value is not None and value < 0:
                object.__setattr__(self, name, 0)


# Where a markup page starts in an error message: a proxy's or load balancer's error page
# quoted by the client library. What follows is a remote body, never shown.
_MARKUP = re.compile(r"<(?:!doctype|html|head|body|title|h1|div|p|pre)\b.*", re.I | re.S)


def safe_message(text: str) -> str:
    """One line, no secret, no remote page, at most MESSAGE_MAX_LENGTH characters."""
    text = " ".join(_MARKUP.sub("(an HTML page, not the provider's answer)", redact(text)).split())
    return text if len(text) <= MESSAGE_MAX_LENGTH else text[: MESSAGE_MAX_LENGTH - 1].rstrip() + "…"


class ProviderError(Exception):
    """The provider could not produce a reply. `str()` is plain words, safe to show
    and store: redacted and shortened here, whatever the raiser passed (safe_message).
    `kind` says what went wrong, for retries and reports."""

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
    MISSING_KEY = "missing_key"  # no API key stored, and the provider needs one
    KEY_UNREADABLE = "key_unreadable"  # the stored key cannot be decrypted
    UNEXPECTED = "unexpected"  # a failure no mapping foresaw (provider_call)

    RETRYABLE = frozenset({QUOTA, SERVER, UNREACHABLE})
    # Failures that say the provider (or our access to it) is unhealthy: they count
    # towards opening the circuit. A blocked prompt or our own limit do not.
    OUTAGE = frozenset({BAD_KEY, PERMISSION, MODEL_NOT_FOUND, QUOTA, SERVER, UNREACHABLE, UNEXPECTED})
    # The credential cannot make any call until an operator fixes it: no call is made.
    UNUSABLE = frozenset({MISSING_KEY, KEY_UNREADABLE})

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(safe_message(message))
        self.kind = kind
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE


class Provider(Protocol):
    name: str

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """One attempt, no retries (the caller owns retries, limits and the circuit).
        Every failure it foresees is a ProviderError; callers go through provider_call,
        which makes the rest one too."""
        ...


# Called with the whole text so far each time a streamed answer grows.
TextSink = Callable[[str], Awaitable[None]]


class StreamingProvider(Provider, Protocol):
    async def stream(self, request: GenerationRequest, on_text: TextSink) -> GenerationResult:
        """`generate`, streamed: `on_text` hears the text as it grows; the result is the
        whole answer. A failure halfway is a ProviderError like any other."""
        ...


def streams(provider: Provider) -> bool:
    return callable(getattr(provider, "stream", None))


async def provider_stream(provider: StreamingProvider, request: GenerationRequest, on_text: TextSink) -> GenerationResult:
    """provider_call's guarantee for a streamed call: every failure is a ProviderError."""
    return await provider_call(provider, request, lambda: provider.stream(request, on_text))


async def provider_call(
    provider: Provider, request: GenerationRequest,
    call: Callable[[], Awaitable[GenerationResult]] | None = None,
) -> GenerationResult:
    """`provider.generate`, with the guarantee every caller relies on: whatever fails is
    a ProviderError. Providers map what they foresee (answer_read covers reading the
    answer); this catches the rest, such as a client that cannot be built from the
    credential, so no failure escapes as a crash and leaves a reply or a broadcast stuck."""
    try:
        return await (call() if call is not None else provider.generate(request))
    except ProviderError:
        raise
    except Exception as failure:
        log.warning("%s: unexpected %s", provider.name, type(failure).__name__, exc_info=failure)
        detail = f": {failure}" if str(failure) else ""
        raise ProviderError(
            ProviderError.UNEXPECTED,
            f"The AI call failed unexpectedly ({provider.name}, {type(failure).__name__}{detail}).",
        ) from None


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


def check_request() -> GenerationRequest:
    """The smallest useful live call, for "check credentials"."""
    return GenerationRequest(
        instructions="Answer with the single word OK.",
        message=ChatTurn(role="user", text="Are you there?"),
        temperature=0.0,
        max_output_tokens=16,
    )
