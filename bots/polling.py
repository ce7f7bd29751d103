"""The poll cycle: one long poll per bot per cycle, then the next cycle is enqueued.

    poll_cycle task ──claim lease──▶ long poll on the I/O loop (worker slot already free)
                                      ──▶ finish (thread): store updates, move the
                                          offset, enqueue replies, hand the lease on,
                                          enqueue the next cycle

The lease is `BotTask.poll_token`: a cycle may run only if its token is the current
one and unclaimed, and it claims it with a conditional UPDATE, so a redelivered or
duplicated cycle message finds nothing to do. Stopping clears the token; the
supervisor replaces it when the lease expires (worker killed, broker lost the
message), so any older cycle still in flight finds its token gone and ends.
"""

import logging
import random
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import telegram as ptb
from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from bots import telegram
from config import aio
from bots.models import Bot, BotTask
from bots.services import cycle_enqueue, task_error_record, task_fail
from conversations import ingest
from credentials.encryption import DecryptionError

log = logging.getLogger(__name__)

FINISH_THREADS = 8  # storing a batch takes milliseconds; a few threads serve many bots


@dataclass(frozen=True)
class Lease:
    task_id: int
    token: str
    endpoint: telegram.BotEndpoint
    offset: int


_in_flight: set[Lease] = set()
_in_flight_lock = threading.Lock()
_finisher: ThreadPoolExecutor | None = None


def cycle_launch(*, task_id: int, token: str) -> bool:
    """Claim the cycle and start its long poll; returns at once. False: not ours."""
    lease = _claim(task_id, token)
    if lease is None:
        return False
    with _in_flight_lock:
        _in_flight.add(lease)
    future = aio.submit(telegram.get_updates(
        lease.endpoint, offset=lease.offset, timeout=settings.TELEGRAM_POLL_TIMEOUT
    ))
    future.add_done_callback(partial(_finish_soon, lease))
    return True


def _claim(task_id: int, token: str) -> Lease | None:
    now = timezone.now()
    claimed = BotTask.objects.filter(
        pk=task_id, status=BotTask.Status.RUNNING, poll_token=token, poll_claimed_at__isnull=True
    ).update(
        poll_claimed_at=now, last_run_at=now,
        lease_expires_at=now + timedelta(
            seconds=settings.TELEGRAM_POLL_TIMEOUT + settings.POLL_LEASE_GRACE
        ),
    )
    if not claimed:
        return None
    bot = Bot.objects.get(tasks__pk=task_id)
    try:
        endpoint = telegram.BotEndpoint.of(bot)
    except DecryptionError as failure:
        task_fail(task_id=task_id, token=token, error=str(failure))
        return None
    return Lease(task_id=task_id, token=token, endpoint=endpoint, offset=bot.update_offset)


def _finish_soon(lease: Lease, future: "Future[Sequence[ptb.Update]]") -> None:
    # Runs on the I/O loop: never do database work there. Hand it to a thread.
    global _finisher
    with _in_flight_lock:
        if _finisher is None:
            _finisher = ThreadPoolExecutor(FINISH_THREADS, thread_name_prefix="poll-finish")
    _finisher.submit(cycle_finish, lease, future)


def cycle_finish(lease: Lease, future: "Future[Sequence[ptb.Update]]") -> None:
    close_old_connections()
    try:
        try:
            updates = future.result()
        except telegram.TelegramFailure as failure:
            _poll_failed(lease, failure)
            return
        except Exception:
            log.exception("task %s: unexpected error while polling", lease.task_id)
            _poll_failed(lease, telegram.TransientFailure("Unexpected error while polling; see the worker log."))
            return
        _poll_succeeded(lease, updates)
    except Exception:
        # The database or broker is down: the lease expires and the supervisor revives.
        log.exception("task %s: could not finish the poll cycle", lease.task_id)
    finally:
        with _in_flight_lock:
            _in_flight.discard(lease)
        close_old_connections()


