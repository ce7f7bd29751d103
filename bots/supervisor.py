"""The beat-driven supervisor: revive pollers whose lease expired (their process died,
or the broker lost the poll_cycle message). Replies and sends whose worker died are the
reaper's (conversations.reaper): one rule for "stuck", with the rows it is about."""

import logging
import uuid

from django.utils import timezone

from bots.models import BotTask
from bots.services import cycle_enqueue, lease_expiry

log = logging.getLogger(__name__)


def pollers_revive() -> list[int]:
    stale = BotTask.objects.filter(
        status=BotTask.Status.RUNNING, lease_expires_at__lt=timezone.now()
    ).values_list("pk", "poll_token")
    revived = []
    for task_id, old_token in stale:
        token = uuid.uuid4().hex
        replaced = BotTask.objects.filter(
            pk=task_id, status=BotTask.Status.RUNNING, poll_token=old_token
        ).update(poll_token=token, poll_owner="", poll_claimed_at=None, lease_expires_at=lease_expiry())
        if replaced:
            cycle_enqueue(task_id=task_id, token=token)
            revived.append(task_id)
            log.warning("task %s: poller lease expired; revived", task_id)
    return revived
