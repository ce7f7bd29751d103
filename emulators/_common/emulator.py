"""Bases of the in-process emulators: lifecycle and context manager (``ServedEmulator``),
and the control methods the Gemini and OpenAI-compatible emulators share
(``InProcessEmulator``: thin delegation to their state, which the HTTP control API calls too).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Generic, Self

from aiohttp import web

from .runner import ThreadedServer, serve_until_signalled
from .state import DEFAULT_CHUNK_DELAY, DEFAULT_FIRST_CHUNK_DELAY, EmulatorStateBase, FaultT, RecT


class ServedEmulator:
    """An app served on its own loop in a daemon thread; a subclass defines ``base_url``."""

    def __init__(
        self,
        host: str,
        port: int,
        create_app: Callable[[], web.Application],
        label: str,
        backlog: int = 1024,
    ) -> None:
        self._host = host
        # The app is built on the server's own thread, where its loop runs.
        self._server = ThreadedServer(create_app, host, port, label, backlog)

    def start(self, timeout: float = 10.0) -> Self:
        """Start listening; returns once the socket is bound (port 0 = a free port)."""
        self._server.start(timeout)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._server.stop(timeout)

    def __enter__(self) -> Self:
        return self.start() if not self._server.started else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def serve_until_signalled(self, announce: Callable[[int], str]) -> None:
        """Standalone use: serve until SIGINT or SIGTERM, printing ``announce(port)`` when up."""
        serve_until_signalled(self._server, announce)

    @property
    def port(self) -> int:
        port = self._server.port
        if port is None:
            raise RuntimeError("emulator not started")
        return port

    @property
    def url(self) -> str:
        """The server's root, e.g. ``http://127.0.0.1:8081``."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        raise NotImplementedError


class InProcessEmulator(ServedEmulator, Generic[RecT, FaultT]):
    """A subclass builds its state, passes its ``create_app`` and defines ``base_url``."""

    def __init__(
        self,
        host: str,
        port: int,
        state: EmulatorStateBase[RecT, FaultT],
        # Takes the emulator's own state subclass, hence Any here.
        create_app: Callable[[Any], web.Application],
        label: str,
    ) -> None:
        self._state = state
        super().__init__(host, port, lambda: create_app(state), label)

    # ---- control (thin delegation: the state is the single implementation) ----

    def add_fault(
        self,
        kind: enum.StrEnum | str,
        times: int | None = 1,
        retry_after: float | None = None,
        delay: float | None = None,
        message: str | None = None,
        after_chunks: int | None = None,
    ) -> FaultT:
        return self._state.add_fault(
            kind,
            times=times,
            retry_after=retry_after,
            delay=delay,
            message=message,
            after_chunks=after_chunks,
        )

    def clear_faults(self) -> None:
        self._state.clear_faults()

    def pending_faults(self) -> list[FaultT]:
        return self._state.pending_faults()

    def set_latency(self, seconds: float) -> None:
        self._state.set_latency(seconds)

    def set_stream_timing(
        self,
        first_chunk_delay: float = DEFAULT_FIRST_CHUNK_DELAY,
        chunk_delay: float = DEFAULT_CHUNK_DELAY,
        chunks: int | None = None,
    ) -> None:
        self._state.set_stream_timing(first_chunk_delay, chunk_delay, chunks)

    def set_valid_keys(self, keys: Iterable[str] | None) -> None:
        self._state.set_valid_keys(keys)

    def set_known_models(self, models: Iterable[str] | None) -> None:
        self._state.set_known_models(models)

    def script_replies(self, replies: Iterable[str]) -> None:
        self._state.script_replies(replies)

    def set_reply(self, fn: Callable[[RecT], str] | None) -> None:
        self._state.set_reply(fn)

    def requests(self) -> list[RecT]:
        return self._state.requests()

    def clear_requests(self) -> None:
        self._state.clear_requests()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecT]:
        return self._state.wait_for_requests(count, timeout)

    def reset(self) -> None:
        self._state.reset()

    def max_requests_in_window(self, seconds: float = 60.0, model: str | None = None) -> int:
        return self._state.max_requests_in_window(seconds, model=model)

    def requests_per_minute(self) -> dict[str, int]:
        return self._state.requests_per_minute()
