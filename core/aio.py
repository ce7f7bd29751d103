"""One asyncio event loop per process, in a daemon thread, for all network I/O:
Telegram, the AI providers, and the Redis calls around them (rate limits, circuit).

Why: python-telegram-bot is async and a `telegram.Bot` is bound to the loop it was
initialised in. A fresh `asyncio.run()` per call would rebuild HTTP clients (and their
TLS contexts) every time; one long-lived loop keeps one client per bot with warm
keep-alive connections, and lets hundreds of long-polls and AI calls wait at once
without holding a worker thread each. Sync code (Celery tasks, services) calls `run()`
or `submit()`; code already on the loop awaits instead.
"""

import asyncio
import atexit
import os
import threading
from collections.abc import Callable, Coroutine, Hashable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

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
    if _loop is not None and _running_loop() is _loop:
        coro.close()  # never awaited: close it so Python does not warn about that too
        # Waiting here would block the very loop that must run `coro`: a deadlock.
        raise RuntimeError("aio.run() called on the I/O loop's own thread; await the coroutine")
    future = submit(coro)
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class PerLoop(Generic[K, T]):
    """One value per (running event loop, key), built on first use on that loop.

    Async clients (redis.asyncio, aiohttp and httpx pools) hold connections bound to the
    loop that opened them; used from another loop they fail ("attached to a different
    loop", "Event loop is closed"). Our calls run on the I/O loop, but a test's
    `asyncio.run()` or a forked child's new loop must not inherit them. Values of closed
    loops are dropped: their loop can no longer run an `aclose()`, so the garbage
    collector releases their sockets.
    """

    def __init__(self) -> None:
        self._values: dict[tuple[asyncio.AbstractEventLoop, K], T] = {}
        self._lock = threading.Lock()  # loops of several threads may ask at once

    def get(self, key: K, build: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        with self._lock:
            for stale in [k for k in self._values if k[0].is_closed()]:
                del self._values[stale]
            value = self._values.get((loop, key))
            if value is None:
                value = self._values[(loop, key)] = build()
            return value


def _stop_at_exit() -> None:
    if _loop is not None and _loop_pid == os.getpid() and _loop.is_running():
        _loop.call_soon_threadsafe(_loop.stop)


atexit.register(_stop_at_exit)
