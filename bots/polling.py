"""Long polls that cost nothing while idle.

    poll_cycle task ──take the lease──▶ a Poller on this process's I/O loop:
        getUpdates(offset, timeout=TELEGRAM_POLL_TIMEOUT)
          nothing new → poll again: no database work, no Celery message
          updates     → one write: the registered sink stores them, the offset moves
                        past them (only then), the counters move; then the sink is
                        handed the stored batch and answers it beside the next poll

The lease is `BotTask.poll_token` held by `poll_owner` (this process's worker id).
Every POLL_LEASE_RENEW_INTERVAL seconds the process renews the leases of all its
pollers in one UPDATE and ends any poller whose token was replaced (Stop, a revival):
Stop takes effect within that interval, in-flight long poll included. A process that
dies stops renewing; the supervisor (beat) revives its bots after the lease expires.

Storing goes through bots.updates (the same path as webhook pushes), which hands the
batch to the sink conversations registers.
"""

import asyncio
import contextlib
import logging
import random
import threading
import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from bots import telegram, updates
from bots.models import Bot, BotTask
from bots.services import cycle_enqueue, lease_expiry, task_error_record, task_fail
from core import aio, dbwork
from core.workers import chore_start, chores_stop, worker_id
from credentials.encryption import DecryptionError

log = logging.getLogger(__name__)


# --- launching ----------------------------------------------------------------------

# Seconds a launch may take between taking the lease and registering the poller.
LAUNCH_GRACE = 10.0


def poller_launch(*, task_id: int, token: str) -> bool:
    """Take the lease and start the bot's poller in this process; returns at once.
    False: the token is not current, or another process holds it."""
    now = timezone.now()
    taken = BotTask.objects.filter(
        pk=task_id, status=BotTask.Status.RUNNING, poll_token=token, poll_owner=""
    ).update(poll_owner=worker_id(), poll_claimed_at=now, heartbeat_at=now, lease_expires_at=lease_expiry())
    if not taken:
        return False
    bot = Bot.objects.get(tasks__pk=task_id)
    try:
        endpoint = telegram.BotEndpoint.of(bot)
    except DecryptionError as failure:
        task_fail(task_id=task_id, token=token, error=str(failure))
        return False
    poller = Poller(task_id=task_id, token=token, endpoint=endpoint, offset=bot.update_offset)
    aio.run(_pollers.start(poller), timeout=LAUNCH_GRACE)  # registered before we return
    return True


# --- one bot's poller -----------------------------------------------------------------


class Poller:
    def __init__(self, *, task_id: int, token: str, endpoint: telegram.BotEndpoint, offset: int) -> None:
        self.task_id, self.token, self.endpoint, self.offset = task_id, token, endpoint, offset
        self.running: asyncio.Task[None] | None = None

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                polled = await telegram.get_updates(
                    self.endpoint, offset=self.offset, timeout=settings.TELEGRAM_POLL_TIMEOUT
                )
            except telegram.TelegramFailure as failure:
                failures += 1
                if not await self._failed(failure, failures):
                    return
                continue
            except Exception:
                log.exception("task %s: unexpected error while polling", self.task_id)
                failures += 1
                unexpected = telegram.TransientFailure("Unexpected error while polling; see the worker log.")
                if not await self._failed(unexpected, failures):
                    return
                continue
            if failures:
                failures = 0
                await dbwork.write(_failures_reset, self.task_id, self.token)
            if polled.received and not await self._store(polled):
                return

    async def _store(self, polled: telegram.Polled) -> bool:
        """Store the batch and move the offset; False when the lease is gone."""
        try:
            batch = await dbwork.write(_batch_store, self.task_id, self.token, polled)
        except Exception:
            # The database is unreachable: the offset stays, Telegram keeps the updates.
            log.exception("task %s: could not store %s update(s); polling again", self.task_id,
                          len(polled.updates))
            await asyncio.sleep(1.0)
            return True
        if batch is None:
            return False
        self.offset = polled.next_offset(self.offset)
        sink = updates.sink()
        if batch.to_answer and sink is not None:
            sink.answer(batch)
        return True

    async def _failed(self, failure: telegram.TelegramFailure, failures: int) -> bool:
        """Record the failure and back off; False when the poller must end."""
        if isinstance(failure, telegram.TokenRejected):
            await dbwork.write(lambda: task_fail(task_id=self.task_id, token=self.token, error=str(failure)))
            return False
        held = await dbwork.write(_failure_record, self.task_id, self.token, str(failure), failures)
        if not held:
            return False  # stopped or revived meanwhile: what the 409 may have been about
        log.warning("task %s: %s", self.task_id, failure)
        await asyncio.sleep(retry_delay(failure, failures))
        return True


def retry_delay(failure: telegram.TelegramFailure, failures: int) -> float:
    """Exponential backoff with jitter; a 409 (someone else polls) backs off harder."""
    if isinstance(failure, telegram.FloodWait):
        return failure.retry_after
    base, cap = (10.0, 300.0) if isinstance(failure, telegram.PollingConflict) else (1.0, 60.0)
    delay = min(cap, base * 2.0 ** (failures - 1))
    return delay * random.uniform(0.8, 1.2)


# --- the writes a poller makes (each runs inside dbwork's transaction) ----------------


def _held(task_id: int, token: str) -> QuerySet[BotTask]:
    return BotTask.objects.filter(
        pk=task_id, status=BotTask.Status.RUNNING, poll_token=token, poll_owner=worker_id()
    )


