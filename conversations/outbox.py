"""The outbox: the one module that sends messages to Telegram.

Everything Botfleet sends (reply parts, greetings, broadcast deliveries, `send_message`)
is first an outgoing Message row (`send_state` QUEUED or SENDING), created by the
composer in the same transaction that records what it is for. This module sends rows:

    claimed (SENDING, claimed_by this process)
      ─▶ wait for a send slot (per chat, per group, per bot, broadcast pace, 429 block)
      ─▶ stamp `handed_at` (its own write, just before the request)
      ─▶ sendMessage ─▶ SENT (Telegram's id) and settle what the row is for
         (or editMessageText of its streamed preview, for a reply's first part:
         `edits_message_id`)
                      └▶ the failure ladder below

Exactly once, by the stamp: a part without `handed_at` was never given to Telegram and
is safe to send again after a crash; a part with it and no Telegram id may have
reached Telegram (there is no idempotency key), so it is never sent again, only failed
visibly ("interrupted"). A definite refusal from Telegram (429, 4xx, 5xx) clears the
stamp: Telegram did not take the message. A part that edits a streamed preview is the
exception: an edit redone gives the same message, so after a crash it is redone, never
failed; if the preview cannot be edited (deleted, too old), the part forgets it (its own
write, so the stamp rule holds again) and goes as a new message.

The failure ladder: formatting rejected → the same text plain, once; 429 → the bot is
blocked for retry_after (every worker) and the part waits; the chat is gone (blocked,
kicked, deleted) → the chat is marked inactive and the part fails; network trouble or
5xx → retried with backoff up to OUTBOX_MAX_ATTEMPTS; anything else → failed. A wait
longer than OUTBOX_MAX_INLINE_WAIT gives the part back (QUEUED, `send_after`) and the
reaper sends it when the time comes.

Parts of one chat go in order, one after another; chats go side by side. A failed part
fails the parts after it in its reply (a reply never arrives with a hole in it).
"""

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db.models import BigIntegerField, Case, F, Q, QuerySet, Value, When
from django.utils import timezone

from bots import ratelimit, telegram
from bots.formatting import FormattedText
from bots.models import Bot, BotTask
from conversations import chats, claims
from conversations.models import Chat, Delivery, Message, ScheduledRun
from core import aio, dbwork
from credentials.encryption import DecryptionError

log = logging.getLogger(__name__)

INTERRUPTED = "Interrupted after it was handed to Telegram; not sent again to avoid a duplicate."
EARLIER_PART_FAILED = "Not sent: an earlier part of this message could not be sent."

SENT, FAILED, DEFERRED, LOST = "sent", "failed", "deferred", "lost"

T = TypeVar("T")


@dataclass(frozen=True)
class Part:
    """What sending one outgoing row needs, loaded once."""

    pk: int
    bot_id: int
    chat_pk: int
    chat_id: int  # Telegram's
    is_group: bool
    text: str
    entities: list[dict[str, Any]]
    quote: int | None
    thread: int | None  # the forum topic it goes to
    reply_to_id: int | None
    scheduled_run_id: int | None
    attempts: int
    endpoint: telegram.BotEndpoint = field(repr=False)
    # Whether this is the last part of its message, when known (parts just created);
    # None for parts loaded after a take-over: settling then asks the database.
    last: bool | None = None
    edits: int | None = None  # the Telegram message (a streamed preview) it replaces

    @property
    def broadcast(self) -> bool:
        return self.scheduled_run_id is not None


@dataclass
class Sent:
    """What a call to parts_send did."""

    sent: int = 0
    failed: int = 0
    deferred: int = 0
    retry_in: float | None = None  # the shortest wait of a deferred part
    token_rejected: str = ""  # Telegram refused the bot's token: nothing more will go


# --- creating rows (inside the composer's write transaction) ----------------------------


@dataclass(frozen=True)
class Outgoing:
    """One message to send, as its composer describes it."""

    bot: Bot
    chat: Chat
    parts: Sequence[FormattedText]
    endpoint: telegram.BotEndpoint = field(repr=False)
    reply_to: Message | None = None
    quote: int | None = None  # the Telegram message the first part quotes
    thread: int | None = None  # the forum topic every part goes to
    scheduled_run: ScheduledRun | None = None
    first_fields: dict[str, Any] = field(default_factory=dict)  # recorded on the first part
    edits: int | None = None  # the first part replaces this message's text (a preview)


