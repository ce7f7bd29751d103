"""Gemini API (generativelanguage REST) emulator for tests and local runs.

Importing this package only defines classes; nothing listens until
``GeminiEmulator.start()`` or ``python -m emulators.gemini``.
"""

from .client import EmulatorControlError, GeminiEmulatorClient
from .emulator import GeminiEmulator
from .state import DEFAULT_KNOWN_MODELS, Fault, FaultKind, MediaPart, RecordedRequest, Turn

__all__ = [
    "DEFAULT_KNOWN_MODELS",
    "EmulatorControlError",
    "Fault",
    "FaultKind",
    "GeminiEmulator",
    "GeminiEmulatorClient",
    "MediaPart",
    "RecordedRequest",
    "Turn",
]
