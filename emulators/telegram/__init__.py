"""Telegram Bot API emulator for tests, demos and benchmarks (nothing talks to api.telegram.org).

In-process (own event loop in a daemon thread)::

    from emulators.telegram import TelegramEmulator
    with TelegramEmulator() as emu:                      # port=0: any free port
        token = emu.add_bot(username="shop_bot")["token"]
        emu.send_private_message(token, "hi")            # -> Update dict
        # telegram.Bot(token, base_url=emu.base_url, base_file_url=emu.base_file_url)
        emu.wait_for_sent(token, 1)                      # -> sent-message records
        # inside a coroutine that shares a loop with a PTB bot, don't block:
        #   await emu.acall("wait_for_sent", token=token, count=1)

Out of process: ``python -m emulators.telegram --host 127.0.0.1 --port 8081`` and
``EmulatorClient("http://127.0.0.1:8081")``, which has the same control methods,
each a ``POST /_emulator/<method>`` with the keyword arguments as a JSON object
(``GET /_emulator`` lists them).

* :class:`TelegramEmulator` – in-process server + blocking, thread-safe control methods.
* :class:`EmulatorClient` – the same control methods over HTTP.
* :class:`EmulatorState` – the single implementation of all state and control operations.

Importing this package starts nothing.
"""

from .client import EmulatorClient
from .emulator import TelegramEmulator
from .errors import ApiError, EmulatorError
from .state import EmulatorState

__all__ = ["ApiError", "EmulatorClient", "EmulatorError", "EmulatorState", "TelegramEmulator"]
