"""In-process emulator: the aiohttp server on its own event loop in a daemon thread.

Why a separate thread/loop: python-telegram-bot, Celery workers and tests all run
their own loops (or none); the emulator must keep answering long-polls while the
caller blocks. Control methods are synchronous and thread-safe: they submit the
operation to the emulator loop (``run_coroutine_threadsafe``) where the state
lives, and return a deep copy of the result.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from types import TracebackType
from typing import Any

from aiohttp import web

from .control import ControlAPI
from .server import start_server
from .state import EmulatorState

_DEFAULT_CONTROL_TIMEOUT = 30.0


class TelegramEmulator(ControlAPI):
    """A Telegram Bot API emulator listening on ``host:port`` (``port=0`` = any free port).

    Usage::

        with TelegramEmulator() as emu:
            bot = emu.add_bot(username="shop_bot")
            async with telegram.Bot(bot["token"], base_url=emu.base_url,
                                    base_file_url=emu.base_file_url) as tg: ...
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int | None = None,
        strict_html_ampersand: bool = True,
        call_log_size: int = 100_000,
        control_api: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.state = EmulatorState(
            seed=seed, strict_html_ampersand=strict_html_ampersand, call_log_size=call_log_size
        )
        self._control_api = control_api
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopped: asyncio.Event | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 10.0) -> TelegramEmulator:
        """Start serving; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # surface startup errors to start()
                failure.append(exc)
                ready.set()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(
            target=run, name=f"telegram-emulator-{self.port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("telegram emulator did not start in time")
        if failure:
            self._thread = None
            raise RuntimeError("telegram emulator failed to start") from failure[0]
        return self

    async def _serve(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        self.state.closing = False  # allow start() again after stop()
        self._runner, self.port = await start_server(
            self.state, self.host, self.port, control_api=self._control_api
        )
        ready.set()
        try:
            await self._stopped.wait()
        finally:
            self.state.shutdown()  # answer waiting long-polls so cleanup is quick
            await self._runner.cleanup()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread (idempotent)."""
        thread, loop, stopped = self._thread, self._loop, self._stopped
        if thread is None or loop is None or stopped is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> TelegramEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- URLs

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:8081``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Pass as PTB's ``base_url`` (PTB appends ``<token>/<method>``)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """Pass as PTB's ``base_file_url``."""
        return f"{self.url}/file/bot"

    # ---------------------------------------------------------------- control plumbing

    def _invoke(self, op: str, kwargs: dict[str, Any], *, timeout: float | None = None) -> Any:
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("emulator is not running; call start() first")
        if threading.current_thread() is self._thread:
            raise RuntimeError("blocking control call from the emulator's own loop would deadlock")
        future = asyncio.run_coroutine_threadsafe(self._call_copy(op, kwargs), loop)
        return future.result(timeout or _DEFAULT_CONTROL_TIMEOUT)

    async def _call_copy(self, op: str, kwargs: dict[str, Any]) -> Any:
        # Deep-copy on the emulator loop so callers never share mutable state with it.
        return copy.deepcopy(await self.state.call_control(op, kwargs))

    async def acall(self, op: str, **kwargs: Any) -> Any:
        """Await a control operation from *another* asyncio loop without blocking it.

        Use this inside async tests where the PTB bot runs on the caller's loop, e.g.
        ``await emu.acall("wait_for_sent", token=t, count=1)``.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("emulator is not running; call start() first")
        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self._call_copy(op, kwargs), loop)
        )
