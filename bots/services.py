"""Starting, stopping and recording the health of bot tasks.

The one path used by the admin actions, the management commands and the dashboard.
Network calls (getMe, setWebhook, deleteWebhook) happen outside the database
transaction, never inside it.

A polling bot's Start enqueues its poller (bots.polling); a webhook bot's Start sets
the webhook and nothing runs for it until Telegram pushes (bots.webhooks).
"""

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.utils.url import maybe_sanitize_url

from bots import command_menu, telegram, webhooks
from bots.models import Bot, BotTask, time_label
from credentials.encryption import DecryptionError

log = logging.getLogger(__name__)


# What Stop ends: a running task, or one waiting to start (pending, scheduled).
STOPPABLE = [BotTask.Status.RUNNING, BotTask.Status.PENDING, BotTask.Status.SCHEDULED]


class TaskError(Exception):
    """Why an operation on a task cannot be done, in words for the operator."""


class TelegramUnavailable(TaskError):
    """Telegram could not be asked (network, 5xx): trying again later may work."""


class BrokerUnavailable(TelegramUnavailable):
    """Redis (the Celery broker) could not take the poll task: the start was undone, and,
    like Telegram out of reach, trying again later may work."""


def task_start(*, task: BotTask) -> BotTask:
    """Start the task now, or, before its "start at" time, schedule it: it waits as
    `scheduled` and the supervisor starts it when the time comes (task_start_due)."""
    task.refresh_from_db()
    if task.status == BotTask.Status.RUNNING:
        raise TaskError(f"Task #{task.pk} “{task.name}” is already running.")
    now = timezone.now()
    if task.run_until and task.run_until <= now:
        raise TaskError(
            f"Cannot start task #{task.pk}: its “run until” time ({time_label(task.run_until)}) "
            "has passed. Set a later one or clear it."
        )
    if task.start_at and task.start_at > now:
        return _schedule(task)
    return _start(task, only_if=None)


def task_start_due(*, task: BotTask) -> BotTask:
    """The supervisor's start of a scheduled task whose time came. Starts it only while it
    is still scheduled: Stop pressed meanwhile wins."""
    return _start(task, only_if=BotTask.Status.SCHEDULED)


def _schedule(task: BotTask) -> BotTask:
    # No network call: the token is checked (getMe) when the task really starts.
    scheduled = BotTask.objects.filter(pk=task.pk).exclude(status=BotTask.Status.RUNNING).update(
        status=BotTask.Status.SCHEDULED, poll_token="", poll_owner="", poll_claimed_at=None,
        lease_expires_at=None, last_error="", consecutive_failures=0, updated_at=timezone.now(),
    )
    task.refresh_from_db()
    if not scheduled:
        raise TaskError(f"Task #{task.pk} “{task.name}” is already running.")
    log.info("task %s scheduled to start at %s", task.pk, task.start_at)
    return task


def _start(task: BotTask, *, only_if: str | None) -> BotTask:
    if settings.REDIS_URL_MISSING:
        raise BrokerUnavailable(f"Cannot start task #{task.pk}: {settings.REDIS_URL_MISSING}")
    _ensure_no_other_running(task)
    _bot_identify(task)
    pushed = task.bot.uses_webhook
    token = uuid.uuid4().hex
    now = timezone.now()
    failures: list[str] = []
    rows = BotTask.objects.filter(pk=task.pk).exclude(status=BotTask.Status.RUNNING)
    if only_if is not None:
        rows = rows.filter(status=only_if)
    try:
        with transaction.atomic():
            started = rows.update(
                status=BotTask.Status.RUNNING, poll_token=token, poll_owner="", poll_claimed_at=None,
                # As long as a renewed lease: a poll_cycle queued behind a thousand
                # Start presses is not revived before it ran. A webhook task has no
                # poller, hence no lease for the supervisor to revive.
                lease_expires_at=None if pushed else lease_expiry(),
                webhook_pending_updates=None, webhook_last_error="", webhook_last_error_at=None,
                webhook_checked_at=None,
                started_at=now, stopped_at=None, last_error="", consecutive_failures=0,
                updated_at=now,
            )
            if not started:
                task.refresh_from_db()
                if task.status == BotTask.Status.RUNNING:
                    raise TaskError(f"Task #{task.pk} “{task.name}” is already running.")
                raise TaskError(f"Task #{task.pk} “{task.name}” was not started (it is {task.status}).")
            if not pushed:
                transaction.on_commit(lambda: _enqueue_or_undo(task, token, failures))
    except IntegrityError:
        _ensure_no_other_running(task)  # lost a race with another start: say which
        raise
    if failures:
        raise BrokerUnavailable(f"Cannot start task #{task.pk}: {failures[0]}")
    log.info("task %s started (bot %s)", task.pk, task.bot_id)
    task.refresh_from_db()
    return task


