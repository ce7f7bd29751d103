"""Telegram's send limits: about 1 message/s per chat, 20/min per group, 30/s per
bot, and a 429's retry_after that applies to that bot only. Shared by every worker
(see core.ratelimit)."""

from core.ratelimit import SlotUnavailable, Window, block_for, slot_acquire

__all__ = ["SlotUnavailable", "bot_flood_block", "draft_slot_try", "send_slot_acquire"]

PER_CHAT = (1, 1_000)  # (sends, window in ms)
PER_GROUP = (20, 60_000)
PER_BOT = (30, 1_000)
# Broadcast sends of one bot go at most one per this many ms: 29.4/s. The per-bot
# window alone lets 30 go at once and 30 more a second later; measured where Telegram
# receives them, jitter can put 31 in a second. Evenly spaced sends stay under the
# limit there, and leave the bot a little room for its live replies.
BROADCAST_PACE_MS = 34


def _flood_key(bot_id: int) -> str:
    return f"botfleet:flood:{bot_id}"


def _windows(bot_id: int, chat_id: int, is_group: bool, broadcast: bool) -> list[Window]:
    windows = [
        Window(f"botfleet:rate:bot:{bot_id}", *PER_BOT),
        Window(f"botfleet:rate:chat:{bot_id}:{chat_id}", *PER_CHAT),
    ]
    if is_group:
        windows.append(Window(f"botfleet:rate:group:{bot_id}:{chat_id}", *PER_GROUP))
    if broadcast:
        windows.append(Window(f"botfleet:rate:broadcast:{bot_id}", 1, BROADCAST_PACE_MS))
    return windows


async def send_slot_acquire(
    *, bot_id: int, chat_id: int, is_group: bool, broadcast: bool, max_wait: float
) -> None:
    """Wait until this send may go, or raise SlotUnavailable if that is further away
    than `max_wait` seconds (the outbox then defers the part instead of waiting)."""
    await slot_acquire(
        windows=_windows(bot_id, chat_id, is_group, broadcast),
        block_key=_flood_key(bot_id),
        max_wait=max_wait,
    )


async def bot_flood_block(*, bot_id: int, seconds: float) -> None:
    """After a 429: no send for this bot, from any worker, until retry_after passes."""
    await block_for(block_key=_flood_key(bot_id), seconds=seconds)


async def draft_slot_try(*, bot_id: int) -> bool:
    """A slot of the bot's 30/s for a draft update, now or never: a draft that would
    wait is skipped (the next one shows more text), and it never takes the chat's own
    one-a-second slot, which the final message needs."""
    try:
        await slot_acquire(
            windows=[Window(f"botfleet:rate:bot:{bot_id}", *PER_BOT)], block_key=_flood_key(bot_id), max_wait=0,
        )
    except SlotUnavailable:
        return False
    return True
