"""Sending a scheduled message: claim the firing, write the message once, one
delivery per target chat, send them in chunks through the rate-limited sender.

    fire --claim (schedule, slot)--> ScheduledRun PREPARING
         --write the text, one Delivery per chat--> SENDING --lanes--> DONE (or FAILED)

Exactly once, in three layers:
- the run row is unique per (schedule, slot): a second beat, a re-delivered fire
  task or a replayed "Send now" inserts nothing and so sends nothing;
- each Delivery is unique per (run, chat) and is claimed PENDING -> SENDING with a
  conditional UPDATE just before its send, so parallel lanes and re-runs never send
  one chat twice, and a resumed run sends only what is still PENDING;
- a delivery left SENDING by a worker that died is never sent again (Telegram may
  have it: there is no idempotency key), only marked failed by the reaper. The same
  at-most-once rule as a reply interrupted mid-send (bots.supervisor).

Sending goes through bots.sending.part_send, so broadcasts and live replies share each
bot's per-chat and per-bot windows. Lanes run on the "scheduled" queue, each a short
task that re-enqueues itself, so a 10,000-chat broadcast holds a worker thread or two
for seconds at a time and never the "replies" queue.
"""

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, QuerySet
from django.utils import timezone
from telegram import MessageEntity

from bots import ratelimit, sending, telegram
from bots.formatting import FormattedText
from config.ratelimit import Window, slot_acquire
from conversations import scheduling
from conversations.models import (
    SCHEDULED_TEXT_MAX_LENGTH,
    Chat,
    Delivery,
    Message,
    Persona,
    ScheduledMessage,
    ScheduledRun,
)
from credentials.encryption import DecryptionError
from credentials.generation import reply_generate
from credentials.providers import ChatTurn, GenerationRequest, ProviderError

log = logging.getLogger(__name__)

BATCH_SIZE = 50  # deliveries a lane reads at a time (and checks in after)
LANE_BUDGET = 20.0  # seconds a lane task sends before handing its thread back
LANE_MAX_WAIT = 5.0  # a lane may sleep this long for a send slot; longer re-queues it
PACE_MS = 34  # broadcast sends per bot at most one per this: 29.4/s, under Telegram's 30/s
LANE_CHECKIN = timedelta(seconds=60)  # a lane silent past this is resumed by the reaper
CHATS_PER_LANE = 200  # smaller broadcasts use one lane: a second would only add contention
MAX_ATTEMPTS = 5  # transient Telegram failures of one delivery before it is given up
PREPARE_STUCK_AFTER = timedelta(minutes=3)  # longer than an AI call with its retries
SENDING_STUCK_AFTER = timedelta(minutes=3)  # longer than one send with its slot waits

INTERRUPTED = "Interrupted while sending; not sent again to avoid a duplicate."

POST_INSTRUCTIONS = (
    "Now write one message that will be posted as is to the chats you are in, as a "
    "scheduled post, following the request below. Answer with the message only."
)


@dataclass(frozen=True)
class LaneOutcome:
    retry_in: float | None = None  # seconds until this lane runs again; None = done


@dataclass
class Resumption:
    """What the reaper found: runs to prepare again and lanes to start again."""

    prepare: list[int] = field(default_factory=list)
    lanes: list[tuple[int, int]] = field(default_factory=list)
    interrupted: int = 0


# --- claiming a firing ----------------------------------------------------------------


def scheduled_fire(*, scheduled_id: int, now: datetime | None = None) -> ScheduledRun | None:
    """Beat fired the message's PeriodicTask: claim the slot, or do nothing when it
    is claimed already, disabled, outside its window, or gone."""
    now = now or timezone.now()
    scheduled = ScheduledMessage.objects.filter(pk=scheduled_id).first()
    if scheduled is None:
        return None  # deleted after beat read its task
    refusal = _fire_refusal(scheduled, now)
    if refusal:
        log.info("scheduled message %s not sent: %s", scheduled_id, refusal)
        return None
    slot = scheduling.slot_for(scheduled=scheduled, now=now)
    if slot is None:
        log.info("scheduled message %s: firing at %s is for no slot; ignored", scheduled_id, now)
        return None
    return run_claim(scheduled=scheduled, slot=slot, trigger=ScheduledRun.Trigger.SCHEDULE)