def _enqueue_or_undo(task: BotTask, token: str, failures: list[str]) -> None:
    """Hand the poller to the workers; if the broker cannot take it, put the task back as
    it was before Start (its fields in `task`, read before the update) and say why."""
    try:
        cycle_enqueue(task_id=task.pk, token=token)
    except KombuOperationalError as error:
        BotTask.objects.filter(pk=task.pk, poll_token=token).update(
            status=task.status, poll_token=task.poll_token, poll_owner=task.poll_owner,
            poll_claimed_at=task.poll_claimed_at, lease_expires_at=task.lease_expires_at,
            started_at=task.started_at, stopped_at=task.stopped_at, last_error=task.last_error,
            consecutive_failures=task.consecutive_failures, updated_at=task.updated_at,
        )
        where = maybe_sanitize_url(settings.CELERY_BROKER_URL)
        # Said once, by whoever called Start (the command's one line, the admin's message).
        failures.append(f"Redis (the Celery broker, {where}) cannot be reached: {error}")


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
    """getMe proves the token. A polling bot deletes any webhook (Telegram refuses
    getUpdates while one is set); a webhook bot sets its own with a new secret, which
    also ends a poller of the token anywhere (its getUpdates gets a 409)."""
    bot = task.bot
    problem = webhooks.base_url_problem() if bot.uses_webhook else ""
    if problem:
        raise TaskError(f"Cannot start task #{task.pk}: {problem}")
    try:
        endpoint = telegram.BotEndpoint.of(bot)
        telegram.forget_clients(bot.pk)  # the token may have been edited since
        me = telegram.get_me(endpoint)
        if bot.uses_webhook:
            _webhook_set(bot, endpoint, drop_pending_updates=task.drop_pending_updates)
        else:
            telegram.delete_webhook(endpoint, drop_pending_updates=task.drop_pending_updates)
    except (telegram.TokenRejected, DecryptionError) as failure:
        task_fail(task_id=task.pk, error=str(failure))
        raise TaskError(f"Cannot start task #{task.pk}: {failure}") from None
    except telegram.TelegramFailure as failure:
        raise TelegramUnavailable(f"Cannot start task #{task.pk}: {failure}") from None
    Bot.objects.filter(pk=bot.pk).update(
        telegram_id=me.id, username=me.username or "", first_name=me.first_name or ""
    )
    _menu_set(task, endpoint)


def _menu_set(task: BotTask, endpoint: telegram.BotEndpoint) -> None:
    """The command menu (users' commands; operators' in their chats). Only a courtesy:
    a refusal is recorded on the task, never a reason not to start."""
    try:
        telegram.commands_set(
            endpoint, users=command_menu.USER_COMMANDS, operators=command_menu.OPERATOR_COMMANDS,
            operator_ids=sorted(task.bot.operator_ids),
        )
    except telegram.TelegramFailure as failure:
        task_error_record(task_id=task.pk, error=f"Started, but the command menu was not set: {failure}")


def _webhook_set(bot: Bot, endpoint: telegram.BotEndpoint, *, drop_pending_updates: bool) -> None:
    # Stored first: a push that comes before Start's transaction commits is refused
    # (403, the task is not running yet) and Telegram sends it again.
    secret = webhooks.secret_new()
    bot.webhook_secret = secret
    bot.save(update_fields=["webhook_secret"])
    telegram.set_webhook(
        endpoint, url=webhooks.url_of(bot.pk), secret_token=secret,
        drop_pending_updates=drop_pending_updates, max_connections=settings.WEBHOOK_MAX_CONNECTIONS,
    )


