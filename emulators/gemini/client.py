"""Sync control client for a standalone emulator (``python -m emulators.gemini``).

Method names and signatures mirror ``GeminiEmulator`` so a test helper can
drive either one; ``set_reply`` is the exception (a Python callable cannot
cross HTTP; use ``script_replies``). The methods are ``emulators._common.client``.
"""

from __future__ import annotations

from .._common import client as common
from .state import Fault, RecordedRequest


class EmulatorControlError(common.EmulatorControlError):
    """A control call failed in a way that is not a ValueError or TimeoutError."""


class GeminiEmulatorClient(common.EmulatorControlClient[RecordedRequest, Fault]):
    _record_type = RecordedRequest
    _fault_type = Fault
    _error_type = EmulatorControlError

    def __init__(self, base_url: str = "http://127.0.0.1:8082", timeout: float = 10.0) -> None:
        super().__init__(base_url, timeout)
