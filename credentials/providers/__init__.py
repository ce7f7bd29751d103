"""AI providers behind one small interface (see base.py)."""

from credentials.providers.base import (
    ChatTurn,
    GenerationRequest,
    GenerationResult,
    MediaPart,
    Provider,
    ProviderError,
    provider_call,
)
from credentials.providers.keys import api_key
from credentials.providers.registry import provider_for

__all__ = [
    "ChatTurn", "GenerationRequest", "GenerationResult", "MediaPart", "Provider", "ProviderError",
    "api_key", "provider_call", "provider_for",
]
