"""In-process Gemini emulator: the aiohttp app on its own event loop in a daemon thread.

Lifecycle and control methods are ``emulators._common.emulator``; this is the
Gemini constructor (defaults, model-name normalisation) and its base URL.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._common.emulator import InProcessEmulator
from .server import create_app
from .state import DEFAULT_KNOWN_MODELS, EmulatorState, Fault, RecordedRequest, ReplyFn


class GeminiEmulator(InProcessEmulator[RecordedRequest, Fault]):
    """Gemini REST emulator for tests.

    >>> with GeminiEmulator(valid_keys={"test-key"}) as emu:
    ...     client = genai.Client(api_key="test-key",
    ...                           http_options=types.HttpOptions(base_url=emu.base_url))
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        valid_keys: Iterable[str] | None = None,
        known_models: Iterable[str] | None = DEFAULT_KNOWN_MODELS,
        latency: float = 0.0,
        reply: ReplyFn | None = None,
    ) -> None:
        state = EmulatorState.configured(
            valid_keys=valid_keys, known_models=known_models, latency=latency, reply=reply
        )
        super().__init__(host, port, state, create_app, label="gemini")

    @property
    def base_url(self) -> str:
        """Pass as ``HttpOptions(base_url=...)``; the client appends ``/{api_version}/models/...``."""
        return f"http://{self._host}:{self.port}"
