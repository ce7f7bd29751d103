"""Sending a scheduled message: claim the firing, write the message once, one
delivery per target chat, hand them to the outbox in chunks.

    fire --claim (schedule, slot)--> ScheduledRun PREPARING
         --write the text, one Delivery per chat--> SENDING --lanes--> DONE (or FAILED)

Exactly once, in three layers:
- the run row is unique per (schedule, slot): a second beat, a re-delivered fire
  task or a replayed "Send now" inserts nothing and so sends nothing;
- each Delivery is unique per (run, chat) and moves PENDING -> SENDING with a
  conditional UPDATE in the same transaction that creates its outbox rows, so
  parallel lanes and re-runs never hand one chat to the outbox twice;
- the outbox sends each row exactly once (its "handed to Telegram" stamp decides what
  a crash may resend) and settles the delivery (SENT / FAILED) when the chat's last
  part is done. A worker that dies mid-send is the outbox reaper's business, the same
  rule as for replies (conversations.reaper).

Broadcast rows carry the bot's broadcast pace (bots.ratelimit) on top of the per-chat
and per-bot windows live replies share. Lanes run on the "scheduled" queue, each a
short task that re-enqueues itself, so a 10,000-chat broadcast holds a worker thread or
two for seconds at a time.
"""

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from bots import telegram
from bots.formatting import FormattedText, reply_parts
from conversations import outbox, scheduling
from conversations.models import (
    SCHEDULED_TEXT_MAX_LENGTH,
    Chat,
    Delivery,
    Persona,
    ScheduledMessage,
    ScheduledRun,
)
from core import aio, dbwork
from credentials.encryption import DecryptionError
from credentials.generation import text_generate
from credentials.providers import ChatTurn, GenerationRequest, ProviderError

log = logging.getLogger(__name__)

BATCH_SIZE = 50  # deliveries a lane reads at a time (and checks in after)
LANE_BUDGET = 20.0  # seconds a lane task sends before handing its thread back
LANE_SETTLE_CHECK = 2.0  # seconds between a finished lane's looks at chats still in flight
# Sends of one lane in flight at once. The bot's broadcast pace (bots.ratelimit) allows
# ~29/s anyway; more in flight only bunches their arrival at Telegram (4 showed 32 in one
# second where Telegram allows about 30).
LANE_SENDS_IN_FLIGHT = 2
LANE_CHECKIN = timedelta(seconds=60)  # a lane silent past this is resumed by the reaper
CHATS_PER_LANE = 200  # smaller broadcasts use one lane: a second would only add contention
PREPARE_STUCK_AFTER = timedelta(minutes=3)  # longer than an AI call with its retries

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


def run_prepare(*, run_id: int, ai_fallback: bool = True) -> ScheduledRun | None:
    """Write the message (once per run) and list the chats (one delivery each), then
    open the run for sending. Safe to repeat; returns the run when it is SENDING.
    `ai_fallback` off: an AI failure fails the run instead of sending the persona's
    fallback line (the shell, whose operator sees the error and can send again)."""
    run = _run_load(run_id)
    if run is None or run.state != ScheduledRun.State.PREPARING:
        return run if run is not None and run.state == ScheduledRun.State.SENDING else None
    if not run.text:
        if not _text_write(run, ai_fallback=ai_fallback):  # the AI call, outside any transaction
            return None
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


def _text_write(run: ScheduledRun, *, ai_fallback: bool) -> bool:
    """Record the run's text; False when the AI could not write it and the run failed."""
    scheduled = run.scheduled
    text, ai_model, error = scheduled.text, "", ""
    if scheduled.content == ScheduledMessage.Content.PROMPT:
        try:
            text, ai_model, error = message_compose(scheduled=scheduled, fallback=ai_fallback)
        except ProviderError as failure:
            run_fail(run=run, error=f"The AI could not write the message: {failure}")
            return False
    # Conditional: a second preparer (the reaper's) never replaces what the first wrote.
    ScheduledRun.objects.filter(pk=run.pk, text="").update(
        text=text, ai_model=ai_model, error=error, updated_at=timezone.now()
    )
    return True


