"""OpenAI-compatible chat completions emulator for tests and local runs.

Importing this package only defines classes; nothing listens until
``OpenAICompatEmulator.start()`` or ``python -m emulators.openai_compat``.
"""

from .client import EmulatorControlError, OpenAICompatEmulatorClient
from .emulator import OpenAICompatEmulator
from .state import (
    DEFAULT_LISTED_MODELS,
    ChatMessage,
    Fault,
    FaultKind,
    MediaPart,
    RecordedRequest,
)

__all__ = [
    "DEFAULT_LISTED_MODELS",
    "ChatMessage",
    "EmulatorControlError",
    "Fault",
    "FaultKind",
    "MediaPart",
    "OpenAICompatEmulator",
    "OpenAICompatEmulatorClient",
    "RecordedRequest",
]
