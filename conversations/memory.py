"""Long conversations that stay coherent, and people the bot remembers.

- Summaries: when a chat's history outgrows the persona's budget (conversations.context
  says so while building a question), `summary_request` hands a job to the workers
  (queue "replies"; at most one per chat at a time, never blocking a reply). The job
  has the AI fold the older turns not yet summarised into the chat's summary, keeping
  the newest half of the budget out of it (they are sent as they are). Stored per chat
  and forum topic (`ChatSummary`), editable in the admin, forgotten with /reset.
- Notes about people (personas that remember people): after a person's message, at most
  once per NOTES_INTERVAL, a job has the AI rewrite the short notes it keeps about them
  from their recent messages (`UserFact`, capped).
- Forgetting: a person's messages, the summaries of the chats they wrote in and their
  notes, for one bot or all (the admin's "forget" action).
- Retention: a daily job deletes each bot's messages older than its "keep messages"
  days, in small batches.

AI output is hostile like any input: parsed defensively, cleaned, cut to size.
"""

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from bots.models import Bot
from bots.telegram import cleaned
from conversations import context, wording
from conversations.models import Chat, ChatSummary, Message, Persona, TelegramUser, UserFact
from core.redis import async_redis_client
from credentials.generation import text_generate
from credentials.providers import ChatTurn, GenerationRequest, ProviderError
from policy.models import UsageDay

log = logging.getLogger(__name__)

SUMMARY_MAX_CHARS = 4000  # a summary longer than this is cut (the AI was asked for far less)
NOTES_MAX = 10  # notes about one person
NOTE_MAX_CHARS = 200
NOTES_RECENT_MESSAGES = 20  # of the person's messages the notes are written from
RETENTION_BATCH = 1000  # rows per DELETE: short transactions, no long lock on the table
RETENTION_PAUSE = 0.05  # seconds between batches: room for the workers' own writes


SUMMARY_JOB_LOCK = 120  # seconds: one summary job per conversation at a time
NOTES_INTERVAL = 600  # seconds: a person's notes are rewritten at most this often


# --- handing jobs to the workers (from the reply pipeline, on the I/O loop) -------------------


async def summary_request(*, chat_id: int, topic: int) -> None:
    if await async_redis_client().set(f"botfleet:summary-job:{chat_id}:{topic}", 1, nx=True, ex=SUMMARY_JOB_LOCK):
        await _enqueue("summary_refresh", chat_id, topic)


async def notes_request(*, bot_id: int, user_id: int) -> None:
    if await async_redis_client().set(f"botfleet:notes-job:{bot_id}:{user_id}", 1, nx=True, ex=NOTES_INTERVAL):
        await _enqueue("notes_refresh", bot_id, user_id)


async def _enqueue(job: str, *args: int) -> None:
    """Publish the job off the loop (kombu's publish blocks); a lost job is asked for
    again by a later message."""
    from conversations import tasks  # tasks import this module

    task = getattr(tasks, job)
    try:
        await asyncio.get_running_loop().run_in_executor(None, lambda: task.delay(*args))
    except Exception:
        log.warning("could not hand the %s job to the workers", job, exc_info=True)


# --- summaries ----------------------------------------------------------------------------


def summary_refresh(*, chat_id: int, topic: int) -> ChatSummary | None:
    """Fold the conversation's older turns into its summary (the job's work). None when
    there is nothing to fold, or the AI could not write it (the next question asks again)."""
    newest = (
        Message.objects.filter(chat_id=chat_id, message_thread_id=topic or None)
        .select_related("bot__persona", "bot__credential", "chat").order_by("-id").first()
    )
    if newest is None or newest.bot.credential is None:
        return None
    persona = newest.bot.persona or Persona(name="default", instructions="You are a helpful assistant.")
    summary = ChatSummary.objects.filter(chat_id=chat_id, topic=topic).first()
    reset = context.reset_at(context.conversation_of(newest), newest.id + 1)
    covered = summary.covers_up_to if summary and summary.covers_up_to > reset else 0
    older = _older_turns(newest, persona, after=covered)
    if not older:
        return None
    previous = summary.text if covered and summary else ""
    try:
        result = text_generate(credential=newest.bot.credential, request=_summary_request(persona, previous, older))
    except ProviderError as failure:
        log.warning("chat %s: could not write its summary: %s", chat_id, failure)
        return None
    text = _clean(result.text, SUMMARY_MAX_CHARS)
    if not text:
        return None
    summary, _ = ChatSummary.objects.update_or_create(
        chat_id=chat_id, topic=topic, defaults={"text": text, "covers_up_to": older[-1].pk}
    )
    return summary


