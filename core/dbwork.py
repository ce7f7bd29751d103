"""Database work for coroutines on the process's I/O loop (core.aio).

Django's ORM is synchronous and must never run on the event-loop thread, where it would
stall every long poll, AI call and send of the process. So:

- `read(fn, *args)` runs `fn` on a small thread pool (reads run side by side);
- `write(fn, *args)` hands `fn` to the process's one writer thread, which runs every
  write submitted meanwhile in ONE transaction, a savepoint each. A burst of concurrent
  replies then costs a handful of commits instead of one per step: on SQLite, whose
  single writer lock makes every extra transaction wait (its busy handler sleeps 1-100
  ms), that is what decides throughput; on PostgreSQL it saves commit round trips.

One write failing rolls back its own savepoint only; the others commit. If the commit
itself fails (database gone), every write of that transaction gets the error. A deadlock
or serialization failure (PostgreSQL) runs the whole transaction again, a few times.

`write_many(kind, items_fn, item)` goes one step further for the writes every message
makes (stamping a part, recording it sent): items of one kind submitted while the writer
is busy become ONE call `items_fn(items)` — one UPDATE for fifty parts instead of fifty —
and each caller gets its own item's result back.
"""

import asyncio
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections, transaction

T = TypeVar("T")

READ_THREADS = 8
MAX_WRITES_PER_TRANSACTION = 500  # keeps one transaction (and the lock it holds) short

_Outcome = tuple[bool, Any]  # (succeeded, result or exception)


# PostgreSQL's answers that mean "nothing wrong with the writes, run them again":
# deadlock detected, serialization failure.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
TRANSACTION_ATTEMPTS = 4


class _Retry(Exception):
    """Raised inside the transaction to roll all of it back and run it again."""


def _transaction_run(fns: list[Callable[[], Any]]) -> list[_Outcome]:
    """The writes in one transaction. Two processes' writers batch different rows in
    different orders (a bot's counters and usage rows are in many batches), so on
    PostgreSQL they can deadlock; the database then fails one of them, and the whole
    transaction is run again (its writes are database work only, safe to repeat) rather
    than failing answers that were fine. Found under a webhook burst with 2 workers."""
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        last = attempt == TRANSACTION_ATTEMPTS
        try:
            with transaction.atomic():
                if len(fns) == 1:  # alone: its failure is the transaction's, no savepoint
                    return [(True, fns[0]())]
                outcomes = [_savepoint_run(fn) for fn in fns]
                if not last and any(not ok and retryable(result) for ok, result in outcomes):
                    raise _Retry
                return outcomes
        except _Retry:
            pass
        except Exception as error:  # the commit failed (or the only write did)
            if last or not retryable(error):
                return [(False, error)] * len(fns)
        time.sleep(random.uniform(0.005, 0.05) * attempt)  # the other side gets ahead
    raise AssertionError("unreachable: the last attempt returns")


def _writer_run(fns: list[Callable[[], Any]]) -> list[_Outcome]:
    close_old_connections()  # drop a connection the database closed meanwhile
    return _transaction_run(fns)


def transaction_retrying(fn: Callable[[], T]) -> T:
    """`fn` in a transaction of its own, run again as the writer's are (for code outside
    the I/O loop: a Celery task's store)."""
    (succeeded, result), = _transaction_run([fn])
    if not succeeded:
        raise result
    return result  # type: ignore[no-any-return]


def retryable(error: BaseException) -> bool:
    """A deadlock or serialization failure: the transaction, run again, will do."""
    cause = error.__cause__ if error.__cause__ is not None else error
    return getattr(cause, "sqlstate", None) in RETRYABLE_SQLSTATES


def _savepoint_run(fn: Callable[[], Any]) -> _Outcome:
    try:
        with transaction.atomic():  # a savepoint: a failure spoils only itself
            return (True, fn())
    except Exception as error:
        return (False, error)


