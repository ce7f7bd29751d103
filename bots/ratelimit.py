"""Telegram send limits, shared by every worker through Redis.

Telegram's limits are approximate: about 1 message/s per chat, 20/min per group and
30/s per bot, and a 429 carries `retry_after` for that bot only. One Lua script checks
all the windows that apply to a send (and the bot's flood block) and takes a slot in
each only if every one has room: atomic across keys, which the `limits` library's
one-key-at-a-time hits are not (a hit on the chat window could be spent while the bot
window then refuses).
"""

import time
import uuid
from dataclasses import dataclass

from config.redis import redis_client

# (max sends, window in ms)
PER_CHAT = (1, 1_000)
PER_GROUP = (20, 60_000)
PER_BOT = (30, 1_000)


@dataclass(frozen=True)
class SlotUnavailable(Exception):
    """No send slot within the wait the caller accepts; retry after `wait` seconds."""

    wait: float


# KEYS[1] = flood block key, KEYS[2..] = sliding-window sorted sets.
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


def _flood_key(bot_id: int) -> str:
    return f"botfleet:flood:{bot_id}"


def _windows(bot_id: int, chat_id: int, is_group: bool) -> list[tuple[str, tuple[int, int]]]:
    windows = [
        (f"botfleet:rate:bot:{bot_id}", PER_BOT),
        (f"botfleet:rate:chat:{bot_id}:{chat_id}", PER_CHAT),
    ]
    if is_group:
        windows.append((f"botfleet:rate:group:{bot_id}:{chat_id}", PER_GROUP))
    return windows


def send_slot_acquire(*, bot_id: int, chat_id: int, is_group: bool, max_wait: float) -> None:
    """Block until this send may go, or raise SlotUnavailable if that is further
    away than `max_wait` seconds (the caller re-queues instead of holding a thread)."""
    windows = _windows(bot_id, chat_id, is_group)
    keys = [_flood_key(bot_id)] + [key for key, _ in windows]
    args: list[str | int] = [uuid.uuid4().hex]
    for _, (limit, window_ms) in windows:
        args += [limit, window_ms]
    script = redis_client().register_script(_ACQUIRE)
    deadline = time.monotonic() + max_wait
    while True:
        wait = int(script(keys=keys, args=args)) / 1000
        if wait <= 0:
            return
        if time.monotonic() + wait > deadline:
            raise SlotUnavailable(wait)
        time.sleep(wait)


def bot_flood_block(*, bot_id: int, seconds: float) -> None:
    """After a 429: no send for this bot (from any worker) until retry_after passes."""
    until_ms = int((time.time() + seconds) * 1000)
    redis_client().set(_flood_key(bot_id), until_ms, px=int(seconds * 1000) + 1000)
