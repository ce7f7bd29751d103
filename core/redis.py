"""The process's Redis clients, built on first use: the asyncio one (rate limits,
circuits), one per event loop (in practice the I/O loop's, core.aio), and a blocking
one for code outside any loop (the webhook view, Celery task threads)."""

import threading
from typing import Any

import redis
import redis.asyncio
from django.conf import settings

from core.aio import PerLoop

# Short timeouts so a dead Redis fails fast.
_OPTIONS: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 3, "health_check_interval": 30}

_async_clients: PerLoop[None, redis.asyncio.Redis] = PerLoop()


# Connections of one loop's pool. Thousands of answers, sends and AI calls may want Redis
# at the same moment; a blocking pool makes them queue for a connection instead of
# failing: the default asyncio pool raises "Too many connections" past 100, which under
# a burst failed hundreds of replies. A call holds its connection until the loop gets
# round to reading the answer, which under a burst of 2,000 answers is a whole loop
# iteration: 32 connections then made callers wait beyond 10 s and failed answers
# (the reaper redid them a minute later). Redis takes thousands of clients.
ASYNC_POOL_SIZE = 128
ASYNC_POOL_WAIT = 60.0  # seconds to wait for a free connection before giving up


def async_redis_client() -> redis.asyncio.Redis:
    """The running event loop's client (mostly the I/O loop's, core.aio): an asyncio
    connection pool belongs to the loop that opened its connections."""
    return _async_clients.get(None, _async_client_build)


def _async_client_build() -> redis.asyncio.Redis:
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.REDIS_URL, max_connections=ASYNC_POOL_SIZE, timeout=ASYNC_POOL_WAIT, **_OPTIONS
    )
    return redis.asyncio.Redis(connection_pool=pool)


_sync_clients: dict[str, redis.Redis] = {}
_sync_lock = threading.Lock()


def redis_client() -> redis.Redis:
    """The blocking client, shared by the process's threads (its pool is thread-safe),
    one per REDIS_URL (a test may point it elsewhere)."""
    url = settings.REDIS_URL
    client = _sync_clients.get(url)
    if client is None:
        with _sync_lock:
            client = _sync_clients.setdefault(url, redis.Redis.from_url(url, **_OPTIONS))
    return client