def parts_create(messages: Sequence[Outgoing]) -> list[list[Part]]:
    """Create the rows of these messages (one INSERT for all their parts), claimed by this
    process to send now; the parts of each message, in order."""
    claim = claims.taken()
    rows = Message.objects.bulk_create(
        Message(
            bot=out.bot, chat=out.chat, direction=Message.Direction.OUT, text=part.text,
            entities=[e.to_dict() for e in part.entities], reply_to=out.reply_to,
            quote_telegram_message_id=out.quote if index == 0 else None,
            message_thread_id=out.thread,
            scheduled_run=out.scheduled_run,
            scheduled_id=out.scheduled_run.scheduled_id if out.scheduled_run is not None else None,
            send_state=Message.SendState.SENDING, **claim,
            edits_message_id=out.edits if index == 0 else None,
            **(out.first_fields if index == 0 else {}),
        )
        for out in messages
        for index, part in enumerate(out.parts)
    )
    created, start = [], 0
    for out in messages:
        mine = rows[start : start + len(out.parts)]
        start += len(out.parts)
        created.append([_part(row, out.chat, out.endpoint, last=row is mine[-1]) for row in mine])
    return created


def _part(row: Message, chat: Chat, endpoint: telegram.BotEndpoint, last: bool | None = None) -> Part:
    return Part(
        pk=row.pk, bot_id=row.bot_id, chat_pk=chat.pk, chat_id=chat.telegram_id,
        is_group=chat.is_group, text=row.text, entities=row.entities,
        quote=row.quote_telegram_message_id, thread=row.message_thread_id, reply_to_id=row.reply_to_id,
        scheduled_run_id=row.scheduled_run_id, attempts=row.attempts, endpoint=endpoint,
        last=last, edits=row.edits_message_id,
    )


def parts_load(ids: Sequence[int]) -> list[Part]:
    """Parts for rows this process has claimed (the reaper's take-overs), in id order.
    A row whose bot token cannot be decrypted fails here, visibly."""
    rows = claims.mine(Message.objects.filter(pk__in=ids, send_state=Message.SendState.SENDING))
    endpoints: dict[int, telegram.BotEndpoint | None] = {}
    parts = []
    for row in rows.select_related("chat", "bot").order_by("id"):
        if row.bot_id not in endpoints:
            try:
                endpoints[row.bot_id] = telegram.BotEndpoint.of(row.bot)
            except DecryptionError:
                endpoints[row.bot_id] = None
        endpoint = endpoints[row.bot_id]
        if endpoint is None:
            _fail(_part(row, row.chat, telegram.BotEndpoint(row.bot_id, "", "")),
                  "The bot's token cannot be decrypted with FIELD_ENCRYPTION_KEYS.")
            continue
        parts.append(_part(row, row.chat, endpoint))
    return parts


# --- sending ----------------------------------------------------------------------------------


async def parts_send(parts: Sequence[Part], *, concurrency: int | None = None) -> Sent:
    """Send claimed parts (on the I/O loop): each chat's in order, chats side by side
    (at most `concurrency` chats at a time, when given)."""
    by_chat: dict[tuple[int, int], list[Part]] = defaultdict(list)
    for part in parts:
        by_chat[(part.bot_id, part.chat_pk)].append(part)
    summary = Sent()
    gate = asyncio.Semaphore(concurrency or len(by_chat) or 1)

    async def chat_send(chat_parts: list[Part]) -> None:
        async with gate:
            await _chat_send(chat_parts, summary)

    with claims.working.on(p.pk for p in parts):
        await asyncio.gather(*(chat_send(chat_parts) for chat_parts in by_chat.values()))
    return summary


def parts_send_soon(parts: Sequence[Part]) -> None:
    """From any thread: send these parts on this process's I/O loop; returns at once."""
    if parts:
        aio.submit(parts_send(parts))


