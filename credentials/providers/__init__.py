"""AI providers behind one small interface (see base.py)."""

from credentials.providers.base import (
    ChatTurn,
    GenerationRequest,
    GenerationResult,
    Provider,
    ProviderError,
)
from credentials.providers.registry import provider_for

__all__ = [
    "ChatTurn", "GenerationRequest", "GenerationResult", "Provider", "ProviderError",
    "provider_for",
]
