"""The process's Redis client (rate limits, circuits), built on first use, one per
event loop (in practice the I/O loop's, config.aio)."""

from typing import Any

import redis.asyncio
from django.conf import settings

from config.aio import PerLoop

# Short timeouts so a dead Redis fails fast.
_OPTIONS: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 3, "health_check_interval": 30}

_async_clients: PerLoop[None, redis.asyncio.Redis] = PerLoop()


# Connections of one loop's pool. Hundreds of sends and AI calls may want Redis at the
# same moment; a blocking pool makes them queue for a connection (each call takes well
# under a millisecond) instead of failing: the default asyncio pool raises "Too many
# connections" past 100, which under a burst failed hundreds of replies.
ASYNC_POOL_SIZE = 32
ASYNC_POOL_WAIT = 10.0  # seconds to wait for a free connection before giving up


def async_redis_client() -> redis.asyncio.Redis:
    """The running event loop's client (mostly the I/O loop's, config.aio): an asyncio
    connection pool belongs to the loop that opened its connections."""
    return _async_clients.get(None, _async_client_build)


def _async_client_build() -> redis.asyncio.Redis:
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.REDIS_URL, max_connections=ASYNC_POOL_SIZE, timeout=ASYNC_POOL_WAIT, **_OPTIONS
    )
    return redis.asyncio.Redis(connection_pool=pool)