def _fire_refusal(scheduled: ScheduledMessage, now: datetime) -> str:
    if not scheduled.enabled:
        return "disabled"
    if scheduled.start_at and now + scheduling.SLOT_EARLY_TOLERANCE < scheduled.start_at:
        return "before its start"
    if scheduled.end_at and now > scheduled.end_at:
        return "after its end"
    return ""


def scheduled_send_now(*, scheduled: ScheduledMessage) -> ScheduledRun:
    """An operator's "send now": a run of its own, whatever the schedule says, handed
    to the workers (queue "scheduled") once the caller's transaction commits."""
    from conversations.tasks import scheduled_run_start  # tasks import this module

    run = run_claim(scheduled=scheduled, slot=timezone.now(), trigger=ScheduledRun.Trigger.MANUAL)
    if run is None:  # the same microsecond twice: the other call owns it
        raise RuntimeError(f"Scheduled message #{scheduled.pk} is being sent right now.")
    transaction.on_commit(lambda: scheduled_run_start.delay(run.pk))
    return run


def run_claim(*, scheduled: ScheduledMessage, slot: datetime, trigger: str) -> ScheduledRun | None:
    """Insert the run for (schedule, slot) unless it exists: the unique constraint is
    the lock two beats lack. None when another firing got there first."""
    try:
        with transaction.atomic():
            run = ScheduledRun.objects.create(scheduled=scheduled, slot=slot, trigger=trigger)
    except IntegrityError:
        log.info("scheduled message %s: slot %s already claimed; duplicate firing ignored",
                 scheduled.pk, slot.isoformat())
        return None
    ScheduledMessage.objects.filter(pk=scheduled.pk).update(
        last_run_at=timezone.now(), last_status=ScheduledRun.State.PREPARING, last_result=""
    )
    return run


# --- preparing a run --------------------------------------------------------------------


def run_prepare(*, run_id: int) -> ScheduledRun | None:
    """Write the message (once per run) and list the chats (one delivery each), then
    open the run for sending. Safe to repeat; returns the run when it is SENDING."""
    run = _run_load(run_id)
    if run is None or run.state != ScheduledRun.State.PREPARING:
        return run if run is not None and run.state == ScheduledRun.State.SENDING else None
    if not run.text:
        _text_write(run)  # the AI call, outside any transaction
        run.refresh_from_db()
    total = _deliveries_create(run)
    lanes = max(1, min(settings.SCHEDULED_BROADCAST_LANES, math.ceil(total / CHATS_PER_LANE)))
    now = timezone.now()
    opened = ScheduledRun.objects.filter(pk=run.pk, state=ScheduledRun.State.PREPARING).update(
        state=ScheduledRun.State.SENDING, total=total, lanes=lanes,
        heartbeat_at=now + LANE_CHECKIN, updated_at=now,
    )
    run.refresh_from_db()
    if opened:
        ScheduledMessage.objects.filter(pk=run.scheduled_id).update(last_status=ScheduledRun.State.SENDING)
    return run if run.state == ScheduledRun.State.SENDING else None


def _run_load(run_id: int) -> ScheduledRun | None:
    return (
        ScheduledRun.objects.select_related("scheduled__bot__persona", "scheduled__bot__credential")
        .filter(pk=run_id).first()
    )


def _text_write(run: ScheduledRun) -> None:
    scheduled = run.scheduled
    text, ai_model, error = scheduled.text, "", ""
    if scheduled.content == ScheduledMessage.Content.PROMPT:
        text, ai_model, error = message_compose(scheduled=scheduled)
    # Conditional: a second preparer (the reaper's) never replaces what the first wrote.
    ScheduledRun.objects.filter(pk=run.pk, text="").update(
        text=text, ai_model=ai_model, error=error, updated_at=timezone.now()
    )