def _batch_store(task_id: int, token: str, polled: telegram.Polled) -> updates.StoredBatch | None:
    task = _held(task_id, token).select_related("bot").first()
    if task is None:
        return None
    batch = updates.batch_store(task=task, polled=polled, claim=True)
    # After storing, never before: an update Telegram forgets is one we have. Never
    # backwards: an overlapping poller may have moved it further.
    offset = min(polled.next_offset(0), telegram.MAX_STORABLE_ID)
    Bot.objects.filter(pk=task.bot_id, update_offset__lt=offset).update(update_offset=offset)
    return batch


def _failure_record(task_id: int, token: str, error: str, failures: int) -> bool:
    if not _held(task_id, token).update(consecutive_failures=failures):
        return False
    task_error_record(task_id=task_id, error=error)
    return True


def _failures_reset(task_id: int, token: str) -> None:
    _held(task_id, token).update(consecutive_failures=0)


# --- this process's pollers, and their leases -------------------------------------------


class _Pollers:
    """The pollers of this process (on the I/O loop only, so no lock is needed)."""

    def __init__(self) -> None:
        self.running: dict[int, Poller] = {}
        self._renewer: asyncio.Task[None] | None = None

    async def start(self, poller: Poller) -> None:
        old = self.running.pop(poller.task_id, None)
        if old is not None:
            self._cancel(old)
        self.running[poller.task_id] = poller
        poller.running = asyncio.get_running_loop().create_task(self._run(poller))
        if self._renewer is None or self._renewer.done():
            self._renewer = chore_start(
                lambda: settings.POLL_LEASE_RENEW_INTERVAL, self.renew, "poll lease renewal"
            )

    async def _run(self, poller: Poller) -> None:
        try:
            await poller.run()
        except asyncio.CancelledError:
            pass
        except Exception:
            # A bug, not a Telegram failure: the lease is left to expire and the
            # supervisor revives the bot (with a fresh poller) within a minute.
            log.exception("task %s: poller ended by an unexpected error", poller.task_id)
        finally:
            if self.running.get(poller.task_id) is poller:
                del self.running[poller.task_id]

    def _cancel(self, poller: Poller) -> None:
        if poller.running is not None and not poller.running.done():
            poller.running.cancel()

    async def renew(self) -> None:
        held = {task_id: poller.token for task_id, poller in self.running.items()}
        lost = await dbwork.write(_leases_renew, held)
        for task_id in lost:
            poller = self.running.get(task_id)
            if poller is not None and poller.token == held[task_id]:
                log.info("task %s: lease gone (stopped or revived); poller ends", task_id)
                self._cancel(poller)

    async def release_all(self) -> list[Poller]:
        pollers = list(self.running.values())
        for poller in pollers:
            self._cancel(poller)
        self.running.clear()
        return pollers


def _leases_renew(held: dict[int, str]) -> list[int]:
    """One round for all of this process's pollers: which lost their lease (returned),
    and renew the rest. A lease this process owns but runs no poller for (its poller
    died) is expired at once, so the supervisor revives that bot; not one taken in the
    last LAUNCH_GRACE seconds: poller_launch takes the lease in the database before it
    registers the poller on the loop, and `held` may have been read in between."""
    owner, now = worker_id(), timezone.now()
    owned = {
        task_id: (token, claimed_at)
        for task_id, token, claimed_at in BotTask.objects.filter(
            poll_owner=owner, status=BotTask.Status.RUNNING
        ).values_list("pk", "poll_token", "poll_claimed_at")
    }
    launching_since = now - timedelta(seconds=LAUNCH_GRACE)
    lost = [task_id for task_id, token in held.items() if owned.get(task_id, ("", None))[0] != token]
    orphans = [
        task_id for task_id, (token, claimed_at) in owned.items()
        if held.get(task_id) != token and (claimed_at is None or claimed_at < launching_since)
    ]
    if orphans:
        BotTask.objects.filter(pk__in=orphans, poll_owner=owner).update(
            poll_owner="", lease_expires_at=now
        )
    if len(owned) > len(orphans):
        BotTask.objects.filter(poll_owner=owner, status=BotTask.Status.RUNNING).update(
            lease_expires_at=lease_expiry(), heartbeat_at=now
        )
    return lost


_pollers = _Pollers()


def pollers_running() -> list[int]:
    """Task ids of the pollers this process runs (for tests and diagnostics)."""
    return sorted(_pollers.running)


# --- shutdown ------------------------------------------------------------------------------


def leases_release_all() -> int:
    """On worker shutdown: end this process's pollers and pass each lease to a fresh
    poll_cycle at once, so another worker resumes those bots now instead of after the
    lease expires."""
    with contextlib.suppress(Exception):
        pollers = aio.run(_pollers.release_all(), timeout=10)
        released = sum(_lease_pass(poller) for poller in pollers)
        if released:
            log.info("handed %s poll lease(s) to other workers on shutdown", released)
        return released
    return 0


def _lease_pass(poller: Poller) -> bool:
    next_token = uuid.uuid4().hex
    passed = BotTask.objects.filter(
        pk=poller.task_id, status=BotTask.Status.RUNNING, poll_token=poller.token
    ).update(poll_token=next_token, poll_owner="", poll_claimed_at=None, lease_expires_at=lease_expiry())
    if passed:
        cycle_enqueue(task_id=poller.task_id, token=next_token)
    return bool(passed)


_stop_lock = threading.Lock()


def pollers_stop() -> None:
    """Tests: end this process's pollers (without handing their leases on) and its
    periodic chores, and stop the database threads (their connections go with them)."""
    with _stop_lock, contextlib.suppress(Exception):
        aio.run(_pollers.release_all(), timeout=10)
        aio.run(chores_stop(), timeout=10)
    dbwork.shutdown()
