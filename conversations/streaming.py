"""Replies people see being written: the growing text of a streamed AI answer shown in a
private chat with sendMessageDraft (an ephemeral preview), one draft id per reply.

Throttled: at most one draft update per DRAFT_INTERVAL per reply (counted from when
Telegram took the previous one, so a slow send never bunches two up), only when a slot of
the bot's 30/s is free at once (never the chat's one-a-second slot, which the final
message needs), one request in flight (a newer text waits for the next chunk). The
Markdown of what has come so far is rendered as the final message will be. A draft
Telegram refuses switches drafts off for that reply; the answer carries on. A message
that waited in a backlog (BACKLOG_SECONDS) gets no drafts at all. When the
answer is complete, the draft in flight is awaited, then the final text goes through
the outbox like any reply (conversations.replies): drafts never weaken exactly-once.
"""

import asyncio
import logging
import time

from bots import ratelimit, telegram
from bots.formatting import reply_parts

log = logging.getLogger(__name__)

DRAFT_INTERVAL = 1.0  # seconds between draft updates of one reply: at most 1 a second
# A message that waited longer than this between being stored and its AI call is answered
# whole: its worker is behind (conversations.replies._streams).
BACKLOG_SECONDS = 2.0
DRAFT_ID_MAX = 2**31 - 1


class DraftStream:
    def __init__(
        self, *, endpoint: telegram.BotEndpoint, chat_id: int, message_id: int,
        thread: int | None, max_length: int,
    ) -> None:
        self.endpoint, self.chat_id, self.thread, self.max_length = endpoint, chat_id, thread, max_length
        self.draft_id = message_id % DRAFT_ID_MAX or 1  # Telegram wants a non-zero id
        self.started = time.perf_counter()
        self.first_draft_ms: int | None = None
        self.drafts = 0
        self._last_at = -DRAFT_INTERVAL
        self._in_flight: asyncio.Task[None] | None = None
        self._off = False

    async def update(self, text: str) -> None:
        """The provider's text so far (called for every chunk; never raises)."""
        if self._off or not text.strip():
            return
        now = time.perf_counter()
        if (self._in_flight is not None and not self._in_flight.done()) or now - self._last_at < DRAFT_INTERVAL:
            return
        self._last_at = now
        self._in_flight = asyncio.get_running_loop().create_task(self._show(text))

    async def finish(self) -> None:
        """Before the final message: the draft in flight lands first."""
        if self._in_flight is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._in_flight), timeout=telegram.SEND_TIMEOUT)
            except Exception:
                self._in_flight.cancel()

    async def _show(self, text: str) -> None:
        try:
            if not await ratelimit.draft_slot_try(bot_id=self.endpoint.bot_id):
                return
            # The part being written: a long answer becomes several messages.
            part = reply_parts(text, max_length=self.max_length)[-1]
            await telegram.send_message_draft(
                self.endpoint, chat_id=self.chat_id, draft_id=self.draft_id, text=part.text,
                entities=[e.to_dict() for e in part.entities], message_thread_id=self.thread,
            )
        except telegram.TelegramFailure as failure:
            self._off = True
            log.info("chat %s: drafts off for this reply: %s", self.chat_id, failure)
            return
        except Exception:
            self._off = True
            log.warning("chat %s: could not show a draft", self.chat_id, exc_info=True)
            return
        self._last_at = time.perf_counter()  # Telegram has it: the interval counts from here
        self.drafts += 1
        if self.first_draft_ms is None:
            self.first_draft_ms = int((time.perf_counter() - self.started) * 1000)
