"""Storing Telegram updates in the message log, once each.

Idempotent by the unique (bot, update_id) constraint: a redelivered update (a crash
before the offset moved, two pollers overlapping after a revival) inserts nothing and
is therefore never answered twice. Unknown update shapes are logged and skipped.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import telegram
from django.db import IntegrityError, transaction
from django.utils import timezone

from bots.models import Bot, BotTask
from conversations import decisions, wording
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


def updates_store(*, bot: Bot, task: BotTask, updates: Sequence[telegram.Update]) -> StoredUpdates:
    known = set(
        Message.objects.filter(bot=bot, update_id__in=[u.update_id for u in updates])
        .values_list("update_id", flat=True)
    )
    fresh = [u for u in updates if u.update_id not in known]
    # One transaction for the batch: a burst of a hundred updates takes the database's
    # write lock once, not a hundred times. Only if an overlapping poller stored one of
    # them meanwhile is the batch redone with a savepoint per update.
    try:
        with transaction.atomic():
            stored = [_update_store(bot, task, u, savepoint=False) for u in fresh]
    except IntegrityError:
        with transaction.atomic():
            stored = [_update_store(bot, task, u, savepoint=True) for u in fresh]
    new_messages = [m for m in stored if m is not None]
    to_answer = [m for m in new_messages if m.reply_state == Message.ReplyState.PENDING]
    return StoredUpdates(new_messages, to_answer)


def _update_store(
    bot: Bot, task: BotTask, update: telegram.Update, *, savepoint: bool
) -> Message | None:
    message = update.message or update.edited_message
    if message is None:
        log.info("bot %s: skipped update %s of an unhandled kind", bot.pk, update.update_id)
        return None
    kind = message_kind(message, edited=update.edited_message is not None)
    answer = decisions.reply_wanted(task=task, bot=bot, message=message, kind=kind)
    try:
        with transaction.atomic(savepoint=savepoint):
            return Message.objects.create(
                bot=bot,
                chat=chat_upsert(bot, message.chat),
                sender=user_upsert(message.from_user) if message.from_user else None,
                direction=Message.Direction.IN,
                kind=kind,
                update_id=update.update_id,
                telegram_message_id=message.message_id,
                text=message_text(message),
                reply_to_telegram_message_id=(
                    message.reply_to_message.message_id if message.reply_to_message else None
                ),
                reply_state=Message.ReplyState.PENDING if answer else Message.ReplyState.NONE,
                telegram_date=message.edit_date or message.date,
            )
    except IntegrityError:
        if not savepoint:
            raise  # the transaction is spoilt: the batch is redone with savepoints
        return None  # stored meanwhile by an overlapping poller


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


def chat_upsert(bot: Bot, chat: telegram.Chat) -> Chat:
    row, created = Chat.objects.get_or_create(
        bot=bot, telegram_id=chat.id,
        defaults={"type": chat.type, "title": chat.title or chat.full_name or "",
                  "username": chat.username or ""},
    )
    fields = {"last_message_at": timezone.now()}
    if not created and (chat.title and chat.title != row.title):
        fields["title"] = chat.title
    if not row.is_active:
        # A blocked bot receives nothing from that user, and a bot removed from a group
        # nothing from it: a new message means we can write there again.
        fields.update(is_active=True, inactive_reason="")
    Chat.objects.filter(pk=row.pk).update(**fields)
    return row


def user_upsert(user: telegram.User) -> TelegramUser:
    fields = {
        "first_name": user.first_name or "",
        "last_name": user.last_name or "",
        "username": user.username or "",
        "is_bot": user.is_bot,
        "language_code": user.language_code or "",
    }
    row, created = TelegramUser.objects.get_or_create(telegram_id=user.id, defaults=fields)
    if not created and any(getattr(row, name) != value for name, value in fields.items()):
        # Write only when the person changed their name: most messages change nothing.
        TelegramUser.objects.filter(pk=row.pk).update(**fields)
    return row
