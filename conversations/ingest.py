"""Storing Telegram updates in the message log, once each, and handing the messages
that want an answer to conversations.replies (this app's side of bots.polling).

Idempotent by the unique (bot, update_id) constraint: a redelivered update (a crash
before the offset moved, two pollers overlapping after a revival) inserts nothing and
is therefore never answered twice. Unknown update shapes are logged and skipped.
A message that wants an answer is stored already claimed by the storing process
(GENERATING), which answers it next: no second write to claim it.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import telegram
from django.db import IntegrityError, transaction
from django.utils import timezone

from bots.models import Bot, BotTask
from bots.polling import StoredBatch
from conversations import claims, decisions, replies, wording
from conversations.models import Chat, Message, TelegramUser

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


def updates_store(*, bot: Bot, task: BotTask, updates: Sequence[telegram.Update]) -> StoredUpdates:
    known = set(
        Message.objects.filter(bot=bot, update_id__in=[u.update_id for u in updates])
        .values_list("update_id", flat=True)
    )
    fresh = list({u.update_id: u for u in updates if u.update_id not in known}.values())
    # The batch in a handful of statements (one look-up and one insert for chats, users
    # and messages each): a burst of a hundred updates costs what one did. If that
    # fails (an overlapping poller stored some of them meanwhile, or one update cannot
    # be stored at all), the batch is redone one update at a time, a savepoint each:
    # the others are stored, and one bad update never holds up the ones behind it.
    skipped: list[str] = []
    try:
        with transaction.atomic():
            new_messages = _batch_store(bot, task, fresh)
    except Exception:
        new_messages = []
        for update in fresh:
            try:
                with transaction.atomic():
                    new_messages += _batch_store(bot, task, [update])
            except IntegrityError:
                pass  # stored meanwhile by an overlapping poller
            except Exception as failure:
                log.warning("bot %s: update %s cannot be stored; skipped", bot.pk, update.update_id,
                            exc_info=True)
                skipped.append(f"update {update.update_id} ({type(failure).__name__})")
    to_answer = [m for m in new_messages if m.reply_state == Message.ReplyState.GENERATING]
    return StoredUpdates(new_messages, to_answer, skipped)


def _batch_store(bot: Bot, task: BotTask, updates: Sequence[telegram.Update]) -> list[Message]:
    entries = []
    for update in updates:
        message = update.message or update.edited_message
        if message is None:
            log.info("bot %s: skipped update %s of an unhandled kind", bot.pk, update.update_id)
            continue
        entries.append((update, message, message_kind(message, edited=update.edited_message is not None)))
    if not entries:
        return []
    chats = chats_upsert(bot, [message.chat for _, message, _ in entries])
    users = users_upsert([message.from_user for _, message, _ in entries if message.from_user])
    rows = [
        Message(
            bot=bot,
            chat=chats[message.chat.id],
            sender=users[message.from_user.id] if message.from_user else None,
            direction=Message.Direction.IN,
            kind=kind,
            update_id=update.update_id,
            telegram_message_id=message.message_id,
            text=message_text(message),
            reply_to_telegram_message_id=(
                message.reply_to_message.message_id if message.reply_to_message else None
            ),
            telegram_date=message.edit_date or message.date,
            **_answering(task, bot, message, kind),
        )
        for update, message, kind in entries
    ]
    return Message.objects.bulk_create(rows)


def _answering(task: BotTask, bot: Bot, message: telegram.Message, kind: str) -> dict[str, object]:
    """A message that wants an answer is stored claimed by this process, which answers it."""
    if decisions.reply_wanted(task=task, bot=bot, message=message, kind=kind):
        return {"reply_state": Message.ReplyState.GENERATING, **claims.taken()}
    return {"reply_state": Message.ReplyState.NONE}


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


def chats_upsert(bot: Bot, seen: Sequence[telegram.Chat]) -> dict[int, Chat]:
    """The bot's rows for these chats by Telegram id: created when new, titles kept
    current, and reactivated: a blocked bot receives nothing from that user, and a bot
    removed from a group nothing from it, so a new message means we can write there."""
    latest = {chat.id: chat for chat in seen}
    rows = {c.telegram_id: c for c in Chat.objects.filter(bot=bot, telegram_id__in=latest)}
    now = timezone.now()
    Chat.objects.filter(pk__in=[row.pk for row in rows.values()]).update(last_message_at=now)
    for telegram_id, row in rows.items():
        title = latest[telegram_id].title
        changes: dict[str, object] = {}
        if title and title != row.title:
            changes["title"] = title
        if not row.is_active:
            changes.update(is_active=True, inactive_reason="")
        if changes:
            Chat.objects.filter(pk=row.pk).update(**changes)
    new = [
        Chat(bot=bot, telegram_id=chat.id, type=chat.type, title=chat.title or chat.full_name or "",
             username=chat.username or "", last_message_at=now)
        for telegram_id, chat in latest.items() if telegram_id not in rows
    ]
    rows.update((row.telegram_id, row) for row in Chat.objects.bulk_create(new))
    return rows


def users_upsert(seen: Sequence[telegram.User]) -> dict[int, TelegramUser]:
    """Rows for these Telegram accounts by id, created when new; written only when a
    person changed their name (most messages change nothing)."""
    latest = {user.id: _user_fields(user) for user in seen}
    rows = {u.telegram_id: u for u in TelegramUser.objects.filter(telegram_id__in=latest)}
    for telegram_id, row in rows.items():
        fields = latest[telegram_id]
        if any(getattr(row, name) != value for name, value in fields.items()):
            TelegramUser.objects.filter(pk=row.pk).update(**fields)
    new = [TelegramUser(telegram_id=i, **fields) for i, fields in latest.items() if i not in rows]
    rows.update((row.telegram_id, row) for row in TelegramUser.objects.bulk_create(new))
    return rows


def _user_fields(user: telegram.User) -> dict[str, object]:
    return {
        "first_name": user.first_name or "",
        "last_name": user.last_name or "",
        "username": user.username or "",
        "is_bot": user.is_bot,
        "language_code": user.language_code or "",
    }


class ConversationSink:
    """What bots.polling hands each stored-to-be batch to (registered in apps.py)."""

    def store(self, *, task: BotTask, updates: Sequence[telegram.Update]) -> StoredBatch:
        stored = updates_store(bot=task.bot, task=task, updates=updates)
        return StoredBatch(
            new_messages=len(stored.new_messages),
            to_answer=[(m.pk, m.chat_id) for m in stored.to_answer],
            skipped=stored.skipped,
        )

    def answer(self, batch: StoredBatch) -> None:
        replies.answer_start(batch.to_answer)
