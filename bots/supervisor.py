"""The beat-driven supervisor, every SUPERVISOR_INTERVAL:

- run windows: end the tasks whose "run until" time passed (through the Stop service,
  as `completed`), then start the scheduled tasks whose "start at" time came (through
  the Start service);
- revive pollers whose lease expired (their process died, or the broker lost the
  poll_cycle message);
- ask Telegram about each webhook every WEBHOOK_INFO_INTERVAL (pending updates, its
  last delivery error), a bounded number per round.

Replies and sends whose worker died are the reaper's (conversations.reaper): one rule
for "stuck", with the rows it is about."""

import logging
import uuid

from django.db.models import Q
from django.utils import timezone

from bots import webhooks
from bots.models import BotTask
from bots.services import (
    TaskError,
    TelegramUnavailable,
    cycle_enqueue,
    lease_expiry,
    task_error_record,
    task_fail,
    task_start_due,
    task_stop,
    webhook_infos_refresh,
)

log = logging.getLogger(__name__)


def run_windows_apply() -> tuple[list[int], list[int]]:
    """(completed, started) task ids. Ends come first: a bot handed from one task to
    another at the same minute is free when the second starts."""
    return tasks_complete_due(), tasks_start_due()


def tasks_complete_due() -> list[int]:
    """Running tasks past their "run until" time, and scheduled ones whose whole window
    passed before they could start, become `completed`."""
    due = BotTask.objects.filter(
        status__in=[BotTask.Status.RUNNING, BotTask.Status.SCHEDULED], run_until__lte=timezone.now()
    ).order_by("pk")
    completed = []
    for task in due:
        try:
            task_stop(task=task, completed=True)
        except TaskError:
            continue  # stopped, or its time moved, meanwhile
        completed.append(task.pk)
    return completed


def tasks_start_due() -> list[int]:
    """Scheduled tasks whose "start at" time came (or was cleared) start. Telegram out of
    reach: the error is recorded and the next round tries again. Anything else (the token
    rejected, the bot busy with another task) fails the task, with the reason."""
    due = BotTask.objects.filter(
        Q(start_at__lte=timezone.now()) | Q(start_at__isnull=True), status=BotTask.Status.SCHEDULED
    ).select_related("bot").order_by("start_at", "pk")
    started = []
    for task in due:
        try:
            task_start_due(task=task)
        except TelegramUnavailable as error:
            task_error_record(task_id=task.pk, error=f"{error} Trying again shortly.")
            log.warning("task %s: scheduled start postponed: %s", task.pk, error)
            continue
        except TaskError as error:
            # Still scheduled only: a rejected token failed it already, and a task that
            # was stopped or started meanwhile is left as it is.
            task_fail(task_id=task.pk, error=f"Could not start at its start time: {error}",
                      only_if=BotTask.Status.SCHEDULED)
            continue
        except Exception:
            # A bug must not hold up the other tasks' starts, nor the revivals after them.
            log.exception("task %s: scheduled start failed unexpectedly", task.pk)
            task_error_record(task_id=task.pk, error="Unexpected error while starting; see the worker log.")
            continue
        started.append(task.pk)
    return started


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


def webhooks_check() -> list[int]:
    """Task ids whose webhook Telegram was asked about this round."""
    due = webhooks.infos_due()
    webhook_infos_refresh(due)
    return [task.pk for task in due]