class _Items:
    """Items of one kind waiting for the writer: run as one call, answered one by one."""

    def __init__(self, kind: str, items_fn: Callable[[list[Any]], list[Any]]) -> None:
        self.kind, self.items_fn = kind, items_fn
        self.items: list[Any] = []
        self.futures: list[asyncio.Future[Any]] = []

    def __call__(self) -> list[Any]:
        results = self.items_fn(self.items)
        if len(results) != len(self.items):
            raise RuntimeError(f"{self.items_fn.__name__} answered {len(results)} of {len(self.items)} items")
        return results

    def answer(self, future: "asyncio.Future[Any]") -> None:
        """Hand each item's caller its result (or the whole call's error)."""
        for index, item_future in enumerate(self.futures):
            if item_future.done():
                continue
            if future.cancelled():
                item_future.cancel()
            elif future.exception() is not None:
                item_future.set_exception(future.exception())  # type: ignore[arg-type]
            else:
                item_future.set_result(future.result()[index])


class _Writer:
    """Coalesces the writes of one process into shared transactions (see module doc)."""

    def __init__(self) -> None:
        self._queue: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._open: dict[str, _Items] = {}  # kinds whose items the writer has not taken yet
        self._draining = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="db-writer")

    async def write(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._enqueue(fn, future)
        return await future

    async def write_many(self, kind: str, items_fn: Callable[[list[Any]], list[T]], item: Any) -> T:
        loop = asyncio.get_running_loop()
        pending = self._open.get(kind)
        if pending is None:
            pending = self._open[kind] = _Items(kind, items_fn)
            whole: asyncio.Future[list[Any]] = loop.create_future()
            whole.add_done_callback(pending.answer)
            self._enqueue(pending, whole)
        future: asyncio.Future[T] = loop.create_future()
        pending.items.append(item)
        pending.futures.append(future)
        return await future

    def _enqueue(self, fn: Callable[[], Any], future: "asyncio.Future[Any]") -> None:
        self._queue.append((fn, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._queue[:MAX_WRITES_PER_TRANSACTION]
                del self._queue[:MAX_WRITES_PER_TRANSACTION]
                fns = [fn for fn, _ in batch]
                for fn in fns:  # taken: items of these kinds from now on start a new call
                    if isinstance(fn, _Items) and self._open.get(fn.kind) is fn:
                        del self._open[fn.kind]
                try:
                    outcomes = await loop.run_in_executor(self._thread, _writer_run, fns)
                except BaseException as error:  # the executor itself failed (shutting down)
                    outcomes = [(False, error)] * len(batch)
                for (_, future), (succeeded, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue  # its awaiting coroutine was cancelled
                    if succeeded:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._draining = False

    def shutdown(self) -> None:
        self._thread.shutdown(wait=True)


_lock = threading.Lock()
_writer: _Writer | None = None
_readers: ThreadPoolExecutor | None = None


def _the_writer() -> _Writer:
    global _writer
    with _lock:
        if _writer is None:
            _writer = _Writer()
        return _writer


def _the_readers() -> ThreadPoolExecutor:
    global _readers
    with _lock:
        if _readers is None:
            _readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="db-reader")
        return _readers


async def write(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` in the process's next write transaction; await its result."""
    return await _the_writer().write(lambda: fn(*args))


async def write_many(kind: str, items_fn: Callable[[list[Any]], list[T]], item: Any) -> T:
    """Run `items_fn` in the process's next write transaction over every item of this
    `kind` submitted until then; await this item's result (`items_fn` returns one result
    per item, in order)."""
    return await _the_writer().write_many(kind, items_fn, item)


async def read(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` (ORM reads) on a reader thread; await its result."""
    def run() -> T:
        close_old_connections()
        return fn(*args)

    return await asyncio.get_running_loop().run_in_executor(_the_readers(), run)


def shutdown() -> None:
    """Stop the writer and reader threads (their database connections go with them).
    The next use starts fresh ones."""
    global _writer, _readers
    with _lock:
        writer, readers, _writer, _readers = _writer, _readers, None, None
    if writer is not None:
        writer.shutdown()
    if readers is not None:
        readers.shutdown(wait=True)
