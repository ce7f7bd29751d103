"""Storing Telegram updates in the message log, once each, and handing the messages
that want an answer to conversations.replies (this app's side of bots.polling).

Idempotent by the unique (bot, update_id) constraint: a redelivered update (a crash
before the offset moved, two pollers overlapping after a revival) inserts nothing and
is therefore never answered twice. Unknown update kinds are logged and passed over; an
update that cannot be read or stored (checked first for impossible ids, then a savepoint
each when the batch fails) leaves a SkippedUpdate row saying why, and the poller moves
past it. The bot's own membership (`my_chat_member`) and group-to-supergroup moves
update the chat rows (conversations.chats).
A polled message that wants an answer is stored already claimed by the storing process
(GENERATING), which answers it next: no second write to claim it. A pushed one (drained
from bots.pushes by a worker) is stored waiting (PENDING, unclaimed), then claimed by
conversations.tasks.pushed_answer, which keeps each chat's order across workers; if the
worker dies in between, the reaper answers it once CLAIM_SECONDS passed.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import telegram
from django.db import IntegrityError, transaction

from bots import telegram as bots_telegram
from bots.models import Bot, BotTask
from bots.updates import StoredBatch
from conversations import chats, claims, decisions, media, replies, wording
from conversations.models import Message, SkippedUpdate
from core import dbwork

log = logging.getLogger(__name__)

_SERVICE_FIELDS = (
    "new_chat_members", "left_chat_member", "new_chat_title", "new_chat_photo",
    "delete_chat_photo", "group_chat_created", "supergroup_chat_created", "pinned_message",
    "migrate_to_chat_id", "migrate_from_chat_id", "message_auto_delete_timer_changed",
)


@dataclass(frozen=True)
class StoredUpdates:
    new_messages: list[Message]
    to_answer: list[Message]
    skipped: list[str] = field(default_factory=list)  # why updates could not be stored


def updates_store(
    *, bot: Bot, task: BotTask, updates: Sequence[telegram.Update],
    unreadable: Sequence[tuple[int | None, str]] = (), claim: bool = True,
) -> StoredUpdates:
    known = set(
        Message.objects.filter(bot=bot, update_id__in=[u.update_id for u in updates])
        .values_list("update_id", flat=True)
    )
    fresh = list({u.update_id: u for u in updates if u.update_id not in known}.values())
    passed_over = list(unreadable)
    storable = []
    for update in fresh:
        reason = _unstorable(update)
        if reason:
            passed_over.append((update.update_id, reason))
        else:
            storable.append(update)
    # The batch in a handful of statements (one look-up and one insert for chats, users
    # and messages each): a burst of a hundred updates costs what one did. If that
    # fails (an overlapping poller stored some of them meanwhile, or one update cannot
    # be stored at all), the batch is redone one update at a time, a savepoint each:
    # the others are stored, and one bad update never holds up the ones behind it.
    try:
        with transaction.atomic():
            new_messages = _batch_store(bot, task, storable, claim)
    except Exception:
        new_messages = []
        for update in storable:
            try:
                with transaction.atomic():
                    new_messages += _batch_store(bot, task, [update], claim)
            except IntegrityError:
                pass  # stored meanwhile by an overlapping poller
            except Exception as failure:
                if dbwork.retryable(failure):
                    raise  # nothing wrong with the update: the caller's transaction runs again
                log.warning("bot %s: update %s cannot be stored; skipped", bot.pk, update.update_id,
                            exc_info=True)
                passed_over.append((update.update_id, bots_telegram.reason_of(failure)))
    if passed_over:
        SkippedUpdate.objects.bulk_create(
            [SkippedUpdate(bot=bot, update_id=None if chats.impossible_ids(i) else i, error=why)
             for i, why in passed_over],
            ignore_conflicts=True,
        )
    to_answer = [m for m in new_messages if m.reply_state != Message.ReplyState.NONE]
    skipped = [f"update {i if i is not None else '?'} ({why})" for i, why in passed_over]
    return StoredUpdates(new_messages, to_answer, skipped)


def _unstorable(update: telegram.Update) -> str:
    """Why this update cannot be stored before trying (an impossible id), or ""."""
    message = update.effective_message
    chat, sender = update.effective_chat, update.effective_user
    if chat is None and message is not None:
        return "a message without a chat"
    if chats.impossible_ids(
        chat.id if chat else None, sender.id if sender else None,
        message.message_id if message else None, message.message_thread_id if message else None,
        _migration(message)[1] if message else None,
    ):
        return "an id beyond 64 bits"
    return ""


def _batch_store(bot: Bot, task: BotTask, updates: Sequence[telegram.Update], claim: bool) -> list[Message]:
    entries = []
    membership = []
    for update in updates:
        if update.my_chat_member is not None:
            membership.append(update.my_chat_member)
            continue
        message = update.message or update.edited_message
        if message is None:
            log.info("bot %s: skipped update %s of an unhandled kind", bot.pk, update.update_id)
            continue
        entries.append((update, message, message_kind(message, edited=update.edited_message is not None)))
    rows: list[Message] = []
    if entries:
        chat_rows = chats.chats_upsert(bot.pk, [message.chat for _, message, _ in entries])
        users = chats.users_upsert([message.from_user for _, message, _ in entries if message.from_user])
        rows = Message.objects.bulk_create(
            Message(
                bot=bot,
                chat=chat_rows[message.chat.id],
                sender=users[message.from_user.id] if message.from_user else None,
                direction=Message.Direction.IN,
                kind=kind,
                update_id=update.update_id,
                telegram_message_id=message.message_id,
                message_thread_id=message.message_thread_id if message.is_topic_message else None,
                text=message_text(message),
                reply_to_telegram_message_id=(
                    message.reply_to_message.message_id if message.reply_to_message else None
                ),
                telegram_date=message.edit_date or message.date,
                **media.fields_of(message),
                **_answering(task, bot, message, kind, claim),
            )
            for update, message, kind in entries
        )
    if membership:
        chats.membership_apply(bot.pk, membership)
    for _, message, _ in entries:
        old_id, new_id = _migration(message)
        if new_id is not None:
            chats.chat_migrate(bot_id=bot.pk, old_id=old_id, new_id=new_id)
    return rows


def _migration(message: telegram.Message) -> tuple[int, int | None]:
    """(old id, new id) when this service message says a group became a supergroup."""
    if message.migrate_to_chat_id:
        return message.chat.id, message.migrate_to_chat_id
    if message.migrate_from_chat_id:
        return message.migrate_from_chat_id, message.chat.id
    return message.chat.id, None


def _answering(task: BotTask, bot: Bot, message: telegram.Message, kind: str, claim: bool) -> dict[str, object]:
    """A message that wants an answer is stored claimed by this process, which answers
    it, or (`claim` off) waiting for a worker."""
    if not decisions.reply_wanted(task=task, bot=bot, message=message, kind=kind):
        return {"reply_state": Message.ReplyState.NONE}
    if claim:
        return {"reply_state": Message.ReplyState.GENERATING, **claims.taken()}
    return {"reply_state": Message.ReplyState.PENDING}


def message_kind(message: telegram.Message, *, edited: bool) -> str:
    if edited:
        return Message.Kind.EDITED
    if message.text:
        return Message.Kind.COMMAND if decisions.command_of(message) else Message.Kind.TEXT
    if any(getattr(message, name, None) for name in _SERVICE_FIELDS):
        return Message.Kind.SERVICE
    if any(getattr(message, name, None) for name in wording.MEDIA_PLACEHOLDERS):
        return Message.Kind.MEDIA
    return Message.Kind.OTHER


def message_text(message: telegram.Message) -> str:
    if message.text:
        return message.text
    for name, placeholder in wording.MEDIA_PLACEHOLDERS.items():
        if getattr(message, name, None):
            return f"{placeholder} {message.caption}" if message.caption else placeholder
    return ""


class ConversationSink:
    """What bots.updates hands each stored-to-be batch to (registered in apps.py)."""

    def store(
        self, *, task: BotTask, updates: Sequence[telegram.Update],
        unreadable: Sequence[tuple[int | None, str]], claim: bool,
    ) -> StoredBatch:
        stored = updates_store(bot=task.bot, task=task, updates=updates, unreadable=unreadable, claim=claim)
        return StoredBatch(
            new_messages=len(stored.new_messages),
            to_answer=[(m.pk, m.chat_id) for m in stored.to_answer],
            skipped=stored.skipped,
        )

    def answer(self, batch: StoredBatch) -> None:
        replies.answer_start(batch.to_answer)

    def hand_off(self, batch: StoredBatch) -> None:
        # Imported here: the tasks module imports the reaper, which imports replies.
        from conversations.tasks import pushed_answer

        # Called, not sent: the drain runs on a worker already, which answers them.
        pushed_answer([message_id for message_id, _ in batch.to_answer])
