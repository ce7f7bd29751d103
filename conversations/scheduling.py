"""Scheduled messages and celery-beat: cron parsing, next runs, and keeping each
ScheduledMessage's one PeriodicTask in step with it.

Beat (DatabaseScheduler) reads PeriodicTask rows; nothing here edits beat's schedule
any other way. A "once" message becomes a one-off ClockedSchedule task, a repeating
one a CrontabSchedule task in the message's time zone. The cron maths is celery's own
`crontab` (what beat runs), so the preview and the fire slot agree with beat;
python-crontab (through django-celery-beat's validators) checks each field first for
its clearer messages. croniter is not a dependency and is not needed.
"""

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from celery.schedules import crontab, crontab_parser
from cron_descriptor import (
    FormatException,
    MissingFieldException,
    WrongArgumentException,
    get_description,
)
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_celery_beat import validators
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask
from django_celery_beat.tzcrontab import TzAwareCrontab

from conversations.models import ScheduledMessage

log = logging.getLogger(__name__)

FIRE_TASK = "conversations.tasks.scheduled_message_fire"

# (label, crontab keyword, django-celery-beat validator), in cron order.
CRON_FIELDS = (
    ("minute", "minute", validators.minute_validator),
    ("hour", "hour", validators.hour_validator),
    ("day of month", "day_of_month", validators.day_of_month_validator),
    ("month", "month_of_year", validators.month_of_year_validator),
    ("day of week", "day_of_week", validators.day_of_week_validator),
)

# A firing that reaches a worker this much before its slot (clocks of beat and worker
# differ a little) still belongs to that slot, not to the previous one.
SLOT_EARLY_TOLERANCE = timedelta(seconds=5)


# --- cron expressions ---------------------------------------------------------------


def cron_fields(expression: str) -> dict[str, str]:
    """The five fields as crontab keywords; ValidationError naming the bad field."""
    parts = expression.split()
    if len(parts) != len(CRON_FIELDS):
        raise ValidationError(
            f"A cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"e.g. “0 9 * * 1-5”; “{expression}” has {len(parts)}."
        )
    fields = {}
    for value, (label, keyword, validate) in zip(parts, CRON_FIELDS, strict=True):
        try:
            validate(value)
            crontab(**{keyword: value})  # what beat will run must parse too
        except (ValidationError, ValueError) as error:
            detail = "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
            raise ValidationError(f"Bad {label} field “{value}”: {detail}") from None
        fields[keyword] = value
    _date_possible(fields)
    return fields


MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)


def _date_possible(fields: dict[str, str]) -> None:
    """Each field can be valid alone and the date still never come: “0 0 31 2 *” (the
    31st of February). Celery refuses such a crontab, and beat would fail on it."""
    try:
        crontab(**fields)
    except ValueError:
        months = sorted(crontab_parser(12, 1).parse(fields["month_of_year"]))
        names = [MONTH_NAMES[month - 1] for month in months]
        in_months = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise ValidationError(
            f"Bad day of month field “{fields['day_of_month']}”: no such day in {in_months}, "
            "so this schedule would never send."
        ) from None


def cron_validate(*, expression: str) -> None:
    cron_fields(expression)


def cron_describe(*, expression: str) -> str:
    """In words, e.g. “At 09:00 AM, Monday through Friday”."""
    try:
        return str(get_description(expression))
    except (FormatException, MissingFieldException, WrongArgumentException):
        return expression


def _tz(scheduled: ScheduledMessage) -> ZoneInfo:
    zone = scheduled.timezone
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo(str(zone or "UTC"))


def cron_schedule(*, scheduled: ScheduledMessage) -> TzAwareCrontab:
    return TzAwareCrontab(**cron_fields(scheduled.cron), tz=_tz(scheduled))


def _slots_after(schedule: TzAwareCrontab, start: datetime) -> Iterator[datetime]:
    """Cron slots strictly after `start`, in the schedule's time zone, as beat sees them."""
    current = start
    while True:
        last, delta, _ = schedule.remaining_delta(current)
        current = (last + delta).astimezone(UTC).astimezone(schedule.tz)
        yield current


def runs_next(*, scheduled: ScheduledMessage, after: datetime | None = None, count: int = 5) -> list[datetime]:
    """The next `count` send times after `after` (default now), in the message's time
    zone, within its start/end window."""
    after = after or timezone.now()
    if scheduled.kind == ScheduledMessage.Kind.ONCE:
        at = scheduled.run_at
        return [at.astimezone(_tz(scheduled))] if at and at > after else []
    if scheduled.start_at and scheduled.start_at > after:
        after = scheduled.start_at - timedelta(microseconds=1)
    runs: list[datetime] = []
    for slot in _slots_after(cron_schedule(scheduled=scheduled), after):
        if len(runs) >= count or (scheduled.end_at and slot > scheduled.end_at):
            break
        runs.append(slot)
    return runs


