"""Celery tasks of the conversation side: thin, ids in, one service call each."""

from celery import shared_task
from django.conf import settings

from conversations import broadcasts, memory, reaper, replies


def pushed_max_waits() -> int:
    """Rounds (a second each) a pushed message waits behind an earlier one of its chat
    answered elsewhere before it is answered regardless: long enough for the reaper to
    take over an earlier message whose worker died (its claim lapses, then a round)."""
    return int(settings.CLAIM_SECONDS + 2 * settings.SUPERVISOR_INTERVAL) + 1


@shared_task(name="conversations.tasks.claims_reap")
def claims_reap() -> None:
    """Beat: take over answers and sends whose worker died (their work runs here)."""
    reaper.claims_reap_and_resume()


@shared_task(name="conversations.tasks.pushed_answer")
def pushed_answer(message_ids: list[int], waited: int = 0) -> None:
    """Webhook pushes a drain stored (called in its worker; sent again, a second
    later, for those waiting behind an earlier message of their chat): claim and answer."""
    waiting = replies.pushed_answer(message_ids=message_ids, force=waited >= pushed_max_waits())
    if waiting:
        pushed_answer.apply_async((waiting, waited + 1), countdown=1)


@shared_task(name="conversations.tasks.summary_refresh")
def summary_refresh(chat_id: int, topic: int) -> None:
    """A conversation outgrew its persona's budget: fold its older turns into the summary."""
    memory.summary_refresh(chat_id=chat_id, topic=topic)


@shared_task(name="conversations.tasks.notes_refresh")
def notes_refresh(bot_id: int, user_id: int) -> None:
    memory.notes_refresh(bot_id=bot_id, user_id=user_id)


@shared_task(name="conversations.tasks.messages_expire")
def messages_expire() -> None:
    """Beat, daily: each bot's "keep messages" retention."""
    memory.messages_expire()


# --- scheduled messages (queue "scheduled", by the scheduled_* route) ----------------


@shared_task(name="conversations.tasks.scheduled_message_fire")
def scheduled_message_fire(scheduled_id: int) -> None:
    """What beat runs for each ScheduledMessage's PeriodicTask."""
    run = broadcasts.scheduled_fire(scheduled_id=scheduled_id)
    if run is not None:
        scheduled_run_start(run.pk)


@shared_task(name="conversations.tasks.scheduled_run_start")
def scheduled_run_start(run_id: int) -> None:
    run = broadcasts.run_prepare(run_id=run_id)
    if run is not None:
        for lane in range(run.lanes):
            scheduled_run_send.delay(run.pk, lane)


@shared_task(name="conversations.tasks.scheduled_run_send")
def scheduled_run_send(run_id: int, lane: int) -> None:
    outcome = broadcasts.run_lane_send(run_id=run_id, lane=lane)
    if outcome.retry_in is not None:
        # A new message rather than self.retry(): more to send and rate-limit waits
        # are not failures, and a fresh task lets other work have the thread.
        scheduled_run_send.apply_async((run_id, lane), countdown=outcome.retry_in)


@shared_task(name="conversations.tasks.scheduled_runs_resume")
def scheduled_runs_resume() -> None:
    found = broadcasts.runs_resume()
    for run_id in found.prepare:
        scheduled_run_start.delay(run_id)
    for run_id, lane in found.lanes:
        scheduled_run_send.delay(run_id, lane)
