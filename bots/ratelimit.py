"""Telegram's send limits: about 1 message/s per chat, 20/min per group, 30/s per
bot, and a 429's retry_after that applies to that bot only. Shared by every worker
(see core.ratelimit)."""

from core.ratelimit import SlotUnavailable, Window, block_for, slot_acquire

__all__ = ["SlotUnavailable", "bot_flood_block", "draft_slot_try", "preview_slot_try", "send_slot_acquire"]

PER_CHAT = (1, 1_000)  # (sends, window in ms)
PER_GROUP = (20, 60_000)
# A group preview (streaming by editing) is sent or edited only while the group has used
# at most this many of its 20 a minute: the rest stays for answers themselves, so a busy
# group gets whole answers instead of answers held up behind edits.
PREVIEW_GROUP_SHARE = 10
PER_BOT = (30, 1_000)
# Broadcast sends of one bot go at most one per this many ms: 29.4/s. The per-bot
# window alone lets 30 go at once and 30 more a second later; measured where Telegram
# receives them, jitter can put 31 in a second. Evenly spaced sends stay under the
# limit there, and leave the bot a little room for its live replies.
BROADCAST_PACE_MS = 34


def _flood_key(bot_id: int) -> str:
    return f"botfleet:flood:{bot_id}"


def _bot_window(bot_id: int) -> Window:
    return Window(f"botfleet:rate:bot:{bot_id}", *PER_BOT)


def _group_key(bot_id: int, chat_id: int) -> str:
    return f"botfleet:rate:group:{bot_id}:{chat_id}"


def _windows(bot_id: int, chat_id: int, is_group: bool, broadcast: bool) -> list[Window]:
    windows = [
        _bot_window(bot_id),
        Window(f"botfleet:rate:chat:{bot_id}:{chat_id}", *PER_CHAT),
    ]
    if is_group:
        windows.append(Window(_group_key(bot_id, chat_id), *PER_GROUP))
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
    return await _slot_try(bot_id, [_bot_window(bot_id)])


async def preview_slot_try(*, bot_id: int, chat_id: int) -> bool:
    """A slot for a group preview's send or edit, now or never: the bot's 30/s and the
    group's minute while it is at most PREVIEW_GROUP_SHARE full (the same window the
    answers count in, with a lower limit). Not the chat's one a second: a preview's
    updates are EDIT_INTERVAL apart anyway, and the slot is the final text's, which
    would otherwise wait a second behind the last edit (measured: the final text at
    3.06 s instead of 2.06 s for a 2 s answer)."""
    return await _slot_try(bot_id, [
        _bot_window(bot_id), Window(_group_key(bot_id, chat_id), PREVIEW_GROUP_SHARE, PER_GROUP[1]),
    ])


async def _slot_try(bot_id: int, windows: list[Window]) -> bool:
    try:
        await slot_acquire(windows=windows, block_key=_flood_key(bot_id), max_wait=0)
    except SlotUnavailable:
        return False
    return True