def task_stop(*, task: BotTask, completed: bool = False) -> BotTask:
    """Takes effect within POLL_LEASE_RENEW_INTERVAL: the poller's process finds the lease
    gone at its next renewal and ends the poller, long poll in flight included. A
    scheduled task is cancelled (it will not start). `completed`: the supervisor ending a
    task whose "run until" time passed; the status says so."""
    now = timezone.now()
    was_running = BotTask.objects.filter(pk=task.pk, status=BotTask.Status.RUNNING).exists()
    rows = BotTask.objects.filter(pk=task.pk, status__in=STOPPABLE)
    if completed:
        # Only while the time is still past: an operator may have moved it meanwhile.
        rows = rows.filter(run_until__lte=now)
    stopped = rows.update(
        status=BotTask.Status.COMPLETED if completed else BotTask.Status.STOPPED,
        poll_token="", poll_owner="", poll_claimed_at=None,
        lease_expires_at=None, stopped_at=now, updated_at=now,
    )
    task.refresh_from_db()
    if not stopped:
        raise TaskError(f"Task #{task.pk} “{task.name}” is not running (it is {task.status}).")
    log.info("task %s %s", task.pk, "completed (its run-until time passed)" if completed else "stopped")
    if was_running and task.bot.uses_webhook:
        _webhook_delete(task)
    return task


def _webhook_delete(task: BotTask) -> None:
    """After the task stopped (pushes are refused from then on): ask Telegram to stop
    pushing. Telegram out of reach does not undo the Stop; the task says so, and Telegram
    keeps the updates for the next Start."""
    try:
        telegram.delete_webhook(telegram.BotEndpoint.of(task.bot))
    except (telegram.TelegramFailure, DecryptionError) as failure:
        task_error_record(task_id=task.pk, error=f"Stopped, but the webhook could not be removed: {failure}")
        log.warning("task %s: webhook not removed: %s", task.pk, failure)


def webhook_infos_refresh(tasks: list[BotTask]) -> None:
    """Ask Telegram about these webhook tasks' deliveries and record the answers (pending
    updates, Telegram's last delivery error, a webhook changed behind our back). A
    rejected token fails the task; other failures are recorded on it, never raised."""
    endpoints: list[telegram.BotEndpoint] = []
    asked: list[BotTask] = []
    for task in tasks:
        try:
            endpoints.append(telegram.BotEndpoint.of(task.bot))
            asked.append(task)
        except DecryptionError as failure:
            task_error_record(task_id=task.pk, error=str(failure))
    for task, answer in zip(asked, webhooks.infos_ask(endpoints), strict=True):
        if isinstance(answer, telegram.WebhookInfo):
            problem = webhooks.info_record(task, answer)
            if problem:
                task_error_record(task_id=task.pk, error=problem)
            continue
        BotTask.objects.filter(pk=task.pk).update(webhook_checked_at=timezone.now())
        if isinstance(answer, telegram.TokenRejected):
            task_fail(task_id=task.pk, error=str(answer), only_if=BotTask.Status.RUNNING)
        elif isinstance(answer, telegram.TelegramFailure):
            task_error_record(task_id=task.pk, error=f"Could not ask Telegram about the webhook: {answer}")
        else:
            log.error("task %s: getWebhookInfo failed unexpectedly", task.pk, exc_info=answer)
            task_error_record(task_id=task.pk, error="Could not ask Telegram about the webhook; see the log.")


def tasks_stop_all() -> list[BotTask]:
    """The emergency stop: every running task stopped and every scheduled one cancelled,
    each through task_stop (a task that ended meanwhile is passed over). The stopped."""
    stopped = []
    for task in BotTask.objects.filter(status__in=[BotTask.Status.RUNNING, BotTask.Status.SCHEDULED]).select_related("bot"):
        try:
            stopped.append(task_stop(task=task))
        except TaskError:
            continue
    return stopped


def task_restart(*, task: BotTask) -> BotTask:
    if task.status == BotTask.Status.RUNNING:
        task_stop(task=task)
    return task_start(task=task)


def task_fail(*, task_id: int, error: str, token: str | None = None, only_if: str | None = None) -> bool:
    """Mark failed (only while `token` still holds the lease, when given; only while
    the task has status `only_if`, when given)."""
    now = timezone.now()
    rows = BotTask.objects.filter(pk=task_id)
    if token is not None:
        rows = rows.filter(poll_token=token)
    if only_if is not None:
        rows = rows.filter(status=only_if)
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
