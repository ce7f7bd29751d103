"""In-process OpenAI-compatible emulator: the aiohttp app on its own event loop in a daemon thread.

Lifecycle and control methods are ``emulators._common.emulator``; this is the
constructor (any model accepted by default) and the ``/v1`` base URL.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._common.emulator import InProcessEmulator
from .server import create_app
from .state import EmulatorState, Fault, RecordedRequest, ReplyFn


class OpenAICompatEmulator(InProcessEmulator[RecordedRequest, Fault]):
    """OpenAI-compatible chat completions emulator for tests.

    >>> with OpenAICompatEmulator(valid_keys={"sk-test"}) as emu:
    ...     client = openai.OpenAI(api_key="sk-test", base_url=emu.base_url, max_retries=0)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        valid_keys: Iterable[str] | None = None,
        known_models: Iterable[str] | None = None,
        latency: float = 0.0,
        reply: ReplyFn | None = None,
    ) -> None:
        state = EmulatorState.configured(
            valid_keys=valid_keys, known_models=known_models, latency=latency, reply=reply
        )
        super().__init__(host, port, state, create_app, label="openai-compat")

    @property
    def base_url(self) -> str:
        """Pass as ``OpenAI(base_url=...)``; includes ``/v1`` like the real ``https://api.openai.com/v1``."""
        return f"http://{self._host}:{self.port}/v1"