def _poll_succeeded(lease: Lease, updates: Sequence[ptb.Update]) -> None:
    task = BotTask.objects.select_related("bot").get(pk=lease.task_id)
    stored = ingest.updates_store(bot=task.bot, task=task, updates=updates)
    with transaction.atomic():
        next_token = _lease_pass(lease, countdown=0, failures=0)
        if updates and next_token:
            # After storing, never before: an update Telegram forgets is one we have.
            Bot.objects.filter(pk=task.bot_id).update(update_offset=updates[-1].update_id + 1)
        if stored.new_messages:
            BotTask.objects.filter(pk=lease.task_id).update(
                messages_processed=F("messages_processed") + len(stored.new_messages)
            )
    _replies_enqueue([m.pk for m in stored.to_answer])
    if next_token:
        cycle_enqueue(task_id=lease.task_id, token=next_token)


def _poll_failed(lease: Lease, failure: telegram.TelegramFailure) -> None:
    if not _still_ours(lease):
        # Stopped or revived meanwhile: a newer poller may be what Telegram's 409 was
        # about. Nothing to record, nothing to hand over.
        return
    if isinstance(failure, telegram.TokenRejected):
        task_fail(task_id=lease.task_id, token=lease.token, error=str(failure))
        return
    failures = BotTask.objects.get(pk=lease.task_id).consecutive_failures + 1
    task_error_record(task_id=lease.task_id, error=str(failure))
    log.warning("task %s: %s", lease.task_id, failure)
    _hand_over(lease, countdown=retry_delay(failure, failures), failures=failures)


def retry_delay(failure: telegram.TelegramFailure, failures: int) -> float:
    """Exponential backoff with jitter; a 409 (someone else polls) backs off harder."""
    if isinstance(failure, telegram.FloodWait):
        return failure.retry_after
    base, cap = (10.0, 300.0) if isinstance(failure, telegram.PollingConflict) else (1.0, 60.0)
    delay = min(cap, base * 2 ** (failures - 1))
    return delay * random.uniform(0.8, 1.2)


def _still_ours(lease: Lease) -> bool:
    return BotTask.objects.filter(
        pk=lease.task_id, status=BotTask.Status.RUNNING, poll_token=lease.token
    ).exists()


def _lease_pass(lease: Lease, *, countdown: float, failures: int) -> str | None:
    """Give the lease a new token for the next cycle, only if it is still ours.
    Returns that token, or None when the task was stopped or revived meanwhile."""
    now, next_token = timezone.now(), uuid.uuid4().hex
    passed = BotTask.objects.filter(
        pk=lease.task_id, status=BotTask.Status.RUNNING, poll_token=lease.token
    ).update(
        poll_token=next_token, poll_claimed_at=None, last_run_at=now,
        lease_expires_at=now + timedelta(seconds=countdown + settings.POLL_LEASE_GRACE),
        consecutive_failures=failures,
    )
    return next_token if passed else None


def _hand_over(lease: Lease, *, countdown: float, failures: int) -> bool:
    """Pass the lease to the next cycle and enqueue it."""
    next_token = _lease_pass(lease, countdown=countdown, failures=failures)
    if next_token:
        cycle_enqueue(task_id=lease.task_id, token=next_token, countdown=countdown)
    return next_token is not None


def _replies_enqueue(message_ids: list[int]) -> None:
    from conversations.tasks import reply_to_message  # tasks import this module's app

    for message_id in message_ids:
        reply_to_message.delay(message_id)


def leases_release_all() -> int:
    """On worker shutdown: pass every lease this process holds to a fresh cycle at once,
    so another worker resumes those bots now instead of after the lease expires."""
    with _in_flight_lock:
        leases = list(_in_flight)
    released = sum(_hand_over(lease, countdown=0, failures=0) for lease in leases)
    if released:
        log.info("handed %s poll lease(s) to other workers on shutdown", released)
    return released


def finishers_stop() -> None:
    """Stop this process's finish threads (their database connections go with them)."""
    global _finisher
    with _in_flight_lock:
        finisher, _finisher = _finisher, None
    if finisher is not None:
        finisher.shutdown(wait=True)
