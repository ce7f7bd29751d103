"""Telegram Bot API emulator for tests, the demo and benchmarks: the methods Botfleet
calls, with Telegram's answers, errors, long polls, webhooks and files.

In-process (its own loop in a daemon thread)::

    with TelegramEmulator() as emu:
        token = emu.add_bot(username="shop_bot")["token"]
        emu.send_private_message(token, "hi")
        # telegram.Bot(token, base_url=emu.base_url, base_file_url=emu.base_file_url)
        emu.wait_for_sent(token, 1)

Out of process: ``python -m emulators.telegram --port 8081`` and
``EmulatorClient("http://127.0.0.1:8081")``, with the same control methods. They are
the operations of :class:`EmulatorState` (``GET /_emulator`` lists them).

Importing this package starts nothing.
"""

from .client import EmulatorClient
from .emulator import TelegramEmulator
from .errors import ApiError
from .state import EmulatorState, FaultKind

__all__ = ["ApiError", "EmulatorClient", "EmulatorState", "FaultKind", "TelegramEmulator"]
