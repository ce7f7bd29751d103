"""Sending one message part: wait for a rate-limit slot, send, fall back to plain
text when Telegram rejects the formatting, and block the bot on a 429."""

from bots import ratelimit, telegram
from bots.formatting import FormattedText, markdown_render, split_message, truncate

# A worker thread may wait this long for a send slot; longer waits re-queue the reply
# so one throttled chat or flooded bot never ties up the threads others need.
MAX_INLINE_WAIT = 2.0


def reply_parts(markdown: str, *, max_length: int) -> list[FormattedText]:
    """The messages to send for one reply: rendered, cut to the task's maximum length,
    split at Telegram's limit."""
    return split_message(truncate(markdown_render(markdown), max_length))


def part_send(
    *,
    endpoint: telegram.BotEndpoint,
    chat_id: int,
    is_group: bool,
    part: FormattedText,
    reply_to_message_id: int | None,
    max_wait: float = MAX_INLINE_WAIT,
) -> int:
    """Send one part; returns Telegram's message id.

    Raises ratelimit.SlotUnavailable (retry later), telegram.FloodWait (the bot is now
    blocked for retry_after, for every worker) or another telegram.TelegramFailure.
    """
    ratelimit.send_slot_acquire(
        bot_id=endpoint.bot_id, chat_id=chat_id, is_group=is_group, max_wait=max_wait
    )
    try:
        try:
            sent = telegram.send_message(
                endpoint, chat_id=chat_id, text=part.text, entities=part.entities,
                reply_to_message_id=reply_to_message_id,
            )
        except telegram.EntitiesRejected:
            sent = telegram.send_message(
                endpoint, chat_id=chat_id, text=part.text, reply_to_message_id=reply_to_message_id
            )
    except telegram.FloodWait as flood:
        ratelimit.bot_flood_block(bot_id=endpoint.bot_id, seconds=flood.retry_after)
        raise
    return sent.message_id
