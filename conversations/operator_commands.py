"""Commands for a bot's operators, inside Telegram (conversations.gate lets only the
bot's operators run them, only in a private chat with it):

    /status                     the task, uptime, today's figures, the AI's health
    /stats                      users, messages and tokens: today and the last 7 days
    /pause, /resume             stop answering others (messages are still logged), and back
    /allow, /deny <id|@user>    an access rule (the opposite rule for the same subject goes)
    /quota <id|@user> <n|unlimited>   the person's own daily message quota
    /broadcast <text>           asks first; /confirm sends it to every active private chat,
                                as a scheduled message sent now (the scheduled-send path)

Each returns the text to answer with. Database work goes through core.dbwork (the
process's reader threads and its writer); the I/O loop never touches the ORM.
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from bots.models import Bot, BotTask
from conversations import broadcasts, gate
from conversations.models import Chat, Message, ScheduledMessage
from core import dbwork
from core.redis import async_redis_client
from credentials.generation import circuit_for
from policy.models import AccessRule, QuotaOverride, UsageDay
from policy.subjects import subject_normalize

BROADCAST_CONFIRM_SECONDS = 600
BROADCAST_PREVIEW = 200  # characters of the text repeated in the question


async def run(message: Message, command: str) -> str:
    _, argument = gate.command_of(message)
    try:
        if command == "status":
            return await _status(message)
        if command == "stats":
            return await dbwork.read(_stats, message.bot_id)
        if command in ("pause", "resume"):
            return await dbwork.write(_pause, message.bot_id, command == "pause")
        if command in ("allow", "deny"):
            return await dbwork.write(_rule, message.bot_id, command, argument)
        if command == "quota":
            return await dbwork.write(_quota, message.bot_id, argument)
        if command == "broadcast":
            return await _broadcast_ask(message, argument)
        if command == "confirm":
            return await _broadcast_confirm(message)
    except UsageError as error:
        return str(error)
    return f"/{command} is not an operator command."


class UsageError(Exception):
    """The command was written wrong; the message says how to write it."""


# --- /status and /stats -----------------------------------------------------------------


async def _status(message: Message) -> str:
    figures = await dbwork.read(_status_figures, message.bot_id)
    credential = message.bot.credential
    health = "no AI credential (fixed lines only)"
    if credential is not None:
        health = f"{credential.name}: {await circuit_for(credential).state()}"
    return f"{figures}\nAI: {health}"


def _status_figures(bot_id: int) -> str:
    bot = Bot.objects.get(pk=bot_id)
    task = BotTask.objects.filter(bot_id=bot_id).order_by("-started_at", "-pk").first()
    since = _today_start(bot)
    today = Message.objects.filter(bot_id=bot_id, created_at__gte=since)
    received = today.filter(direction=Message.Direction.IN).count()
    replied = today.filter(direction=Message.Direction.IN, reply_state=Message.ReplyState.REPLIED).count()
    errors = today.filter(direction=Message.Direction.IN, reply_state=Message.ReplyState.FAILED).count()
    state = "no task" if task is None else task.status
    if task is not None and task.status == BotTask.Status.RUNNING and task.started_at:
        state += f" for {_duration(timezone.now() - task.started_at)} ({bot.update_mode})"
    lines = [
        f"Task: {state}" + (" · PAUSED (/resume)" if bot.paused_at else ""),
        f"Today: {received} messages, {replied} answered, {errors} failed",
    ]
    if task is not None and task.last_error:
        lines.append(f"Last task error: {task.last_error[:200]}")
    return "\n".join(lines)


def _stats(bot_id: int) -> str:
    bot = Bot.objects.get(pk=bot_id)
    since_today = _today_start(bot)
    lines = []
    for label, since in (("Today", since_today), ("7 days", since_today - timedelta(days=6))):
        incoming = Message.objects.filter(bot_id=bot_id, direction=Message.Direction.IN, created_at__gte=since)
        counted = incoming.aggregate(messages=Count("pk"), users=Count("sender", distinct=True))
        tokens = UsageDay.objects.filter(
            bot_id=bot_id, scope=UsageDay.Scope.BOT, day__gte=timezone.localtime(since, bot.time_zone).date()
        ).aggregate(tokens=Sum("tokens"), refused=Sum("refused"))
        lines.append(
            f"{label}: {counted['users']} users, {counted['messages']} messages, "
            f"{tokens['tokens'] or 0} tokens, {tokens['refused'] or 0} refused"
        )
    return "\n".join(lines)


def _today_start(bot: Bot) -> datetime:
    local = timezone.localtime(timezone.now(), bot.time_zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return " ".join(f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min")) if n) or "under a minute"


# --- /pause, /allow, /deny, /quota ------------------------------------------------------------


def _pause(bot_id: int, pause: bool) -> str:
    Bot.objects.filter(pk=bot_id).update(paused_at=timezone.now() if pause else None)
    if pause:
        return "Paused: I keep logging messages but answer only operators. /resume to answer again."
    return "Resumed: I answer everyone again."


def _subject(text: str, usage: str, *, groups: bool = True) -> str:
    if not text:
        raise UsageError(f"Write it as {usage}.")
    try:
        return subject_normalize(text.split()[0], groups=groups)
    except Exception as error:  # ValidationError: its message says what is wrong
        raise UsageError(f"{' '.join(getattr(error, 'messages', [str(error)]))} Write it as {usage}.") from None


def _rule(bot_id: int, effect: str, argument: str) -> str:
    subject = _subject(argument, f"/{effect} <user id | @username | group id>")
    with transaction.atomic():
        AccessRule.objects.filter(bot_id=bot_id, subject=subject).exclude(effect=effect).delete()
        AccessRule.objects.get_or_create(bot_id=bot_id, effect=effect, subject=subject,
                                         defaults={"note": "from Telegram (operator command)"})
    said = f"{'Allowed' if effect == 'allow' else 'Denied'} {subject}."
    mode = Bot.objects.values_list("access_mode", flat=True).get(pk=bot_id)
    if effect == "allow" and mode == Bot.AccessMode.OPEN:
        said += " (Access is open: everyone may talk to me. Switch the bot to its allow list in the admin to limit it.)"
    return said


def _quota(bot_id: int, argument: str) -> str:
    usage = "/quota <user id | @username> <messages a day | unlimited>"
    parts = argument.split()
    if len(parts) != 2:
        raise UsageError(f"Write it as {usage}.")
    subject = _subject(parts[0], usage, groups=False)
    amount = parts[1].lower()
    if amount != "unlimited" and not (amount.isdigit() and int(amount) < 2**31):
        raise UsageError(f"“{parts[1][:20]}” is not a number of messages. Write it as {usage}.")
    daily = None if amount == "unlimited" else int(amount)
    QuotaOverride.objects.update_or_create(
        bot_id=bot_id, subject=subject,
        defaults={"daily_messages": daily, "note": "from Telegram (operator command)"},
    )
    return f"{subject} may now have {amount if daily is None else daily} AI answers a day."


# --- /broadcast, /confirm ----------------------------------------------------------------------


def _pending_key(message: Message) -> str:
    sender = message.sender.telegram_id if message.sender else 0
    return f"botfleet:operator-broadcast:{message.bot_id}:{sender}"


async def _broadcast_ask(message: Message, text: str) -> str:
    if not text:
        raise UsageError("Write it as /broadcast <the text to send>.")
    chats = await dbwork.read(_private_chats, message.bot_id)
    await async_redis_client().set(_pending_key(message), text, ex=BROADCAST_CONFIRM_SECONDS)
    preview = text if len(text) <= BROADCAST_PREVIEW else text[: BROADCAST_PREVIEW - 1] + "…"
    return (
        f"This goes to {chats} private chat(s):\n\n{preview}\n\n"
        f"Send /confirm within {BROADCAST_CONFIRM_SECONDS // 60} minutes to send it."
    )


async def _broadcast_confirm(message: Message) -> str:
    pending = await async_redis_client().getdel(_pending_key(message))
    if pending is None:
        return "Nothing to confirm: send /broadcast <text> first (a request lasts 10 minutes)."
    text = pending.decode() if isinstance(pending, bytes) else str(pending)
    return await dbwork.write(_broadcast_send, message.bot_id, text, message.sender.display_name if message.sender else "")


def _private_chats(bot_id: int) -> int:
    return Chat.objects.filter(bot_id=bot_id, is_active=True, type=Chat.Type.PRIVATE).count()


def _broadcast_send(bot_id: int, text: str, operator: str) -> str:
    now = timezone.now()
    scheduled = ScheduledMessage.objects.create(
        name=f"/broadcast by {operator or 'an operator'} at {timezone.localtime(now):%Y-%m-%d %H:%M}"[:100],
        bot_id=bot_id, audience=ScheduledMessage.Audience.PRIVATE, text=text,
        kind=ScheduledMessage.Kind.ONCE, run_at=now,
        enabled=False,  # sent now, once: never by beat
    )
    run = broadcasts.scheduled_send_now(scheduled=scheduled)
    return (
        f"Sending to {_private_chats(bot_id)} private chat(s) now (scheduled message #{scheduled.pk}, "
        f"run #{run.pk}; the admin shows its progress)."
    )
