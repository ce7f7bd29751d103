"""Is the system able to work? Database, Redis and Celery workers, each asked with a
short timeout, plus the Redis-side figures the dashboard shows (queue depths, live
workers).

Every check runs in a daemon thread of its own and the caller waits for all of them
together up to one deadline: a dependency that hangs (a black-holed Redis, a database
that accepts the connection and never answers, kombu retrying a publish) cannot hold
the answer past it. A thread left behind ends when its own socket timeout fires.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from config.celery import app as celery_app

log = logging.getLogger(__name__)

QUEUES = ("polling", "replies", "scheduled", "default")
# Kombu's Redis transport keeps each queue as one list per priority step: the queue's
# own name for priority 0, then "<name>\x06\x16<step>" (kombu.transport.redis).
_KOMBU_PRIORITY_SEP = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
WORKERS_CACHE_KEY = "dashboard:live-workers"


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str  # said to anonymous callers of /readyz: no host names, no URLs
    ms: int


class CheckFailed(Exception):
    """A check's answer was "no", with a reason safe to show anyone."""


def _redis(timeout: float) -> redis.Redis:
    # Built per call, not shared: the timeouts are this module's own (shorter than the
    # process client's), and a test may point REDIS_URL elsewhere.
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout
    )


def database_check(timeout: float) -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()  # this thread's own connection: nobody else will close it
    return "answered"


def redis_check(timeout: float) -> str:
    client = _redis(timeout)
    try:
        client.ping()
    finally:
        client.close()
    return "answered"


def workers_ping(timeout: float, *, limit: int | None = None) -> list[str]:
    """Names of the Celery workers that answer a broadcast ping within `timeout`.

    With `limit`, returns as soon as that many answered (a ping otherwise waits the
    whole timeout, since it cannot know how many workers there are).
    """
    # The broker URL is read from settings on every call, like REDIS_URL above. Socket
    # timeouts of our own: kombu's default is none, and a hung Redis would then keep
    # this thread waiting for ever.
    options = {
        **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "socket_timeout": timeout + 1, "socket_connect_timeout": timeout,
    }
    with celery_app.connection_for_write(
        settings.CELERY_BROKER_URL, connect_timeout=timeout, transport_options=options
    ) as conn:
        # max_retries=0: fail now when the broker is down, instead of kombu's default of
        # retrying the connection for ever.
        # celery-types' kombu stub says int; kombu adds it to time() and takes a float.
        conn.ensure_connection(max_retries=0, timeout=timeout)  # type: ignore[arg-type]
        replies = celery_app.control.inspect(timeout=timeout, connection=conn, limit=limit).ping()
    return sorted(replies or {})  # {worker name: {"ok": "pong"}}, or None when none answered


def workers_check(timeout: float) -> str:
    names = workers_ping(timeout, limit=1)
    if not names:
        raise CheckFailed(f"no Celery worker answered a ping within {timeout:g} s")
    return "a worker answered"


READINESS_CHECKS: dict[str, Callable[[float], str]] = {
    "database": database_check,
    "redis": redis_check,
    "workers": workers_check,
}


def readiness(timeout: float | None = None) -> dict[str, CheckResult]:
    """Run every readiness check side by side; each gets `timeout` seconds."""
    timeout = settings.HEALTH_CHECK_TIMEOUT if timeout is None else timeout
    results: dict[str, CheckResult] = {}
    threads = [
        threading.Thread(target=_run_check, args=(name, check, timeout, results), daemon=True)
        for name, check in READINESS_CHECKS.items()
    ]
    deadline = time.monotonic() + timeout + 0.5  # the checks' own timeouts, plus slack
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for name in READINESS_CHECKS:
        results.setdefault(name, CheckResult(False, f"no answer within {timeout:g} s", int(timeout * 1000)))
    return {name: results[name] for name in READINESS_CHECKS}


def _run_check(
    name: str, check: Callable[[float], str], timeout: float, results: dict[str, CheckResult]
) -> None:
    started = time.monotonic()
    try:
        detail, ok = check(timeout), True
    except CheckFailed as failure:
        detail, ok = str(failure), False
    except Exception as error:  # any failure of a dependency means "not ready", said safely
        log.warning("readiness check %s failed: %s", name, error)
        detail, ok = f"unavailable ({type(error).__name__})", False
    results[name] = CheckResult(ok, detail, int((time.monotonic() - started) * 1000))


def queue_depths(timeout: float | None = None) -> dict[str, int] | None:
    """Messages waiting in each Celery queue (Redis LLEN), or None if Redis is down."""
    client = _redis(settings.HEALTH_CHECK_TIMEOUT if timeout is None else timeout)
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in QUEUES:
                for key in _queue_keys(queue):
                    pipe.llen(key)
            lengths = pipe.execute()
    except redis.RedisError as error:
        log.warning("queue depths unavailable: %s", error)
        return None
    finally:
        client.close()
    steps = len(_KOMBU_PRIORITY_STEPS)
    return {queue: sum(lengths[i * steps:(i + 1) * steps]) for i, queue in enumerate(QUEUES)}


def _queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{_KOMBU_PRIORITY_SEP}{step}" for step in _KOMBU_PRIORITY_STEPS]


def live_workers() -> list[str] | None:
    """Workers that answered a ping, reused for a few seconds (None: could not ask)."""
    cached = cache.get(WORKERS_CACHE_KEY)
    if cached is not None:
        cached_names: list[str] | None = cached["names"]
        return cached_names
    try:
        names: list[str] | None = workers_ping(min(settings.HEALTH_CHECK_TIMEOUT, 0.5))
    except Exception as error:  # the broker is down: the dashboard says "unknown"
        log.warning("could not ping the workers: %s", error)
        names = None
    cache.set(WORKERS_CACHE_KEY, {"names": names}, settings.DASHBOARD_WORKERS_CACHE_SECONDS)
    return names