def message_compose(*, scheduled: ScheduledMessage) -> tuple[str, str, str]:
    """The persona writes the message from the prompt: (text, model, error). On an AI
    failure the persona's fallback line is sent and the error recorded."""
    bot = scheduled.bot
    persona = bot.persona or Persona(name="default", instructions="You are a helpful assistant.")
    identity = f"You are the Telegram bot {bot.first_name or bot.name}"
    identity += f" (@{bot.username})." if bot.username else "."
    request = GenerationRequest(
        instructions=f"{persona.instructions.strip()}\n\n{identity} {POST_INSTRUCTIONS}",
        message=ChatTurn(role="user", text=scheduled.text),
        temperature=persona.temperature,
        max_output_tokens=persona.max_output_tokens,
    )
    try:
        result = reply_generate(credential=bot.credential, request=request)
    except ProviderError as failure:
        log.warning("scheduled message %s: AI failed, sending the fallback: %s", scheduled.pk, failure)
        return persona.fallback_reply, "", str(failure)
    if not result.text.strip():
        return persona.fallback_reply, result.model, "The AI returned no text."
    return result.text, result.model, ""


def _targets(scheduled: ScheduledMessage) -> QuerySet[Chat]:
    if scheduled.audience == ScheduledMessage.Audience.ALL:
        return Chat.objects.filter(bot_id=scheduled.bot_id, is_active=True)
    # Inactive chosen chats still get a (skipped) delivery: the operator sees why.
    return scheduled.chats.filter(bot_id=scheduled.bot_id)


def _deliveries_create(run: ScheduledRun) -> int:
    chats = _targets(run.scheduled).values_list("pk", "is_active", "inactive_reason")
    rows = [
        Delivery(run=run, chat_id=chat_id)
        if active else
        Delivery(run=run, chat_id=chat_id, state=Delivery.State.SKIPPED,
                 error=f"Chat inactive: {reason}"[:500])
        for chat_id, active, reason in chats.iterator(chunk_size=2000)
    ]
    # ignore_conflicts: a repeated preparation adds only chats it had not listed.
    Delivery.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    return Delivery.objects.filter(run=run).count()


# --- sending ------------------------------------------------------------------------------


def run_lane_send(*, run_id: int, lane: int, budget: float = LANE_BUDGET) -> LaneOutcome:
    """Send this lane's pending deliveries for up to `budget` seconds. Returns when to
    run again (more to send, or a rate limit / flood wait), or None when done."""
    run = _run_load(run_id)
    if run is None or run.state != ScheduledRun.State.SENDING:
        return LaneOutcome()
    try:
        endpoint = telegram.BotEndpoint.of(run.scheduled.bot)
    except DecryptionError as failure:
        run_fail(run=run, error=str(failure))
        return LaneOutcome()
    parts = sending.reply_parts(run.text, max_length=SCHEDULED_TEXT_MAX_LENGTH)
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        batch = list(_lane_pending(run, lane)[:BATCH_SIZE])
        if not batch:
            run_finish(run_id=run.pk)
            return LaneOutcome()
        for delivery in batch:
            try:
                wait = _delivery_send(run, delivery, endpoint, parts)
            except telegram.TokenRejected as failure:
                run_fail(run=run, error=str(failure))
                return LaneOutcome()
            if wait is not None:
                _checkin(run, extra=wait)
                return LaneOutcome(retry_in=max(wait, 0.05))
            if time.monotonic() >= deadline:
                break
        _checkin(run)
    return LaneOutcome(retry_in=0)


def _lane_pending(run: ScheduledRun, lane: int) -> QuerySet[Delivery]:
    pending = Delivery.objects.filter(run=run, state=Delivery.State.PENDING)
    if run.lanes > 1:  # lanes split the chats by id, so they never race for a row
        pending = pending.alias(lane=F("id") % run.lanes).filter(lane=lane)
    return pending.select_related("chat").order_by("id")


def _delivery_send(
    run: ScheduledRun, delivery: Delivery, endpoint: telegram.BotEndpoint, parts: list[FormattedText]
) -> float | None:
    """Send one chat its message. Returns seconds to wait before the lane goes on
    (the delivery is PENDING again), or None to go on with the next chat."""
    if not _delivery_move(delivery, Delivery.State.PENDING, Delivery.State.SENDING):
        return None  # another lane or run has it
    chat = delivery.chat
    if not chat.is_active:
        _delivery_close(delivery, Delivery.State.SKIPPED, f"Chat inactive: {chat.inactive_reason}")
        return None
    try:
        first_id = _parts_send(run, chat, endpoint, parts)
    except ratelimit.SlotUnavailable as busy:
        _delivery_move(delivery, Delivery.State.SENDING, Delivery.State.PENDING)
        return busy.wait
    except telegram.FloodWait as flood:
        _delivery_move(delivery, Delivery.State.SENDING, Delivery.State.PENDING)
        return flood.retry_after
    except telegram.ChatUnavailable as gone:
        _chat_deactivate(chat, str(gone))
        _delivery_close(delivery, Delivery.State.FAILED, str(gone))
        return None
    except telegram.TransientFailure as failure:
        return _retry_or_fail(delivery, str(failure))
    except telegram.TokenRejected as failure:
        _delivery_close(delivery, Delivery.State.FAILED, str(failure))
        raise
    except telegram.TelegramFailure as failure:
        _delivery_close(delivery, Delivery.State.FAILED, str(failure))
        return None
    _delivery_close(delivery, Delivery.State.SENT, telegram_message_id=first_id)
    return None


