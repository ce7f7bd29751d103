"""Sliding-window rate limits shared by every worker through Redis.

One Lua script checks every window that applies to an action (and an optional block
key, e.g. a 429's retry_after) and takes a slot in each only if all have room: atomic
across keys, which the `limits` library's one-key-at-a-time hits are not (a hit on one
window could be spent while another then refuses). Time comes from Redis, so workers
on different hosts agree.

Both functions are coroutines for the process's I/O loop (core.aio), where every
caller runs: the outbox's sends and the AI calls.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass

from core.redis import async_redis_client


@dataclass(frozen=True)
class Window:
    key: str
    limit: int
    window_ms: int


class SlotUnavailable(Exception):
    """No slot within the wait the caller accepts; one frees in `wait` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"no slot for {wait:.2f} s")
        self.wait = wait


# KEYS[1] = block key (holds a unix-ms "blocked until"), KEYS[2..] = sorted sets.
# ARGV[1] = member id, then (limit, window_ms) for each window key.
# Returns 0 when a slot was taken in every window, else milliseconds to wait.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = 0
local blocked_until = tonumber(redis.call('GET', KEYS[1]) or '0')
if blocked_until > now then wait = blocked_until - now end
for i = 2, #KEYS do
  local limit = tonumber(ARGV[2 * i - 2])
  local window = tonumber(ARGV[2 * i - 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], count - limit, count - limit, 'WITHSCORES')
    local until_free = tonumber(oldest[2]) + window - now
    if until_free > wait then wait = until_free end
  end
end
if wait > 0 then return wait end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2 * i - 1]))
end
return 0
"""


async def slot_acquire(*, windows: list[Window], block_key: str, max_wait: float) -> None:
    """Wait until every window has room (and the block key has passed), or raise
    SlotUnavailable when that is further away than `max_wait` seconds."""
    keys = [block_key] + [w.key for w in windows]
    args: list[str | int] = [uuid.uuid4().hex]
    for window in windows:
        args += [window.limit, window.window_ms]
    script = async_redis_client().register_script(_ACQUIRE)
    deadline = time.monotonic() + max_wait
    while True:
        wait = int(await script(keys=keys, args=args)) / 1000
        if wait <= 0:
            return
        if time.monotonic() + wait > deadline:
            raise SlotUnavailable(wait)
        await asyncio.sleep(wait)


async def block_for(*, block_key: str, seconds: float) -> None:
    """No slot on this block key (for anyone) until `seconds` from now."""
    until_ms = int((time.time() + seconds) * 1000)
    await async_redis_client().set(block_key, until_ms, px=int(seconds * 1000) + 1000)
