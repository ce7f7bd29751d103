"""Helpers for the scheduled-message tests: chats known to the emulator and the
database, scheduled messages with their PeriodicTask, and driving a run in-process."""

import threading
import time
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler

from bots.models import Bot
from conversations import broadcasts, scheduling
from conversations.models import Chat, ScheduledMessage, ScheduledRun
from emulators.telegram import TelegramEmulator

_next_user = iter(range(7_000_000, 8_000_000))


def chats_make(telegram_api: TelegramEmulator, bot: Bot, count: int) -> list[Chat]:
    """`count` private chats: users the emulator knows, stored as the bot's chats."""
    chats = []
    for _ in range(count):
        user = telegram_api.add_user(user_id=next(_next_user))
        chats.append(Chat(bot=bot, telegram_id=user["id"], type=Chat.Type.PRIVATE, title=user["first_name"]))
    return Chat.objects.bulk_create(chats)


def scheduled_make(bot: Bot, chats: list[Chat] | None = None, **fields: Any) -> ScheduledMessage:
    defaults: dict[str, Any] = {
        "name": "Announcement", "text": "Hello from the schedule",
        "kind": ScheduledMessage.Kind.ONCE, "run_at": timezone.now() + timedelta(hours=1),
        "audience": ScheduledMessage.Audience.CHATS if chats else ScheduledMessage.Audience.ALL,
    }
    scheduled = ScheduledMessage(bot=bot, **{**defaults, **fields})
    scheduled.full_clean(exclude=["chats"])
    scheduled.save()
    if chats:
        scheduled.chats.set(chats)
    scheduling.schedule_sync(scheduled=scheduled)
    scheduled.refresh_from_db()
    return scheduled


def run_drive(run: ScheduledRun, timeout: float = 30) -> ScheduledRun:
    """Prepare the run and send every lane to the end, lanes in parallel threads (as
    workers would run them), honouring each lane's retry_in."""
    prepared = broadcasts.run_prepare(run_id=run.pk)
    if prepared is not None:
        lanes_drive(prepared, timeout=timeout)
    run.refresh_from_db()
    return run


def lanes_drive(run: ScheduledRun, timeout: float = 30) -> None:
    errors: list[BaseException] = []

    def lane_loop(lane: int) -> None:
        deadline = time.monotonic() + timeout
        try:
            outcome = broadcasts.LaneOutcome(retry_in=0)
            while outcome.retry_in is not None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"lane {lane} of run {run.pk} not done in {timeout}s")
                time.sleep(outcome.retry_in)
                outcome = broadcasts.run_lane_send(run_id=run.pk, lane=lane)
        except BaseException as error:  # noqa: BLE001 - reported to the test below
            errors.append(error)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=lane_loop, args=(lane,)) for lane in range(run.lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def fire(scheduled: ScheduledMessage, now: datetime | None = None) -> ScheduledRun | None:
    """What the fire task does, in-process: claim the slot, then drive the run."""
    run = broadcasts.scheduled_fire(scheduled_id=scheduled.pk, now=now)
    return run_drive(run) if run is not None else None


def scheduler_shut(scheduler: DatabaseScheduler) -> None:
    """django-celery-beat registers its scheduler's sync to run at interpreter exit
    (multiprocessing.util.Finalize). In tests the database is gone by then, and the
    sync logs a traceback; run it now, once, while the database is there."""
    scheduler._finalize()
