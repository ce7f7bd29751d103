"""Answering one incoming message: compose, send in parts, log what was sent.

The incoming message's reply_state is the source of truth:

    PENDING --claim--> GENERATING --parts stored--> SENDING --all sent--> REPLIED
                                  (or FAILED, or NONE when the task was stopped)

Safe to run twice: only the run that moves PENDING to GENERATING does anything. A send
that must wait (rate limit, 429) puts the message back to PENDING with its parts
stored, and the next run sends only the parts Telegram has not yet accepted, so a
deferred or retried reply never repeats a part and never changes its wording.
"""

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from telegram import MessageEntity

from bots import ratelimit, sending, telegram
from bots.formatting import FormattedText
from bots.models import BotTask
from bots.services import task_error_record
from conversations import context, wording
from conversations.models import Chat, Message, Persona
from credentials.encryption import DecryptionError
from credentials.generation import reply_generate
from credentials.providers import ProviderError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # transient Telegram failures before a reply is given up


@dataclass(frozen=True)
class ReplyOutcome:
    retry_in: float | None = None  # seconds; None = done (replied, failed or skipped)


@dataclass(frozen=True)
class Composition:
    text: str
    ai_model: str = ""
    ai_latency_ms: int | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str = ""
    error: str = ""


def reply_process(*, message_id: int) -> ReplyOutcome:
    if not _state_move(message_id, Message.ReplyState.PENDING, Message.ReplyState.GENERATING):
        return ReplyOutcome()  # already being handled, or done
    message = Message.objects.select_related(
        "bot__persona", "bot__credential", "chat", "sender"
    ).get(pk=message_id)
    task = BotTask.objects.filter(bot=message.bot, status=BotTask.Status.RUNNING).first()
    if task is None:
        _close(message, Message.ReplyState.NONE, "Not answered: the bot's task was stopped.")
        return ReplyOutcome()
    if not message.chat.is_active:
        _close(message, Message.ReplyState.FAILED, f"Chat inactive: {message.chat.inactive_reason}")
        return ReplyOutcome()
    return _deliver(message, task)


def _deliver(message: Message, task: BotTask) -> ReplyOutcome:
    # Three write transactions for a one-part reply (claim, parts stored, sent and
    # closed): on SQLite every one waits for the single writer lock.
    try:
        endpoint = telegram.BotEndpoint.of(message.bot)
        parts = list(message.replies.order_by("id"))
        if parts:  # a deferred reply resumes with the parts it stored
            _state_move(message.pk, Message.ReplyState.GENERATING, Message.ReplyState.SENDING)
        else:  # stores them and moves to sending in one transaction
            parts = _parts_create(message, task, endpoint)
        _parts_send(message, task, endpoint, parts)
    except ratelimit.SlotUnavailable as wait:
        return _defer(message, wait.wait)
    except telegram.FloodWait as flood:
        return _defer(message, flood.retry_after)
    except telegram.ChatUnavailable as gone:
        _chat_deactivate(message.chat, str(gone))
        _close(message, Message.ReplyState.FAILED, str(gone))
        return ReplyOutcome()
    except telegram.TransientFailure as failure:
        return _retry_or_fail(message, task, str(failure))
    except (telegram.TelegramFailure, DecryptionError) as failure:
        _close(message, Message.ReplyState.FAILED, str(failure))
        task_error_record(task_id=task.pk, error=f"Reply failed: {failure}")
        return ReplyOutcome()
    return ReplyOutcome()


def _parts_create(message: Message, task: BotTask, endpoint: telegram.BotEndpoint) -> list[Message]:
    composition = reply_compose(message=message, task=task, endpoint=endpoint)
    parts = sending.reply_parts(composition.text, max_length=task.max_response_length)
    if not parts:  # never send an empty message
        parts = sending.reply_parts(_persona(message).fallback_reply, max_length=task.max_response_length)
    rows = [
        Message(
            bot=message.bot, chat=message.chat, direction=Message.Direction.OUT,
            text=part.text, entities=[e.to_dict() for e in part.entities], reply_to=message,
            **(_ai_fields(composition) if index == 0 else {}),
        )
        for index, part in enumerate(parts)
    ]
    with transaction.atomic():
        for row in rows:  # one by one: bulk_create returns no ids on SQLite < 3.35 backends
            row.save(force_insert=True)
        _state_move(message.pk, Message.ReplyState.GENERATING, Message.ReplyState.SENDING)
    return rows


def _ai_fields(composition: Composition) -> dict[str, object]:
    return {
        "ai_model": composition.ai_model, "ai_latency_ms": composition.ai_latency_ms,
        "tokens_in": composition.tokens_in, "tokens_out": composition.tokens_out,
        "finish_reason": composition.finish_reason, "error": composition.error,
    }