def slot_for(*, scheduled: ScheduledMessage, now: datetime) -> datetime | None:
    """Which slot a firing at `now` is for: the send time of a one-off, the latest
    cron slot for a repeating message. None when nothing is due (the firing is stale:
    the one-off was moved later since beat read it)."""
    now = now + SLOT_EARLY_TOLERANCE
    if scheduled.kind == ScheduledMessage.Kind.ONCE:
        return scheduled.run_at if scheduled.run_at and scheduled.run_at <= now else None
    schedule = cron_schedule(scheduled=scheduled)
    # Look back over growing windows so a minutely cron costs a step or two and a
    # yearly one still resolves.
    for span in (timedelta(minutes=2), timedelta(hours=2), timedelta(days=2),
                 timedelta(days=40), timedelta(days=400), timedelta(days=8 * 366)):
        latest = None
        for slot in _slots_after(schedule, now - span):
            if slot > now:
                break
            latest = slot
        if latest is not None:
            return latest.astimezone(UTC)
    return None


# --- the PeriodicTask each ScheduledMessage owns -------------------------------------


def schedule_sync(*, scheduled: ScheduledMessage) -> PeriodicTask:
    """Create or update the message's PeriodicTask to match it (enabled, schedule,
    window). Call after every save of a ScheduledMessage; safe to call any time."""
    with transaction.atomic():
        scheduled = ScheduledMessage.objects.select_for_update().get(pk=scheduled.pk)
        task = _task_of(scheduled)
        old_clocked, old_crontab = task.clocked_id, task.crontab_id
        task.task = FIRE_TASK
        task.kwargs = json.dumps({"scheduled_id": scheduled.pk})
        task.description = (
            f"Scheduled message “{scheduled.name}” (#{scheduled.pk}). Managed by Botfleet: "
            "edit the scheduled message, not this task."
        )
        if scheduled.kind == ScheduledMessage.Kind.ONCE:
            _one_off_set(task, scheduled)
        else:
            _cron_set(task, scheduled)
        task.enabled = scheduled.enabled
        task.save()
        if scheduled.periodic_task_id != task.pk:
            ScheduledMessage.objects.filter(pk=scheduled.pk).update(periodic_task=task)
        _unused_schedules_remove(clocked_id=old_clocked, crontab_id=old_crontab)
    return task


def _task_of(scheduled: ScheduledMessage) -> PeriodicTask:
    # By link first, then by our stable name (a link lost to a hand edit is re-adopted,
    # never duplicated).
    task = scheduled.periodic_task or PeriodicTask.objects.filter(name=scheduled.periodic_task_name).first()
    return task or PeriodicTask(name=scheduled.periodic_task_name)


def _one_off_set(task: PeriodicTask, scheduled: ScheduledMessage) -> None:
    if scheduled.run_at is None:
        raise ValidationError("A one-off scheduled message needs a send time.")
    clocked = ClockedSchedule.objects.filter(clocked_time=scheduled.run_at).first()
    clocked = clocked or ClockedSchedule.objects.create(clocked_time=scheduled.run_at)
    if task.clocked_id != clocked.pk:
        # A new time is a new firing: beat disables a one-off whose run count is above
        # zero, so start the count again.
        task.total_run_count, task.last_run_at = 0, None
    task.clocked, task.crontab = clocked, None
    task.one_off = True
    task.start_time = task.expires = None


def _cron_set(task: PeriodicTask, scheduled: ScheduledMessage) -> None:
    fields = cron_fields(scheduled.cron)
    zone = _tz(scheduled)
    crontab_row = CrontabSchedule.objects.filter(**fields, timezone=zone).first()
    crontab_row = crontab_row or CrontabSchedule.objects.create(**fields, timezone=zone)
    if task.crontab_id != crontab_row.pk:
        # Beat fires the first slot after last_run_at: without this, a changed
        # expression could fire at once for a slot that "passed" since the old run.
        task.last_run_at = timezone.now()
    task.crontab, task.clocked = crontab_row, None
    task.one_off = False
    task.start_time, task.expires = scheduled.start_at, scheduled.end_at


def _unused_schedules_remove(*, clocked_id: int | None, crontab_id: int | None) -> None:
    # Only rows no PeriodicTask uses any more: deleting a used one would cascade to
    # its tasks, and other tasks (ours or anyone's) may share a schedule row.
    if clocked_id:
        ClockedSchedule.objects.filter(pk=clocked_id, periodictask__isnull=True).delete()
    if crontab_id:
        CrontabSchedule.objects.filter(pk=crontab_id, periodictask__isnull=True).delete()


def periodic_task_remove(*, scheduled: ScheduledMessage) -> None:
    """Delete the message's own PeriodicTask (and its schedule row, if unused)."""
    tasks = PeriodicTask.objects.filter(name=scheduled.periodic_task_name)
    if scheduled.periodic_task_id:
        tasks = tasks | PeriodicTask.objects.filter(pk=scheduled.periodic_task_id)
    for task in tasks:
        clocked_id, crontab_id = task.clocked_id, task.crontab_id
        task.delete()  # the model's delete() tells beat the schedule changed
        _unused_schedules_remove(clocked_id=clocked_id, crontab_id=crontab_id)


def schedule_enable(*, scheduled: ScheduledMessage, enabled: bool) -> ScheduledMessage:
    ScheduledMessage.objects.filter(pk=scheduled.pk).update(enabled=enabled, updated_at=timezone.now())
    scheduled.refresh_from_db()
    schedule_sync(scheduled=scheduled)
    return scheduled
