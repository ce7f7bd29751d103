"""Replies people see being written: the growing text of a streamed AI answer.

- Private chats: sendMessageDraft (an ephemeral preview), one draft id per reply
  (DraftStream).
- Groups, when the persona streams there by editing (off by default; Telegram has no
  drafts in groups): the start of the answer is sent as a message at once, then edited
  as the rest comes (PreviewStream). Its Telegram id is recorded on the incoming message
  before any edit, and the answer's first part replaces its text through the outbox
  (an edit instead of a send: conversations.outbox), so a preview is never left half
  written as the answer, not even after a crash (the reaper's answer edits it too).

Both are throttled the same way (`Stream`): at most one update per interval per
reply (counted from when Telegram took the previous one, so a slow send never bunches
two up), one request in flight (a newer text waits for the next chunk), only with a
free rate-limit slot at once (never waiting: the next update shows more text). The
Markdown of what has come so far is rendered as the final message will be. An update
Telegram refuses switches streaming off for that reply; the answer carries on. A
message that waited in a backlog (BACKLOG_SECONDS) is not streamed at all. When the
answer is complete, the update in flight is awaited, then the final text goes through
the outbox like any reply (conversations.replies): streaming never weakens exactly-once.
"""

import asyncio
import logging
import time

from bots import ratelimit, telegram
from bots.formatting import FormattedText, reply_parts
from conversations import claims
from conversations.models import Message
from core import dbwork

log = logging.getLogger(__name__)

DRAFT_INTERVAL = 1.0  # seconds between draft updates of one reply: at most 1 a second
EDIT_INTERVAL = 1.5  # seconds between edits of a group preview
# A message that waited longer than this between being stored and its AI call is answered
# whole: its worker is behind (conversations.replies._stream).
BACKLOG_SECONDS = 2.0
DRAFT_ID_MAX = 2**31 - 1
# Ends a group preview while it is being written: a preview left as it was (its edits
# refused, or a crash before its id was recorded) never reads as a finished answer.
STILL_WRITING = " …"


class Stream:
    """One reply's stream of updates to Telegram: `update` with each chunk's text so far,
    `finish` before the final message. Subclasses say how an update is shown."""

    interval = DRAFT_INTERVAL

    def __init__(self, *, endpoint: telegram.BotEndpoint, chat_id: int, thread: int | None, max_length: int) -> None:
        self.endpoint, self.chat_id, self.thread, self.max_length = endpoint, chat_id, thread, max_length
        self.started = time.perf_counter()
        self.first_shown_ms: int | None = None  # recorded on the reply as first_draft_ms
        self._last_at = -self.interval
        self._in_flight: asyncio.Task[None] | None = None
        self._off = False

    async def update(self, text: str) -> None:
        """The provider's text so far (called for every chunk; never raises)."""
        if self._off or not text.strip():
            return
        now = time.perf_counter()
        if (self._in_flight is not None and not self._in_flight.done()) or now - self._last_at < self.interval:
            return
        self._last_at = now
        self._in_flight = asyncio.get_running_loop().create_task(self._show(text))

    async def finish(self) -> None:
        """Before the final message: the update in flight lands first."""
        if self._in_flight is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._in_flight), timeout=telegram.SEND_TIMEOUT)
            except Exception:
                self._in_flight.cancel()

    async def _show(self, text: str) -> None:
        try:
            if not await self._send(text):
                return
        except telegram.TelegramFailure as failure:
            self._off = True
            log.info("chat %s: streaming off for this reply: %s", self.chat_id, failure)
            return
        except Exception:
            self._off = True
            log.warning("chat %s: could not show the answer being written", self.chat_id, exc_info=True)
            return
        self._last_at = time.perf_counter()  # Telegram has it: the interval counts from here
        if self.first_shown_ms is None:
            self.first_shown_ms = int((time.perf_counter() - self.started) * 1000)

    async def _send(self, text: str) -> bool:
        """Show `text` (the answer so far); False when nothing was sent (no free slot,
        nothing new)."""
        raise NotImplementedError


class DraftStream(Stream):
    """A private chat: sendMessageDraft, one draft id per reply."""

    def __init__(
        self, *, endpoint: telegram.BotEndpoint, chat_id: int, thread: int | None, max_length: int,
        message_id: int,
    ) -> None:
        super().__init__(endpoint=endpoint, chat_id=chat_id, thread=thread, max_length=max_length)
        self.draft_id = message_id % DRAFT_ID_MAX or 1  # Telegram wants a non-zero id

    async def _send(self, text: str) -> bool:
        if not await ratelimit.draft_slot_try(bot_id=self.endpoint.bot_id):
            return False
        # The part being written: a long answer becomes several messages.
        part = reply_parts(text, max_length=self.max_length)[-1]
        await telegram.send_message_draft(
            self.endpoint, chat_id=self.chat_id, draft_id=self.draft_id, text=part.text,
            entities=[e.to_dict() for e in part.entities], message_thread_id=self.thread,
        )
        return True


class PreviewStream(Stream):
    """A group: the start of the answer sent as a message (quoting the question, as the
    answer does), then edited as it grows. Only its first message is streamed: a long
    answer's later parts come with the final text."""

    interval = EDIT_INTERVAL

    def __init__(
        self, *, endpoint: telegram.BotEndpoint, chat_id: int, thread: int | None, max_length: int,
        incoming_pk: int, quote: int | None,
    ) -> None:
        super().__init__(endpoint=endpoint, chat_id=chat_id, thread=thread, max_length=max_length)
        self.incoming_pk, self.quote = incoming_pk, quote
        self.preview_message_id: int | None = None
        self._shown_text = ""

    async def _send(self, text: str) -> bool:
        first = reply_parts(text, max_length=self.max_length - len(STILL_WRITING))[0]
        shown = FormattedText(first.text + STILL_WRITING, first.entities)
        if shown.text == self._shown_text:
            return False  # the first message is complete: the final text finishes it
        if not await ratelimit.preview_slot_try(bot_id=self.endpoint.bot_id, chat_id=self.chat_id):
            return False
        entities = [e.to_dict() for e in shown.entities]
        if self.preview_message_id is None:
            sent = await telegram.send_message(
                self.endpoint, chat_id=self.chat_id, text=shown.text, entities=entities,
                reply_to_message_id=self.quote, message_thread_id=self.thread,
            )
            self.preview_message_id = sent.message_id
            # Recorded before any edit: an answer redone after a crash edits it too.
            await dbwork.write(_preview_record, self.incoming_pk, sent.message_id)
        else:
            await telegram.edit_message_text(
                self.endpoint, chat_id=self.chat_id, message_id=self.preview_message_id,
                text=shown.text, entities=entities,
            )
        self._shown_text = shown.text
        return True


def _preview_record(incoming_pk: int, telegram_id: int) -> None:
    claims.mine(Message.objects.filter(pk=incoming_pk)).update(preview_message_id=telegram_id)
