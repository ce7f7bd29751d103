"""Sync control client for a standalone emulator (``python -m emulators.openai_compat``).

Method names and signatures mirror ``OpenAICompatEmulator`` so a test helper can
drive either one; ``set_reply`` is the exception (a Python callable cannot
cross HTTP; use ``script_replies``). The methods are ``emulators._common.client``.
"""

from __future__ import annotations

from .._common import client as common
from .state import Fault, RecordedRequest


class EmulatorControlError(common.EmulatorControlError):
    """A control call failed in a way that is not a ValueError or TimeoutError."""


class OpenAICompatEmulatorClient(common.EmulatorControlClient[RecordedRequest, Fault]):
    _record_type = RecordedRequest
    _fault_type = Fault
    _error_type = EmulatorControlError

    def __init__(self, base_url: str = "http://127.0.0.1:8083", timeout: float = 10.0) -> None:
        super().__init__(base_url, timeout)

    @staticmethod
    def _server_root(base_url: str) -> str:
        # Accept the API base URL too (".../v1"): the control API lives at the server root.
        return base_url.rstrip("/").removesuffix("/v1")