async def _chat_send(parts: list[Part], summary: Sent) -> None:
    failed: set[tuple[int | None, int | None, int]] = set()  # messages with a failed part
    for index, part in enumerate(parts):
        if _message_of(part) in failed:
            continue  # _fail already failed the rest of that message
        if summary.token_rejected:  # the bot cannot send at all: nothing more will go
            await dbwork.write(_fail, part, summary.token_rejected)
            summary.failed += 1
            continue
        outcome, wait = await _part_send(part, summary)
        if outcome == SENT:
            summary.sent += 1
        elif outcome == FAILED:
            summary.failed += 1
            failed.add(_message_of(part))
        elif outcome == DEFERRED:
            # Later parts of this chat wait too, or they would overtake this one.
            later = [p.pk for p in parts[index + 1 :]]
            await dbwork.write(_release, later, wait)
            summary.deferred += 1 + len(later)
            summary.retry_in = wait if summary.retry_in is None else min(summary.retry_in, wait)
            return
        else:  # LOST: another process took the row over; it owns the rest too
            return


def _message_of(part: Part) -> tuple[int | None, int | None, int]:
    """Which message a part belongs to: a reply, or one chat's copy of a broadcast."""
    if part.reply_to_id is not None:
        return (part.reply_to_id, None, 0)
    if part.scheduled_run_id is not None:
        return (None, part.scheduled_run_id, part.chat_pk)
    return (None, None, -part.pk)  # a message of its own


async def _part_send(part: Part, summary: Sent) -> tuple[str, float]:
    attempts = part.attempts
    while True:
        try:
            await ratelimit.send_slot_acquire(
                bot_id=part.bot_id, chat_id=part.chat_id, is_group=part.is_group,
                broadcast=part.broadcast, max_wait=settings.OUTBOX_MAX_INLINE_WAIT,
            )
        except ratelimit.SlotUnavailable as busy:
            await dbwork.write(_release, [part.pk], busy.wait)
            return DEFERRED, busy.wait
        if not await dbwork.write_many("outbox.stamp", _stamp, part.pk):
            return LOST, 0.0
        try:
            if part.edits is not None and not await _preview_edit(part):
                await dbwork.write(_preview_forget, part.pk)
                part = replace(part, edits=None)
            telegram_id = part.edits if part.edits is not None else await _deliver(part)
        except telegram.FloodWait as flood:
            await ratelimit.bot_flood_block(bot_id=part.bot_id, seconds=flood.retry_after)
            await dbwork.write(_unstamp, part.pk, attempts, str(flood))
            continue  # the next slot waits out the block (or defers the part)
        except telegram.ChatMoved as moved:
            attempts += 1
            if attempts >= settings.OUTBOX_MAX_ATTEMPTS:
                await dbwork.write(_fail, part, str(moved))
                return FAILED, 0.0
            # The group became a supergroup: the chat takes its new id, and the part goes there.
            await dbwork.write(_chat_moved, part, moved.new_chat_id, attempts)
            part = replace(part, chat_id=moved.new_chat_id)
            continue
        except telegram.ChatUnavailable as gone:
            await dbwork.write(_chat_gone, part, str(gone))
            return FAILED, 0.0
        except telegram.TransientFailure as failure:
            attempts += 1
            if attempts >= settings.OUTBOX_MAX_ATTEMPTS:
                await dbwork.write(_fail, part, f"Gave up after {attempts} attempts: {failure}")
                return FAILED, 0.0
            await dbwork.write(_unstamp, part.pk, attempts, str(failure))
            delay = float(min(2**attempts, 60))
            if delay > settings.OUTBOX_MAX_INLINE_WAIT:
                await dbwork.write(_release, [part.pk], delay)
                return DEFERRED, delay
            await asyncio.sleep(delay)
            continue
        except telegram.TelegramFailure as failure:  # token rejected, request refused
            if isinstance(failure, telegram.TokenRejected):
                summary.token_rejected = str(failure)
            await dbwork.write(_fail, part, str(failure))
            return FAILED, 0.0
        await dbwork.write_many("outbox.sent", _sent, (part, telegram_id))
        return SENT, 0.0


async def _formatted_or_plain(part: Part, call: Callable[[list[dict[str, Any]]], Awaitable[T]]) -> T:
    """`call` with the part's formatting; if Telegram refuses the formatting, the same
    text plain, once (the first rung of the failure ladder, for a send and an edit)."""
    try:
        return await call(part.entities)
    except telegram.EntitiesRejected:
        return await call([])


async def _deliver(part: Part) -> int:
    sent = await _formatted_or_plain(part, lambda entities: telegram.send_message(
        part.endpoint, chat_id=part.chat_id, text=part.text, entities=entities,
        reply_to_message_id=part.quote, message_thread_id=part.thread,
    ))
    return sent.message_id


