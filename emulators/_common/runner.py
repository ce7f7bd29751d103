"""An aiohttp app served on its own event loop in a daemon thread.

A separate loop/thread means sync tests (and sync clients such as google-genai,
``openai`` or plain httpx) can block on the emulator without deadlocking, and
async tests running their own loop are unaffected by it.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")

# Time a stop() grants in-flight handlers (e.g. a SLOW fault still sleeping)
# before they are cancelled; small because nobody is waiting for them.
_SHUTDOWN_TIMEOUT = 0.5


class ThreadedServer:
    """Starts and stops one app; ``label`` names the thread and start-up errors."""

    def __init__(
        self,
        create_app: Callable[[], web.Application],
        host: str,
        port: int,
        label: str,
        backlog: int = 1024,
    ) -> None:
        self._create_app = create_app
        self._host = host
        self._requested_port = port
        self._label = label
        self._backlog = backlog
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def port(self) -> int | None:
        """The bound port while running, else None."""
        return self._port

    def start(self, timeout: float = 10.0) -> None:
        """Start listening; returns once the socket is bound (port 0 = a free port)."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._serve,
            args=(loop, ready, failure),
            name=f"{self._label}-emulator",
            daemon=True,
        )
        thread.start()
        if not ready.wait(timeout):
            loop.call_soon_threadsafe(loop.stop)
            raise TimeoutError(f"{self._label} emulator did not start in time")
        if failure:
            thread.join(timeout)
            raise failure[0]
        self._loop, self._thread = loop, thread

    def _serve(
        self, loop: asyncio.AbstractEventLoop, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(
            self._create_app(),
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
            site = web.TCPSite(runner, self._host, self._requested_port, backlog=self._backlog)
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

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the server's loop and wait for its result, from another thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or threading.current_thread() is thread:
            coro.close()
            problem = "is not running" if thread is None else "would deadlock its own loop"
            raise RuntimeError(f"a blocking call to the {self._label} emulator {problem}")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


def serve_until_signalled(server: ThreadedServer, announce: Callable[[int], str]) -> None:
    """Standalone use: start ``server``, print ``announce(port)`` once it listens (the real
    port when 0 was asked for), serve until SIGINT or SIGTERM, then stop it."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(announce(server.port or 0), flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    # Avoid "Task was destroyed but it is pending" noise at interpreter exit.
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
