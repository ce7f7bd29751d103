"""Synchronous HTTP client for an emulator running in another process.

Mirrors :class:`~.emulator.TelegramEmulator`'s control methods (both inherit
:class:`~.control.ControlAPI`), so demo/benchmark code can drive either::

    emu = EmulatorClient("http://127.0.0.1:8081")
    bot = emu.add_bot()
    emu.send_private_message(bot["token"], "hi")
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import httpx

from .control import ControlAPI
from .errors import EmulatorError

# Exception types the control API reports by name and that we re-raise as such.
_ERRORS: dict[str, type[Exception]] = {
    "TimeoutError": TimeoutError,
    "KeyError": KeyError,
    "LookupError": LookupError,
    "ValueError": ValueError,
    "TypeError": TypeError,
    "AttributeError": AttributeError,
}


class EmulatorClient(ControlAPI):
    """Control an emulator over its ``/_emulator/...`` HTTP API (thread-safe, keep-alive)."""

    def __init__(self, url: str = "http://127.0.0.1:8081", *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout)

    @property
    def base_url(self) -> str:
        """Pass as PTB's ``base_url``."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """Pass as PTB's ``base_file_url``."""
        return f"{self.url}/file/bot"

    def _invoke(self, op: str, kwargs: dict[str, Any], *, timeout: float | None = None) -> Any:
        body = {k: v for k, v in kwargs.items() if v is not None}
        request_timeout = httpx.Timeout(timeout) if timeout else httpx.USE_CLIENT_DEFAULT
        response = self._client.post(f"/_emulator/{op}", json=body, timeout=request_timeout)
        try:
            payload = response.json()
        except ValueError:
            raise EmulatorError(
                f"{op}: HTTP {response.status_code}: {response.text[:200]}"
            ) from None
        if payload.get("ok"):
            return payload.get("result")
        error_type = _ERRORS.get(payload.get("type", ""), EmulatorError)
        raise error_type(f"{op}: {payload.get('error')}")

    def wait_until_up(self, timeout: float = 10.0) -> None:
        """Poll until the emulator answers (useful right after spawning it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.stats()
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"telegram emulator at {self.url} did not come up in {timeout}s"
                    ) from None
                time.sleep(0.05)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EmulatorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
