"""core.redis: one blocking client per REDIS_URL for the process's threads, one asyncio
client per event loop."""

import asyncio
import threading

import pytest
import redis
import redis.asyncio

from core import aio
from core.redis import ASYNC_POOL_SIZE, async_redis_client, redis_client


def test_the_blocking_client_is_shared_and_works() -> None:
    seen: list[redis.Redis] = []
    threads = [threading.Thread(target=lambda: seen.append(redis_client())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == 8 and all(client is seen[0] for client in seen)
    assert redis_client() is seen[0]
    seen[0].set("botfleet:test-core:sync", "1", ex=10)
    assert seen[0].get("botfleet:test-core:sync") == b"1"


def test_another_redis_url_gets_its_own_blocking_client(settings) -> None:  # type: ignore[no-untyped-def]
    first = redis_client()
    settings.REDIS_URL = "redis://127.0.0.1:1/3"  # never connected to: clients connect lazily

    other = redis_client()

    assert other is not first
    assert other.connection_pool.connection_kwargs["db"] == 3


def test_one_asyncio_client_per_loop_on_a_blocking_pool() -> None:
    async def twice() -> tuple[redis.asyncio.Redis, redis.asyncio.Redis]:
        return async_redis_client(), async_redis_client()

    on_io_loop = aio.run(twice())
    assert on_io_loop[0] is on_io_loop[1]
    pool = on_io_loop[0].connection_pool
    assert isinstance(pool, redis.asyncio.BlockingConnectionPool)
    assert pool.max_connections == ASYNC_POOL_SIZE

    # Another loop (a test's asyncio.run, a forked child's loop) never gets the I/O loop's.
    elsewhere = asyncio.run(twice())
    assert elsewhere[0] is elsewhere[1]
    assert elsewhere[0] is not on_io_loop[0]


def test_the_asyncio_client_works_on_the_io_loop() -> None:
    async def round_trip() -> bytes | None:
        client = async_redis_client()
        await client.set("botfleet:test-core:async", "2", ex=10)
        return await client.get("botfleet:test-core:async")

    assert aio.run(round_trip()) == b"2"


def test_outside_any_loop_there_is_no_asyncio_client() -> None:
    with pytest.raises(RuntimeError):
        async_redis_client()
