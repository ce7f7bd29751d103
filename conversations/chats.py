"""Who and where: the bot's chats and the people in them, kept as Telegram has them.

- rows for chats and people seen in updates (created when new, names kept current);
- the bot's membership (`my_chat_member`): removed from a group or blocked by a person,
  the chat goes inactive with the reason; added back, it is active again;
- a group that became a supergroup (Telegram gives it a new id): the chat row keeps its
  history and schedules and takes the new id.

Every string from Telegram is cut to its column here: a hostile update with a
300-character name must be stored, not refused by PostgreSQL (SQLite never checks).
"""

import logging
from collections.abc import Sequence

import telegram
from django.db.models import Model
from django.utils import timezone

from bots.telegram import MAX_STORABLE_ID
from conversations.models import Chat, Delivery, Message, TelegramUser

log = logging.getLogger(__name__)

_SIGNED_64 = range(-MAX_STORABLE_ID - 1, MAX_STORABLE_ID + 1)


def fits(model: type[Model], field: str, value: str | None) -> str:
    """`value` cut to the length of `model.field` ("" for None)."""
    limit = getattr(model._meta.get_field(field), "max_length", None)
    text = value or ""
    return text[:limit] if limit else text


def impossible_ids(*ids: int | None) -> bool:
    """Whether any of these Telegram ids cannot be stored (beyond a signed 64-bit number)."""
    return any(i is not None and i not in _SIGNED_64 for i in ids)


def chats_upsert(bot_id: int, seen: Sequence[telegram.Chat], *, reactivate: bool = True) -> dict[int, Chat]:
    """The bot's rows for these chats by Telegram id: created when new, titles kept
    current, and (`reactivate`) active again: a blocked bot receives nothing from that
    user, and a bot removed from a group nothing from it, so a new message means we can
    write there."""
    latest = {chat.id: chat for chat in seen}
    rows = {c.telegram_id: c for c in Chat.objects.filter(bot_id=bot_id, telegram_id__in=latest)}
    now = timezone.now()
    Chat.objects.filter(pk__in=[row.pk for row in rows.values()]).update(last_message_at=now)
    for telegram_id, row in rows.items():
        title = fits(Chat, "title", latest[telegram_id].title)
        changes: dict[str, object] = {}
        if title and title != row.title:
            changes["title"] = title
        if reactivate and not row.is_active:
            changes.update(is_active=True, inactive_reason="")
        if changes:
            Chat.objects.filter(pk=row.pk).update(**changes)
            for name, value in changes.items():
                setattr(row, name, value)
    new = [
        Chat(bot_id=bot_id, telegram_id=chat.id, type=fits(Chat, "type", chat.type),
             title=fits(Chat, "title", chat.title or chat.full_name),
             username=fits(Chat, "username", chat.username), last_message_at=now)
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
        "first_name": fits(TelegramUser, "first_name", user.first_name),
        "last_name": fits(TelegramUser, "last_name", user.last_name),
        "username": fits(TelegramUser, "username", user.username),
        "is_bot": user.is_bot,
        "language_code": fits(TelegramUser, "language_code", user.language_code),
    }


# --- membership -------------------------------------------------------------------------

_GONE = {telegram.ChatMember.LEFT, telegram.ChatMember.BANNED}


def membership_apply(bot_id: int, changes: Sequence[telegram.ChatMemberUpdated]) -> None:
    """The bot's own membership changed in these chats (oldest first)."""
    rows = chats_upsert(bot_id, [change.chat for change in changes], reactivate=False)
    for change in changes:
        row = rows[change.chat.id]
        reason = _gone_reason(change)
        if reason:
            Chat.objects.filter(pk=row.pk).update(is_active=False, inactive_reason=fits(Chat, "inactive_reason", reason))
        else:
            Chat.objects.filter(pk=row.pk).update(is_active=True, inactive_reason="")
        log.info("bot %s: chat %s %s", bot_id, change.chat.id, reason or "active again")


def _gone_reason(change: telegram.ChatMemberUpdated) -> str:
    """Why the bot can no longer write to the chat, or "" when it can."""
    status = change.new_chat_member.status
    if status not in _GONE and not (
        status == telegram.ChatMember.RESTRICTED and not getattr(change.new_chat_member, "is_member", True)
    ):
        return ""
    when = change.date.strftime("%Y-%m-%d %H:%M UTC")
    if change.chat.type == telegram.constants.ChatType.PRIVATE:
        return f"The user blocked the bot ({when})."
    who = change.from_user.full_name if change.from_user else "someone"
    return f"{who} removed the bot from the group ({when})."


# --- a group that became a supergroup ------------------------------------------------------


def chat_migrate(*, bot_id: int, old_id: int, new_id: int) -> None:
    """Telegram moved a group to a new id (it became a supergroup). The chat's row takes
    the new id, keeping its history, schedules and settings. When the supergroup's first
    messages were stored before we learnt (a row for the new id exists), they join the
    old row and that row goes."""
    if old_id == new_id or impossible_ids(old_id, new_id):
        return
    old = Chat.objects.filter(bot_id=bot_id, telegram_id=old_id).first()
    if old is None:
        return  # never seen: the new id's row is made when its messages come
    new = Chat.objects.filter(bot_id=bot_id, telegram_id=new_id).first()
    if new is not None:
        Message.objects.filter(chat=new).update(chat=old)
        taken = Delivery.objects.filter(chat=old).values_list("run_id", flat=True)
        Delivery.objects.filter(chat=new).exclude(run_id__in=taken).update(chat=old)
        for scheduled in new.scheduled_messages.all():
            scheduled.chats.add(old)
        new.delete()
    Chat.objects.filter(pk=old.pk).update(
        telegram_id=new_id, type=Chat.Type.SUPERGROUP, is_active=True, inactive_reason=""
    )
    log.info("bot %s: group %s is now supergroup %s", bot_id, old_id, new_id)