def _older_turns(newest: Message, persona: Persona, *, after: int) -> list[Message]:
    """The turns not yet summarised, except the newest half of the budget (sent as they
    are with the next questions, so the summary need not repeat them)."""
    rows = list(
        context.remembered(context.conversation_of(newest), newest.id + 1, after=after)
        .select_related("sender", "chat").order_by("-id")
    )
    keep = context.newest_within([row.text for row in rows], persona.context_token_budget // 2)
    return list(reversed(rows[keep:]))


def _summary_request(persona: Persona, previous: str, older: list[Message]) -> GenerationRequest:
    lines = [f"{'You' if m.direction == Message.Direction.OUT else context.quoted(_author(m))}: {m.text}" for m in older]
    material = (f"Summary so far:\n{previous}\n\n" if previous else "") + "Messages to add:\n" + "\n".join(lines)
    return GenerationRequest(
        instructions=f"{persona.instructions.strip()}\n\n{wording.SUMMARY_INSTRUCTIONS}",
        message=ChatTurn(role="user", text=material),
        temperature=0.2,
        max_output_tokens=1024,
    )


def _author(message: Message) -> str:
    return message.sender.display_name if message.sender else "someone"


def summary_forget(*, chat_id: int, topic: int) -> None:
    ChatSummary.objects.filter(chat_id=chat_id, topic=topic).delete()


# --- notes about people -----------------------------------------------------------------------


def notes_refresh(*, bot_id: int, user_id: int) -> list[str]:
    """Rewrite the notes a bot keeps about a person from their recent messages; the
    notes now kept."""
    bot = Bot.objects.select_related("persona", "credential").get(pk=bot_id)
    persona = bot.persona
    if persona is None or not persona.remembers_users or bot.credential is None:
        return []
    said = list(
        Message.objects.filter(bot_id=bot_id, sender_id=user_id, direction=Message.Direction.IN)
        .exclude(kind__in=[Message.Kind.EDITED, Message.Kind.SERVICE, Message.Kind.COMMAND])
        .order_by("-id").values_list("text", flat=True)[:NOTES_RECENT_MESSAGES]
    )
    if not said:
        return []
    known = list(UserFact.objects.filter(bot_id=bot_id, user_id=user_id).values_list("text", flat=True))
    request = GenerationRequest(
        instructions=wording.NOTES_INSTRUCTIONS.format(most=NOTES_MAX),
        message=ChatTurn(role="user", text=json.dumps({"notes": known, "messages": list(reversed(said))},
                                                      ensure_ascii=False)),
        temperature=0.0,
        max_output_tokens=512,
    )
    try:
        result = text_generate(credential=bot.credential, request=request)
    except ProviderError as failure:
        log.warning("bot %s: could not write notes about user %s: %s", bot_id, user_id, failure)
        return known
    notes = notes_parse(result.text)
    if notes is None:
        return known  # not the list asked for: keep what was there
    with transaction.atomic():
        UserFact.objects.filter(bot_id=bot_id, user_id=user_id).delete()
        UserFact.objects.bulk_create(UserFact(bot_id=bot_id, user_id=user_id, text=note) for note in notes)
    return notes


def notes_parse(text: str) -> list[str] | None:
    """The notes in the AI's answer (a JSON list of strings, perhaps in a code fence),
    cleaned and capped; None when it is not such a list."""
    match = re.search(r"\[.*\]", text, re.S)
    try:
        value = json.loads(match.group(0)) if match else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    notes = [_clean(item, NOTE_MAX_CHARS) for item in value if isinstance(item, str)]
    return [note for note in dict.fromkeys(notes) if note][:NOTES_MAX]


def _clean(text: str, limit: int) -> str:
    flat = str(cleaned(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


# --- forgetting a person, and retention ------------------------------------------------------


@dataclass(frozen=True)
class Forgotten:
    messages: int
    summaries: int
    notes: int


def user_forget(*, user: TelegramUser, bot: Bot | None = None) -> Forgotten:
    """Delete what a bot (or every bot) keeps of a person: their messages and the bot's
    answers to them, their private chats' whole logs, the summaries of every chat they
    wrote in (rewritten later without them), their notes and usage."""
    bots = Q(bot=bot) if bot is not None else Q()
    chats = Chat.objects.filter(bots, Q(messages__sender=user) | Q(type=Chat.Type.PRIVATE, telegram_id=user.telegram_id)).distinct()
    chat_ids = list(chats.values_list("pk", flat=True))
    with transaction.atomic():
        theirs = Message.objects.filter(bots, sender=user)
        private = Message.objects.filter(bots, chat__type=Chat.Type.PRIVATE, chat__telegram_id=user.telegram_id)
        answers = Message.objects.filter(reply_to__in=theirs)
        messages = _delete(answers) + _delete(theirs) + _delete(private)
        summaries = ChatSummary.objects.filter(chat_id__in=chat_ids).delete()[0]
        notes = UserFact.objects.filter(bots, user=user).delete()[0]
        UsageDay.objects.filter(bots, scope=UsageDay.Scope.USER, subject_id=user.telegram_id).delete()
    log.info("forgot user %s%s: %s message(s), %s summary(ies), %s note(s)", user.pk,
             f" for bot {bot.pk}" if bot else "", messages, summaries, notes)
    return Forgotten(messages=messages, summaries=summaries, notes=notes)


def _delete(rows: QuerySet[Message]) -> int:
    return rows.delete()[1].get("conversations.Message", 0)


def messages_expire() -> int:
    """The daily job: each bot's messages older than its "keep messages" days, in
    batches of RETENTION_BATCH (a short transaction each). Rows still being answered or
    sent are kept. Returns how many were deleted."""
    moment = timezone.now()
    deleted = 0
    for bot_id, days in Bot.objects.filter(keep_messages_days__isnull=False).values_list("pk", "keep_messages_days"):
        old = Message.objects.filter(bot_id=bot_id, created_at__lt=moment - timedelta(days=days or 0)).exclude(
            Q(direction=Message.Direction.IN, reply_state__in=[
                Message.ReplyState.PENDING, Message.ReplyState.GENERATING, Message.ReplyState.SENDING])
            | Q(direction=Message.Direction.OUT, send_state__in=[Message.SendState.QUEUED, Message.SendState.SENDING])
        )
        while ids := list(old.values_list("pk", flat=True)[:RETENTION_BATCH]):
            deleted += Message.objects.filter(pk__in=ids).delete()[1].get("conversations.Message", 0)
            time.sleep(RETENTION_PAUSE)
    if deleted:
        log.info("retention: deleted %s old message(s)", deleted)
    return deleted

