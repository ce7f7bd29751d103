"""The provider interface: persona instructions + history + new message in, text out."""

from dataclasses import dataclass, field
from typing import Literal, Protocol


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

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """One attempt, no retries (the caller owns retries, limits and the circuit)."""
        ...


def check_request() -> GenerationRequest:
    """The smallest useful live call, for "check credentials"."""
    return GenerationRequest(
        instructions="Answer with the single word OK.",
        message=ChatTurn(role="user", text="Are you there?"),
        temperature=0.0,
        max_output_tokens=16,
    )
