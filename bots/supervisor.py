"""The beat-driven reaper: revive pollers whose lease expired, and re-enqueue
replies stuck on the way (the message log is the source of truth, not the broker:
a killed worker's task is gone, and Redis re-delivers only after its visibility
timeout)."""

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from bots.models import BotTask
from bots.services import cycle_enqueue
from conversations.models import Message

log = logging.getLogger(__name__)

PENDING_STUCK_AFTER = timedelta(seconds=60)  # enqueued but never picked up (lost message)
GENERATING_STUCK_AFTER = timedelta(minutes=5)  # longer than any AI call with its retries
SENDING_STUCK_AFTER = timedelta(minutes=5)


def pollers_revive() -> list[int]:
    now = timezone.now()
    stale = BotTask.objects.filter(
        status=BotTask.Status.RUNNING, lease_expires_at__lt=now
    ).values_list("pk", "poll_token")
    revived = []
    for task_id, old_token in stale:
        token = uuid.uuid4().hex
        replaced = BotTask.objects.filter(
            pk=task_id, status=BotTask.Status.RUNNING, poll_token=old_token
        ).update(
            poll_token=token, poll_claimed_at=None,
            lease_expires_at=now + timedelta(seconds=settings.POLL_LEASE_GRACE),
        )
        if replaced:
            cycle_enqueue(task_id=task_id, token=token)
            revived.append(task_id)
            log.warning("task %s: poller heartbeat went stale; revived", task_id)
    return revived


def replies_requeue() -> int:
    from conversations.tasks import reply_to_message  # conversations depends on bots

    now = timezone.now()
    running_bots = BotTask.objects.filter(status=BotTask.Status.RUNNING).values("bot_id")
    stuck = Message.objects.filter(bot_id__in=running_bots, direction=Message.Direction.IN)
    # Claimed but its worker died before any part went out: safe to redo.
    stuck.filter(
        reply_state=Message.ReplyState.GENERATING, updated_at__lt=now - GENERATING_STUCK_AFTER
    ).update(reply_state=Message.ReplyState.PENDING, updated_at=now - PENDING_STUCK_AFTER)
    # Died mid-send: Telegram may or may not have the part in flight. Sending it again
    # could duplicate it, so the reply is given up, visibly.
    stuck.filter(
        reply_state=Message.ReplyState.SENDING, updated_at__lt=now - SENDING_STUCK_AFTER
    ).update(
        reply_state=Message.ReplyState.FAILED, updated_at=now,
        error="Interrupted while sending; not sent again to avoid a duplicate.",
    )
    pending = list(stuck.filter(
        reply_state=Message.ReplyState.PENDING, updated_at__lte=now - PENDING_STUCK_AFTER
    ).values_list("pk", flat=True)[:1000])
    Message.objects.filter(pk__in=pending).update(updated_at=now)
    for message_id in pending:
        reply_to_message.delay(message_id)
    if pending:
        log.warning("re-enqueued %s stuck repl(ies)", len(pending))
    return len(pending)