def message_compose(*, scheduled: ScheduledMessage, fallback: bool = True) -> tuple[str, str, str]:
    """The persona writes the message from the prompt: (text, model, error). On an AI
    failure the persona's fallback line is sent and the error recorded, unless
    `fallback` is off or the credential cannot make any call (no key, an unreadable
    one): then the ProviderError is raised. A broadcast answers nobody, so the fallback
    line posted to every chat, run after run until an operator fixes the credential,
    would only be noise."""
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
        result = text_generate(credential=bot.credential, request=request)
    except ProviderError as failure:
        if not fallback or failure.kind in ProviderError.UNUSABLE:
            raise
        log.warning("scheduled message %s: AI failed, sending the fallback: %s", scheduled.pk, failure)
        return persona.fallback_reply, "", str(failure)
    if not result.text.strip():
        return persona.fallback_reply, result.model, "The AI returned no text."
    return result.text, result.model, ""


def _targets(scheduled: ScheduledMessage) -> QuerySet[Chat]:
    if scheduled.audience == ScheduledMessage.Audience.ALL:
        return Chat.objects.filter(bot_id=scheduled.bot_id, is_active=True)
    if scheduled.audience == ScheduledMessage.Audience.PRIVATE:
        return Chat.objects.filter(bot_id=scheduled.bot_id, is_active=True, type=Chat.Type.PRIVATE)
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
    """Hand this lane's pending deliveries to the outbox, a batch at a time, for up to
    `budget` seconds. Returns when to run again (more to send, or a flood wait), or
    None when done."""
    run = _run_load(run_id)
    if run is None or run.state != ScheduledRun.State.SENDING:
        return LaneOutcome()
    try:
        endpoint = telegram.BotEndpoint.of(run.scheduled.bot)
    except DecryptionError as failure:
        run_fail(run=run, error=str(failure))
        return LaneOutcome()
    texts = reply_parts(run.text, max_length=SCHEDULED_TEXT_MAX_LENGTH)
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        pending = list(_lane_pending(run, lane).values_list("pk", flat=True)[:BATCH_SIZE])
        if not pending:
            if run_finish(run_id=run.pk):
                return LaneOutcome()
            # Chats still with the outbox (a flood wait, a dead worker's sends the reaper
            # takes over): look again shortly; the run closes when they are settled.
            return LaneOutcome(retry_in=LANE_SETTLE_CHECK)
        sent = aio.run(_deliveries_send(run, pending, texts, endpoint))
        if sent.token_rejected:
            run_fail(run=run, error=sent.token_rejected)
            return LaneOutcome()
        _checkin(run, extra=sent.retry_in or 0.0)
        if sent.retry_in is not None:  # a flood wait or back-off: the lane waits it out
            return LaneOutcome(retry_in=max(sent.retry_in, 0.05))
    return LaneOutcome(retry_in=0)


def _lane_pending(run: ScheduledRun, lane: int) -> QuerySet[Delivery]:
    pending = Delivery.objects.filter(run=run, state=Delivery.State.PENDING)
    if run.lanes > 1:  # lanes split the chats by id, so they never race for a row
        pending = pending.alias(lane=F("id") % run.lanes).filter(lane=lane)
    return pending.order_by("id")


async def _deliveries_send(
    run: ScheduledRun, delivery_ids: list[int], texts: list[FormattedText], endpoint: telegram.BotEndpoint
) -> outbox.Sent:
    # Through the process's writer, like every write of the pipeline: a lane writing
    # from its own thread would fight the writer for SQLite's lock, and live replies of
    # every bot would wait on that (measured: live p99 2.5x during a broadcast).
    parts = await dbwork.write(_deliveries_enqueue, run, delivery_ids, texts, endpoint)
    return await outbox.parts_send(parts, concurrency=LANE_SENDS_IN_FLIGHT)


