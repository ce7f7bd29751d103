"""In-process emulator: the app on its own event loop in a daemon thread.

Python-telegram-bot, Celery workers and tests run their own loops (or none); the
emulator keeps answering long polls while the caller blocks. Each control method
(an operation of :class:`~.state.EmulatorState`, same name and signature) runs on
the emulator's loop, where the state lives, and returns a deep copy of the result.
"""

from __future__ import annotations

import copy
from typing import Any

from .._common.emulator import ServedEmulator
from .._common.ops import OpsCaller
from .server import create_app
from .state import EmulatorState

_CONTROL_TIMEOUT = 30.0


class TelegramEmulator(ServedEmulator, OpsCaller):
    """The Bot API on ``host:port`` (``port=0``: a free port)::

    with TelegramEmulator() as emu:
        token = emu.add_bot(username="shop_bot")["token"]
        emu.send_private_message(token, "hi")         # the update
        # telegram.Bot(token, base_url=emu.base_url, base_file_url=emu.base_file_url)
        emu.wait_for_sent(token, 1)                     # the bot's messages
    """

    _op_signatures = EmulatorState.op_signatures()

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int | None = None,
        call_log_size: int = 100_000,
        webhook_retry_base: float = 0.5,
    ) -> None:
        self.state = EmulatorState(
            seed=seed, call_log_size=call_log_size, webhook_retry_base=webhook_retry_base
        )
        # A big backlog: a benchmark opens about 1,000 long polls at once.
        super().__init__(host, port, lambda: create_app(self.state), "telegram", backlog=4096)

    @property
    def base_url(self) -> str:
        """python-telegram-bot's ``base_url`` (it appends ``<token>/<method>``)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """python-telegram-bot's ``base_file_url``."""
        return f"{self.url}/file/bot"

    def _invoke(self, op: str, kwargs: dict[str, Any], *, timeout: float | None = None) -> Any:
        async def copied() -> Any:
            return copy.deepcopy(await self.state.call(op, kwargs))

        return self._server.call(copied(), timeout or _CONTROL_TIMEOUT)
