"""Starting, stopping and recording the health of bot tasks.

The one path used by the admin actions, the management commands and the dashboard.
Network calls (getMe, deleteWebhook) happen before the database transaction, never
inside it.
"""

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from bots import telegram
from bots.models import Bot, BotTask
from credentials.encryption import DecryptionError

log = logging.getLogger(__name__)


class TaskError(Exception):
    """Why an operation on a task cannot be done, in words for the operator."""


def task_start(*, task: BotTask) -> BotTask:
    task.refresh_from_db()
    if task.status == BotTask.Status.RUNNING:
        raise TaskError(f"Task #{task.pk} “{task.name}” is already running.")
    _ensure_no_other_running(task)
    _bot_identify(task)
    token = uuid.uuid4().hex
    now = timezone.now()
    try:
        with transaction.atomic():
            started = BotTask.objects.filter(pk=task.pk).exclude(status=BotTask.Status.RUNNING).update(
                status=BotTask.Status.RUNNING, poll_token=token, poll_owner="", poll_claimed_at=None,
                # As long as a renewed lease: a poll_cycle queued behind a thousand
                # Start presses is not revived before it ran.
                lease_expires_at=lease_expiry(),
                started_at=now, stopped_at=None, last_error="", consecutive_failures=0,
                updated_at=now,
            )
            if not started:
                raise TaskError(f"Task #{task.pk} “{task.name}” is already running.")
            transaction.on_commit(lambda: cycle_enqueue(task_id=task.pk, token=token))
    except IntegrityError:
        _ensure_no_other_running(task)  # lost a race with another start: say which
        raise
    log.info("task %s started (bot %s)", task.pk, task.bot_id)
    task.refresh_from_db()
    return task


def _ensure_no_other_running(task: BotTask) -> None:
    other = (
        BotTask.objects.filter(bot_id=task.bot_id, status=BotTask.Status.RUNNING)
        .exclude(pk=task.pk).first()
    )
    if other is not None:
        raise TaskError(
            f"Bot “{task.bot.name}” already has a running task: #{other.pk} “{other.name}”. "
            "Stop it first."
        )


def _bot_identify(task: BotTask) -> None:
    """getMe proves the token; deleteWebhook frees getUpdates (Telegram refuses polling
    while a webhook is set)."""
    bot = task.bot
    try:
        endpoint = telegram.BotEndpoint.of(bot)
        telegram.forget_clients(bot.pk)  # the token may have been edited since
        me = telegram.get_me(endpoint)
        telegram.delete_webhook(endpoint)
    except (telegram.TokenRejected, DecryptionError) as failure:
        task_fail(task_id=task.pk, error=str(failure))
        raise TaskError(f"Cannot start task #{task.pk}: {failure}") from None
    except telegram.TelegramFailure as failure:
        raise TaskError(f"Cannot start task #{task.pk}: {failure}") from None
    Bot.objects.filter(pk=bot.pk).update(
        telegram_id=me.id, username=me.username or "", first_name=me.first_name or ""
    )


def task_stop(*, task: BotTask) -> BotTask:
    """Takes effect within POLL_LEASE_RENEW_INTERVAL: the poller's process finds the lease
    gone at its next renewal and ends the poller, long poll in flight included."""
    now = timezone.now()
    stopped = BotTask.objects.filter(
        pk=task.pk, status__in=[BotTask.Status.RUNNING, BotTask.Status.PENDING]
    ).update(
        status=BotTask.Status.STOPPED, poll_token="", poll_owner="", poll_claimed_at=None,
        lease_expires_at=None, stopped_at=now, updated_at=now,
    )
    task.refresh_from_db()
    if not stopped:
        raise TaskError(f"Task #{task.pk} “{task.name}” is not running (it is {task.status}).")
    log.info("task %s stopped", task.pk)
    return task


def task_restart(*, task: BotTask) -> BotTask:
    if task.status == BotTask.Status.RUNNING:
        task_stop(task=task)
    return task_start(task=task)


def task_fail(*, task_id: int, error: str, token: str | None = None) -> bool:
    """Mark failed (only while `token` still holds the lease, when given)."""
    now = timezone.now()
    rows = BotTask.objects.filter(pk=task_id)
    if token is not None:
        rows = rows.filter(poll_token=token)
    failed = rows.update(
        status=BotTask.Status.FAILED, poll_token="", poll_owner="", poll_claimed_at=None,
        lease_expires_at=None,
        stopped_at=now, last_error=error, last_error_at=now, error_count=F("error_count") + 1,
        updated_at=now,
    )
    if failed:
        log.warning("task %s failed: %s", task_id, error)
    return bool(failed)


def task_error_record(*, task_id: int, error: str) -> None:
    now = timezone.now()
    BotTask.objects.filter(pk=task_id).update(
        error_count=F("error_count") + 1, last_error=error[:2000], last_error_at=now
    )


def lease_expiry() -> datetime:
    """Until when a poll lease holds when taken or renewed now: one renewal interval, and
    the grace a late renewal gets before the supervisor revives the bot elsewhere."""
    return timezone.now() + timedelta(
        seconds=settings.POLL_LEASE_RENEW_INTERVAL + settings.POLL_LEASE_GRACE
    )


def cycle_enqueue(*, task_id: int, token: str, countdown: float = 0) -> None:
    # Imported here: tasks import services, and services only need this one name.
    from bots.tasks import poll_cycle

    # Celery reads a countdown of 0 as none (no ETA): the message runs at once.
    poll_cycle.apply_async((task_id, token), countdown=countdown)