def _deliveries_enqueue(
    run: ScheduledRun, delivery_ids: list[int], texts: list[FormattedText], endpoint: telegram.BotEndpoint
) -> list[outbox.Part]:
    """Move each delivery to SENDING and create its outbox rows, in one transaction (the
    writer's: dbwork runs each write atomically): a delivery is handed to the outbox
    exactly once (the conditional UPDATE decides)."""
    now, outgoing = timezone.now(), []
    for delivery in Delivery.objects.filter(pk__in=delivery_ids).select_related("chat"):
        if not Delivery.objects.filter(pk=delivery.pk, state=Delivery.State.PENDING).update(
            state=Delivery.State.SENDING, updated_at=now
        ):
            continue  # another lane or run has it
        chat = delivery.chat
        if not chat.is_active:
            Delivery.objects.filter(pk=delivery.pk).update(
                state=Delivery.State.SKIPPED, error=f"Chat inactive: {chat.inactive_reason}"[:500]
            )
            continue
        outgoing.append(outbox.Outgoing(
            bot=run.scheduled.bot, chat=chat, parts=texts, endpoint=endpoint,
            scheduled_run=run, first_fields={"ai_model": run.ai_model},
        ))
    return [part for parts in outbox.parts_create(outgoing) for part in parts]


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
    if run.error and run.state != ScheduledRun.State.FAILED:  # a failed run's error is no AI note
        text += f" AI: {run.error} (the persona's fallback line was sent)"
    return text


def run_fail(*, run: ScheduledRun, error: str) -> None:
    """The whole run cannot go on (the bot's token is rejected or unreadable, or the AI
    cannot write the message): it ends FAILED, and nothing of it goes out later. Rows
    already handed to Telegram finish with the outbox; the others (pending chats, parts
    waiting out a flood or a back-off) fail now, or the reaper would send them once the
    token works again. A sender about to stamp one finds it gone (outbox's stamp is
    conditional)."""
    now, error = timezone.now(), error[:2000]
    open_states = [ScheduledRun.State.PREPARING, ScheduledRun.State.SENDING]
    with transaction.atomic():
        if not ScheduledRun.objects.filter(pk=run.pk, state__in=open_states).update(
            state=ScheduledRun.State.FAILED, error=error, finished_at=now, updated_at=now
        ):
            return  # failed already (another lane), or finished
        chats = outbox.run_parts_cancel(run_id=run.pk, error=error)
        Delivery.objects.filter(
            Q(state=Delivery.State.PENDING) | Q(state=Delivery.State.SENDING, chat_id__in=chats), run=run
        ).update(state=Delivery.State.FAILED, error=error, updated_at=now)
        _outcome_record(run, ScheduledRun.State.FAILED, f"Failed: {error}")
    log.warning("scheduled run %s failed: %s", run.pk, error)


def _outcome_record(run: ScheduledRun, status: str, result: str) -> None:
    ScheduledMessage.objects.filter(pk=run.scheduled_id).update(
        last_status=status, last_result=result[:2000]
    )


def runs_resume(*, now: datetime | None = None) -> Resumption:
    """The reaper (beat, every SCHEDULED_RESUME_INTERVAL): hand back runs whose worker
    went silent (sends a dead worker left are conversations.reaper's)."""
    now = now or timezone.now()
    found = Resumption()
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
    if found.prepare or found.lanes:
        log.warning("scheduled runs resumed: %s", found)
    return found


# --- row changes ------------------------------------------------------------------------


def _checkin(run: ScheduledRun, extra: float = 0.0) -> None:
    ScheduledRun.objects.filter(pk=run.pk, state=ScheduledRun.State.SENDING).update(
        heartbeat_at=timezone.now() + LANE_CHECKIN + timedelta(seconds=extra)
    )