def _parts_send(
    run: ScheduledRun, chat: Chat, endpoint: telegram.BotEndpoint, parts: list[FormattedText]
) -> int | None:
    """Send the parts Telegram has not accepted yet (stored first, like a reply's,
    so a deferred delivery never repeats a part). Returns the first part's id."""
    rows = list(Message.objects.filter(scheduled_run=run, chat=chat).order_by("id"))
    if not rows:
        rows = [
            Message.objects.create(
                bot_id=chat.bot_id, chat=chat, direction=Message.Direction.OUT, text=part.text,
                entities=[e.to_dict() for e in part.entities], scheduled_id=run.scheduled_id,
                scheduled_run=run, ai_model=run.ai_model,
            )
            for part in parts
        ]
    for row in rows:
        if row.telegram_message_id is not None:
            continue
        _pace(chat.bot_id)
        row.telegram_message_id = sending.part_send(
            endpoint=endpoint, chat_id=chat.telegram_id, is_group=chat.is_group,
            part=FormattedText(row.text, [MessageEntity.de_json(e, None) for e in row.entities]),
            reply_to_message_id=None, max_wait=LANE_MAX_WAIT,
        )
        now = timezone.now()
        Message.objects.filter(pk=row.pk).update(
            telegram_message_id=row.telegram_message_id, telegram_date=now, updated_at=now
        )
    return rows[0].telegram_message_id if rows else None


def _pace(bot_id: int) -> None:
    """One broadcast send per PACE_MS per bot, across lanes and workers. The per-bot
    window alone lets 30 go at once and then 30 more a second later; measured where
    Telegram receives them, jitter can put 31 in a second. Evenly spaced sends stay
    under the limit there, and leave the bot a little room for its live replies."""
    slot_acquire(
        windows=[Window(f"botfleet:rate:broadcast:{bot_id}", 1, PACE_MS)],
        block_key=f"botfleet:rate:broadcast-block:{bot_id}", max_wait=LANE_MAX_WAIT,
    )


def _retry_or_fail(delivery: Delivery, error: str) -> float | None:
    attempts = delivery.attempts + 1
    if attempts >= MAX_ATTEMPTS:
        _delivery_close(delivery, Delivery.State.FAILED, f"Gave up after {attempts} attempts: {error}")
        return None
    Delivery.objects.filter(pk=delivery.pk, state=Delivery.State.SENDING).update(
        state=Delivery.State.PENDING, attempts=attempts, error=error, updated_at=timezone.now()
    )
    # Network trouble is seldom one chat's: the whole lane backs off.
    return float(min(2**attempts, 60))


# --- finishing, failing, resuming -----------------------------------------------------------


def run_finish(*, run_id: int) -> bool:
    """Close the run once no delivery is pending or in flight; record the outcome."""
    open_states = [Delivery.State.PENDING, Delivery.State.SENDING]
    if Delivery.objects.filter(run_id=run_id, state__in=open_states).exists():
        return False
    counts = dict(
        Delivery.objects.filter(run_id=run_id).values_list("state").annotate(n=Count("id")).order_by()
    )
    sent, failed, skipped = (counts.get(s, 0) for s in ("sent", "failed", "skipped"))
    now = timezone.now()
    closed = ScheduledRun.objects.filter(pk=run_id, state=ScheduledRun.State.SENDING).update(
        state=ScheduledRun.State.DONE, sent=sent, failed=failed, skipped=skipped,
        total=sent + failed + skipped, finished_at=now, updated_at=now,
    )
    if closed:
        run = ScheduledRun.objects.get(pk=run_id)
        _outcome_record(run, ScheduledRun.State.DONE, run_summary(run=run))
        log.info("scheduled run %s done: %s", run_id, run_summary(run=run))
    return bool(closed)


