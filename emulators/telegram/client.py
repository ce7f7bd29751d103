"""The control operations of an emulator in another process (``python -m emulators.telegram``),
with the same names and signatures as :class:`~.emulator.TelegramEmulator`'s::

    emu = EmulatorClient("http://127.0.0.1:8081")
    token = emu.add_bot()["token"]
    emu.send_private_message(token, "hi")
"""

from __future__ import annotations

from .._common.client import OpsClient
from .state import EmulatorState


class EmulatorClient(OpsClient):
    _op_signatures = EmulatorState.op_signatures()

    def __init__(self, url: str = "http://127.0.0.1:8081", *, timeout: float = 30.0) -> None:
        super().__init__(url, timeout=timeout)

    @property
    def base_url(self) -> str:
        """python-telegram-bot's ``base_url``."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """python-telegram-bot's ``base_file_url``."""
        return f"{self.url}/file/bot"