async def _preview_edit(part: Part) -> bool:
    """The part replaces the text of its streamed preview; False if Telegram will not
    edit that message (gone, too old): the part then goes as a new message."""
    edits = part.edits
    assert edits is not None
    try:
        await _formatted_or_plain(part, lambda entities: telegram.edit_message_text(
            part.endpoint, chat_id=part.chat_id, message_id=edits, text=part.text, entities=entities,
        ))
    except telegram.RequestRejected as refused:
        log.info("message %s: its preview cannot be edited; sending it anew: %s", part.pk, refused)
        return False
    return True


# --- the writes (each runs inside dbwork's shared transaction) -------------------------------


def _stamp(pks: list[int]) -> list[bool]:
    """Stamp these parts "handed to Telegram" (one UPDATE); which ones were still ours."""
    now = timezone.now()
    stamped = claims.mine(
        Message.objects.filter(pk__in=pks, send_state=Message.SendState.SENDING)
    ).update(handed_at=now)
    if stamped == len(set(pks)):
        return [True] * len(pks)
    ours = set(claims.mine(Message.objects.filter(pk__in=pks, handed_at=now)).values_list("pk", flat=True))
    return [pk in ours for pk in pks]


def _unstamp(pk: int, attempts: int, error: str) -> None:
    claims.mine(Message.objects.filter(pk=pk)).update(
        handed_at=None, attempts=attempts, error=error[:2000]
    )


def _preview_forget(pk: int) -> None:
    claims.mine(Message.objects.filter(pk=pk)).update(edits_message_id=None)


def _release(pks: list[int], wait: float) -> None:
    now = timezone.now()
    claims.mine(Message.objects.filter(pk__in=pks, send_state=Message.SendState.SENDING)).update(
        send_state=Message.SendState.QUEUED, send_after=now + timedelta(seconds=wait),
        handed_at=None, updated_at=now, **claims.RELEASED,
    )


def _sent(results: list[tuple[Part, int]]) -> list[None]:
    """Record parts Telegram accepted (one UPDATE), and settle what they were for: a
    reply's last part closes the reply (one UPDATE for all of them)."""
    now = timezone.now()
    telegram_ids = {part.pk: telegram_id for part, telegram_id in results}
    claims.mine(Message.objects.filter(pk__in=telegram_ids)).update(
        send_state=Message.SendState.SENT, telegram_date=now, updated_at=now, **claims.RELEASED,
        telegram_message_id=Case(
            *[When(pk=pk, then=Value(telegram_id)) for pk, telegram_id in telegram_ids.items()],
            output_field=BigIntegerField(),
        ),
    )
    last_of_replies = [part for part, _ in results if part.reply_to_id is not None and part.last]
    _replies_close(last_of_replies, now)
    closed = {id(part) for part in last_of_replies}
    for part, _ in results:
        if id(part) not in closed:
            _settle(part)
    return [None] * len(results)


def _replies_close(parts: list[Part], now: datetime) -> None:
    """The replies whose last part was just sent are answered."""
    if not parts:
        return
    bots = {part.reply_to_id: part.bot_id for part in parts if part.reply_to_id is not None}
    sending = Message.objects.filter(pk__in=bots, reply_state=Message.ReplyState.SENDING)
    closed = list(sending.values_list("pk", flat=True))
    sending.filter(pk__in=closed).update(reply_state=Message.ReplyState.REPLIED, updated_at=now)
    for bot_id, count in sorted(Counter(bots[pk] for pk in closed).items()):  # one lock order
        BotTask.objects.filter(bot_id=bot_id, status=BotTask.Status.RUNNING).update(
            replies_sent=F("replies_sent") + count
        )


def _fail(part: Part, error: str) -> None:
    """Fail this part and the later parts of its message, and what the message is for."""
    now = timezone.now()
    Message.objects.filter(pk=part.pk).update(
        send_state=Message.SendState.FAILED, error=error[:2000], updated_at=now, **claims.RELEASED
    )
    later = _siblings(part).filter(pk__gt=part.pk).exclude(send_state=Message.SendState.SENT)
    later.update(send_state=Message.SendState.FAILED, error=EARLIER_PART_FAILED, updated_at=now,
                 **claims.RELEASED)
    _settle(part, error=error)


def _chat_moved(part: Part, new_chat_id: int, attempts: int) -> None:
    chats.chat_migrate(bot_id=part.bot_id, old_id=part.chat_id, new_id=new_chat_id)
    _unstamp(part.pk, attempts, "")