def run_summary(*, run: ScheduledRun) -> str:
    text = f"Sent to {run.sent} of {run.total} chat(s)"
    if run.skipped:
        text += f"; {run.skipped} skipped (inactive)"
    if run.failed:
        text += f"; {run.failed} failed"
    text += "."
    if run.error:
        text += f" AI: {run.error} (the persona's fallback line was sent)"
    return text


def run_fail(*, run: ScheduledRun, error: str) -> None:
    """The whole run cannot go on (the bot's token is rejected or unreadable)."""
    now = timezone.now()
    Delivery.objects.filter(run=run, state=Delivery.State.PENDING).update(
        state=Delivery.State.FAILED, error=error[:2000], updated_at=now
    )
    failed = ScheduledRun.objects.filter(pk=run.pk, state=ScheduledRun.State.SENDING).update(
        state=ScheduledRun.State.FAILED, error=error[:2000], finished_at=now, updated_at=now
    )
    if failed:
        _outcome_record(run, ScheduledRun.State.FAILED, f"Failed: {error}")
        log.warning("scheduled run %s failed: %s", run.pk, error)


def _outcome_record(run: ScheduledRun, status: str, result: str) -> None:
    ScheduledMessage.objects.filter(pk=run.scheduled_id).update(
        last_status=status, last_result=result[:2000]
    )


def runs_resume(*, now: datetime | None = None) -> Resumption:
    """The reaper (beat, every SCHEDULED_RESUME_INTERVAL): give up deliveries
    interrupted mid-send, and hand back runs whose worker went silent."""
    now = now or timezone.now()
    found = Resumption()
    found.interrupted = Delivery.objects.filter(
        state=Delivery.State.SENDING, updated_at__lt=now - SENDING_STUCK_AFTER
    ).update(state=Delivery.State.FAILED, error=INTERRUPTED, updated_at=now)
    for run_id, updated_at in ScheduledRun.objects.filter(
        state=ScheduledRun.State.PREPARING, updated_at__lt=now - PREPARE_STUCK_AFTER
    ).values_list("pk", "updated_at"):
        # Conditional, so two reapers never both take it.
        if ScheduledRun.objects.filter(pk=run_id, updated_at=updated_at).update(updated_at=now):
            found.prepare.append(run_id)
    for run_id, lanes, heartbeat in ScheduledRun.objects.filter(
        state=ScheduledRun.State.SENDING, heartbeat_at__lt=now
    ).values_list("pk", "lanes", "heartbeat_at"):
        taken = ScheduledRun.objects.filter(pk=run_id, heartbeat_at=heartbeat).update(
            heartbeat_at=now + LANE_CHECKIN
        )
        if taken and not run_finish(run_id=run_id):
            found.lanes += [(run_id, lane) for lane in range(lanes)]
    if found.prepare or found.lanes or found.interrupted:
        log.warning("scheduled runs resumed: %s", found)
    return found


# --- row changes ------------------------------------------------------------------------


def _checkin(run: ScheduledRun, extra: float = 0.0) -> None:
    ScheduledRun.objects.filter(pk=run.pk, state=ScheduledRun.State.SENDING).update(
        heartbeat_at=timezone.now() + LANE_CHECKIN + timedelta(seconds=extra)
    )


def _delivery_move(delivery: Delivery, from_state: str, to_state: str) -> bool:
    return (
        Delivery.objects.filter(pk=delivery.pk, state=from_state)
        .update(state=to_state, updated_at=timezone.now())
        == 1
    )


def _delivery_close(
    delivery: Delivery, state: str, error: str = "", telegram_message_id: int | None = None
) -> None:
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk, state=Delivery.State.SENDING).update(
        state=state, error=error[:2000], telegram_message_id=telegram_message_id,
        sent_at=now if state == Delivery.State.SENT else None, updated_at=now,
    )


def _chat_deactivate(chat: Chat, reason: str) -> None:
    Chat.objects.filter(pk=chat.pk).update(is_active=False, inactive_reason=reason[:255])
    log.info("chat %s of bot %s marked inactive: %s", chat.telegram_id, chat.bot_id, reason)