def _parts_send(
    message: Message, task: BotTask, endpoint: telegram.BotEndpoint, parts: list[Message]
) -> None:
    """Send the parts Telegram has not accepted yet; the last one closes the reply."""
    # In groups the first part quotes the question, so people see whom the bot answers.
    quote = message.telegram_message_id if message.chat.is_group else None
    already_sent = any(part.telegram_message_id for part in parts)
    unsent = [part for part in parts if part.telegram_message_id is None]
    for index, part in enumerate(unsent):
        telegram_id = sending.part_send(
            endpoint=endpoint,
            chat_id=message.chat.telegram_id,
            is_group=message.chat.is_group,
            part=FormattedText(part.text, _entities(part)),
            reply_to_message_id=None if already_sent else quote,
        )
        already_sent = True
        now = timezone.now()
        with transaction.atomic():
            Message.objects.filter(pk=part.pk).update(
                telegram_message_id=telegram_id, telegram_date=now, updated_at=now
            )
            if index == len(unsent) - 1:
                _close(message, Message.ReplyState.REPLIED)
                BotTask.objects.filter(pk=task.pk).update(replies_sent=F("replies_sent") + 1)


def _entities(part: Message) -> list[MessageEntity]:
    return [MessageEntity.de_json(e, None) for e in part.entities]


def reply_compose(*, message: Message, task: BotTask, endpoint: telegram.BotEndpoint) -> Composition:
    persona = _persona(message)
    fixed = _fixed_line(message, persona)
    if fixed is not None:
        return Composition(text=fixed)
    credential = message.bot.credential if task.use_ai else None
    remote = credential is not None and credential.provider != credential.Provider.OFFLINE
    if remote:
        # Worth a request only when the answer takes a while: an offline one is instant.
        _typing(endpoint, message.chat.telegram_id)
    request = context.generation_request(message=message, persona=persona, with_history=remote)
    try:
        result = reply_generate(credential=credential, request=request)
    except ProviderError as failure:
        return Composition(text=persona.fallback_reply, error=str(failure))
    if not result.text.strip():
        return Composition(
            text=persona.fallback_reply, ai_model=result.model, finish_reason=result.finish_reason,
            error="The AI returned no text.",
        )
    return Composition(
        text=result.text, ai_model=result.model, ai_latency_ms=result.latency_ms,
        tokens_in=result.tokens_in, tokens_out=result.tokens_out,
        finish_reason=result.finish_reason,
    )


def _fixed_line(message: Message, persona: Persona) -> str | None:
    if message.kind == Message.Kind.MEDIA:
        return wording.MEDIA_IN_PRIVATE
    if message.kind == Message.Kind.COMMAND:
        command = message.text.split(maxsplit=1)[0].split("@")[0].lower()
        return {"/start": persona.greeting, "/help": persona.help_reply}.get(command)
    return None


def _typing(endpoint: telegram.BotEndpoint, chat_id: int) -> None:
    try:
        telegram.send_chat_action(endpoint, chat_id=chat_id)
    except telegram.TelegramFailure:
        pass  # only a courtesy: the reply itself will surface any real problem


def _persona(message: Message) -> Persona:
    return message.bot.persona or Persona(name="default", instructions="You are a helpful assistant.")


# --- state changes ---------------------------------------------------------------


def _state_move(message_id: int, from_state: str, to_state: str) -> bool:
    return (
        Message.objects.filter(pk=message_id, reply_state=from_state)
        .update(reply_state=to_state, updated_at=timezone.now())
        == 1
    )


def _close(message: Message, state: str, error: str = "") -> None:
    fields: dict[str, object] = {"reply_state": state, "updated_at": timezone.now()}
    if error:
        fields["error"] = error
    Message.objects.filter(pk=message.pk).update(**fields)


def _defer(message: Message, seconds: float) -> ReplyOutcome:
    Message.objects.filter(pk=message.pk).update(
        reply_state=Message.ReplyState.PENDING, updated_at=timezone.now()
    )
    return ReplyOutcome(retry_in=max(seconds, 0.05))


def _retry_or_fail(message: Message, task: BotTask, error: str) -> ReplyOutcome:
    attempts = message.reply_attempts + 1
    Message.objects.filter(pk=message.pk).update(reply_attempts=attempts, error=error)
    if attempts >= MAX_ATTEMPTS:
        _close(message, Message.ReplyState.FAILED, f"Gave up after {attempts} attempts: {error}")
        task_error_record(task_id=task.pk, error=f"Reply failed: {error}")
        return ReplyOutcome()
    return _defer(message, min(2**attempts, 60))


def _chat_deactivate(chat: Chat, reason: str) -> None:
    Chat.objects.filter(pk=chat.pk).update(is_active=False, inactive_reason=reason[:255])
    log.info("chat %s of bot %s marked inactive: %s", chat.telegram_id, chat.bot_id, reason)
