"""One asyncio event loop per process, in a daemon thread, for all Telegram I/O.

Why: python-telegram-bot is async and a `telegram.Bot` is bound to the loop it was
initialised in. A fresh `asyncio.run()` per call would rebuild HTTP clients (and their
TLS contexts) every time; one long-lived loop keeps one client per bot with warm
keep-alive connections, and lets hundreds of long-polls wait at once without holding a
worker thread each. Sync code (Celery tasks, services) calls `run()` or `submit()`.
"""

import asyncio
import atexit
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The process's I/O loop, started on first use (never at import)."""
    global _loop, _loop_pid
    with _lock:
        # A forked child (prefork pool) inherits a dead copy of the parent's loop.
        if _loop is None or _loop_pid != os.getpid() or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            _loop_pid = os.getpid()
            thread = threading.Thread(
                target=_loop.run_forever, name="telegram-io", daemon=True
            )
            thread.start()
        return _loop


def submit(coro: Coroutine[Any, Any, T]) -> "Future[T]":
    """Schedule on the I/O loop; returns at once with a thread-safe future."""
    return asyncio.run_coroutine_threadsafe(coro, loop())


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run on the I/O loop and wait for the result (from any thread but the loop's)."""
    future = submit(coro)
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise


def _stop_at_exit() -> None:
    if _loop is not None and _loop_pid == os.getpid() and _loop.is_running():
        _loop.call_soon_threadsafe(_loop.stop)


atexit.register(_stop_at_exit)
