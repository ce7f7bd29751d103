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
    """The provider could not produce a reply. `str()` is safe to show (no keys)."""

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Provider(Protocol):
    name: str

    def generate(self, request: GenerationRequest) -> GenerationResult: ...