def _chat_gone(part: Part, reason: str) -> None:
    Chat.objects.filter(pk=part.chat_pk).update(is_active=False, inactive_reason=reason[:255])
    log.info("chat %s of bot %s marked inactive: %s", part.chat_id, part.bot_id, reason)
    _fail(part, reason)


def _siblings(part: Part) -> QuerySet[Message]:
    """The rows of the same message as `part`: one reply, or one chat's broadcast."""
    if part.reply_to_id is not None:
        return Message.objects.filter(direction=Message.Direction.OUT, reply_to_id=part.reply_to_id)
    if part.scheduled_run_id is not None:
        return Message.objects.filter(scheduled_run_id=part.scheduled_run_id, chat_id=part.chat_pk)
    return Message.objects.filter(pk=part.pk)


def _settle(part: Part, *, error: str = "") -> None:
    """When no part of the message is open any more, close what it was for: the incoming
    message (replied / failed) or the broadcast's delivery to this chat."""
    siblings = _siblings(part)
    if not error:
        if part.last is False:
            return
        open_states = [Message.SendState.QUEUED, Message.SendState.SENDING]
        if part.last is None and siblings.filter(send_state__in=open_states).exists():
            return
    now = timezone.now()
    if part.reply_to_id is not None and not error:
        _replies_close([part], now)
    elif part.reply_to_id is not None:
        Message.objects.filter(pk=part.reply_to_id, reply_state=Message.ReplyState.SENDING).update(
            reply_state=Message.ReplyState.FAILED, error=error[:2000], updated_at=now
        )
    if part.scheduled_run_id is not None:
        first = siblings.order_by("id").values_list("telegram_message_id", flat=True).first()
        Delivery.objects.filter(
            run_id=part.scheduled_run_id, chat_id=part.chat_pk, state=Delivery.State.SENDING
        ).update(
            state=Delivery.State.FAILED if error else Delivery.State.SENT, error=error[:2000],
            telegram_message_id=None if error else first, sent_at=None if error else now,
            updated_at=now,
        )


def run_parts_cancel(*, run_id: int, error: str) -> set[int]:
    """A failed broadcast run sends nothing more: its parts not yet handed to Telegram
    (waiting out a flood or a back-off, or about to go: the stamp is conditional) fail.
    Returns the chats (row ids) they were for."""
    unsent = Message.objects.filter(
        scheduled_run_id=run_id, send_state__in=[Message.SendState.QUEUED, Message.SendState.SENDING],
        handed_at__isnull=True,
    )
    chat_ids = set(unsent.values_list("chat_id", flat=True))
    unsent.update(send_state=Message.SendState.FAILED, error=error[:2000], updated_at=timezone.now(),
                  **claims.RELEASED)
    return chat_ids


# --- the reaper's part (conversations.reaper calls these) --------------------------------------


def interrupted_fail(*, now: datetime) -> int:
    """Rows whose claim expired after they were handed to Telegram: never sent again
    (an edit of a preview is redone instead: takeover)."""
    rows = list(
        Message.objects.filter(
            send_state=Message.SendState.SENDING, claim_expires_at__lt=now,
            handed_at__isnull=False, telegram_message_id__isnull=True, edits_message_id__isnull=True,
        ).select_related("chat")
    )
    for row in rows:
        _fail(_part(row, row.chat, telegram.BotEndpoint(row.bot_id, "", "")), INTERRUPTED)
    return len(rows)


def takeover(*, now: datetime, limit: int) -> list[int]:
    """Claim, for this process, the rows nobody is sending: claims that expired before
    the stamp (or at any point of an edit: redone, it gives the same message), and queued
    rows whose wait is over. Returns their ids (to parts_load)."""
    expired = Message.objects.filter(
        Q(handed_at__isnull=True) | Q(edits_message_id__isnull=False),
        send_state=Message.SendState.SENDING, claim_expires_at__lt=now,
    )
    due = Message.objects.filter(
        Q(send_after__isnull=True) | Q(send_after__lte=now), send_state=Message.SendState.QUEUED
    )
    ids = list(claims.take(expired, now=now, limit=limit).values_list("pk", flat=True))
    ids += claims.take(
        due, now=now, limit=limit - len(ids), send_state=Message.SendState.SENDING
    ).values_list("pk", flat=True)
    return ids
