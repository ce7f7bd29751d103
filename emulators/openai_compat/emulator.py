"""In-process OpenAI-compatible emulator: the aiohttp app on its own event loop in a daemon thread.

A separate loop/thread means sync tests (and the sync ``openai`` client)
can block on the emulator without deadlocking, and async tests running their
own loop are unaffected by it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from types import TracebackType

from aiohttp import web

from .server import create_app
from .state import (
    EmulatorConfig,
    EmulatorState,
    Fault,
    FaultKind,
    RecordedRequest,
    ReplyFn,
)

# Time a stop() grants in-flight handlers (e.g. a SLOW fault still sleeping)
# before they are cancelled; small because nobody is waiting for them.
_SHUTDOWN_TIMEOUT = 0.5


class OpenAICompatEmulator:
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
        self._host = host
        self._requested_port = port
        self._state = EmulatorState(
            EmulatorConfig(
                valid_keys=None if valid_keys is None else frozenset(valid_keys),
                known_models=None if known_models is None else frozenset(known_models),
                latency=latency,
                reply=reply,
            )
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # ---- lifecycle ----

    def start(self, timeout: float = 10.0) -> OpenAICompatEmulator:
        """Start listening; returns once the socket is bound (port 0 = a free port)."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._serve,
            args=(loop, ready, failure),
            name="openai-compat-emulator",
            daemon=True,
        )
        thread.start()
        if not ready.wait(timeout):
            loop.call_soon_threadsafe(loop.stop)
            raise TimeoutError("openai-compat emulator did not start in time")
        if failure:
            thread.join(timeout)
            raise failure[0]
        self._loop, self._thread = loop, thread
        return self

    def _serve(
        self, loop: asyncio.AbstractEventLoop, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(
            create_app(self._state),
            access_log=None,  # quiet tests; the standalone server has its own key-safe access log
            handle_signals=False,  # signals belong to the main thread / test runner
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
            # A client that gives up (timeout) cancels its handler, so a SLOW
            # fault does not keep working on an abandoned request.
            handler_cancellation=True,
        )
        try:
            loop.run_until_complete(runner.setup())
            # Large backlog: benchmarks open hundreds of connections at once.
            site = web.TCPSite(runner, self._host, self._requested_port, backlog=1024)
            loop.run_until_complete(site.start())
            self._port = int(runner.addresses[0][1])
        except BaseException as exc:  # surfaced to start() in the caller's thread
            failure.append(exc)
            ready.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            _cancel_leftovers(loop)
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = None
        self._port = None

    def __enter__(self) -> OpenAICompatEmulator:
        return self.start() if self._thread is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("emulator not started")
        return self._port

    @property
    def base_url(self) -> str:
        """Pass as ``OpenAI(base_url=...)``; includes ``/v1`` like the real ``https://api.openai.com/v1``."""
        return f"http://{self._host}:{self.port}/v1"

    # ---- control (thin delegation: EmulatorState is the single implementation) ----

    def add_fault(
        self,
        kind: FaultKind | str,
        times: int | None = 1,
        retry_after: float | None = None,
        delay: float | None = None,
        message: str | None = None,
    ) -> Fault:
        return self._state.add_fault(
            kind, times=times, retry_after=retry_after, delay=delay, message=message
        )

    def clear_faults(self) -> None:
        self._state.clear_faults()

    def pending_faults(self) -> list[Fault]:
        return self._state.pending_faults()

    def set_latency(self, seconds: float) -> None:
        self._state.set_latency(seconds)

    def set_valid_keys(self, keys: Iterable[str] | None) -> None:
        self._state.set_valid_keys(keys)

    def set_known_models(self, models: Iterable[str] | None) -> None:
        self._state.set_known_models(models)

    def script_replies(self, replies: Iterable[str]) -> None:
        self._state.script_replies(replies)

    def set_reply(self, fn: ReplyFn | None) -> None:
        self._state.set_reply(fn)

    def requests(self) -> list[RecordedRequest]:
        return self._state.requests()

    def clear_requests(self) -> None:
        self._state.clear_requests()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        return self._state.wait_for_requests(count, timeout)

    def reset(self) -> None:
        self._state.reset()

    def max_requests_in_window(self, seconds: float = 60.0, model: str | None = None) -> int:
        return self._state.max_requests_in_window(seconds, model=model)

    def requests_per_minute(self) -> dict[str, int]:
        return self._state.requests_per_minute()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    # Avoid "Task was destroyed but it is pending" noise at interpreter exit.
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
