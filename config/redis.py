"""The process's Redis client (rate limits, locks), built on first use."""

import threading

import redis
from django.conf import settings

_lock = threading.Lock()
_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _client
    with _lock:
        if _client is None:
            # Thread-safe connection pool; short timeouts so a dead Redis fails fast.
            _client = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=3,
                health_check_interval=30,
            )
        return _client
