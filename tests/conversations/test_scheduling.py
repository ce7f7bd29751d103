"""Scheduled messages: their PeriodicTask kept in step, beat's DatabaseScheduler firing
them (once, and at the cron slot), cron validation and preview, AI-written content."""

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from config.celery import app as celery_app
from conversations import scheduling
from conversations.models import Message, ScheduledMessage, ScheduledRun
from tests.conftest import GEMINI_TEST_KEY
from tests.factories import make_bot
from tests.support.scheduling import chats_make, fire, scheduled_make, scheduler_shut

pytestmark = pytest.mark.django_db(transaction=True)

FIRE_TASK = "conversations.tasks.scheduled_message_fire"


def our_tasks() -> list[PeriodicTask]:
    return list(PeriodicTask.objects.filter(task=FIRE_TASK).select_related("crontab", "clocked"))


# --- the PeriodicTask kept in step ----------------------------------------------------


def test_it_creates_one_one_off_periodic_task_for_a_once_message() -> None:
    at = timezone.now() + timedelta(days=1)

    scheduled = scheduled_make(make_bot(), run_at=at)

    [task] = our_tasks()
    assert scheduled.periodic_task_id == task.pk
    assert (task.one_off, task.enabled, task.clocked.clocked_time, task.crontab) == (True, True, at, None)
    assert json.loads(task.kwargs) == {"scheduled_id": scheduled.pk}


def test_it_updates_the_same_task_when_the_message_becomes_a_cron() -> None:
    scheduled = scheduled_make(make_bot())
    task_id, clocked_id = scheduled.periodic_task_id, scheduled.periodic_task.clocked_id

    scheduled.kind, scheduled.cron, scheduled.timezone = "cron", "30 9 * * 1-5", ZoneInfo("Europe/Paris")
    scheduled.save()
    scheduling.schedule_sync(scheduled=scheduled)

    [task] = our_tasks()
    assert task.pk == task_id and not task.one_off and task.clocked is None
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week, str(crontab.timezone)) == (
        "30", "9", "1-5", "Europe/Paris",
    )
    assert not ClockedSchedule.objects.filter(pk=clocked_id).exists()  # unused, so removed


def test_it_disables_and_re_enables_the_task_with_the_message() -> None:
    scheduled = scheduled_make(make_bot(), kind="cron", cron="0 8 * * *", run_at=None)

    scheduling.schedule_enable(scheduled=scheduled, enabled=False)
    disabled = PeriodicTask.objects.get(pk=scheduled.periodic_task_id).enabled
    scheduling.schedule_enable(scheduled=scheduled, enabled=True)

    assert disabled is False
    assert [t.enabled for t in our_tasks()] == [True]


def test_it_deletes_only_its_own_task_with_the_message() -> None:
    other = PeriodicTask.objects.create(
        name="someone else's", task="bots.tasks.supervise",
        crontab=CrontabSchedule.objects.create(minute="0", hour="8"),
    )
    keep = scheduled_make(make_bot(), kind="cron", cron="0 8 * * *", run_at=None)
    gone = scheduled_make(make_bot(), kind="cron", cron="0 8 * * *", run_at=None)

    gone.delete()

    assert [t.pk for t in our_tasks()] == [keep.periodic_task_id]
    assert PeriodicTask.objects.filter(pk=other.pk).exists()
    assert CrontabSchedule.objects.filter(pk=other.crontab_id).exists()  # shared: kept


def test_it_deletes_the_task_when_the_bot_is_deleted() -> None:
    bot = make_bot()
    scheduled_make(bot)

    bot.delete()

    assert our_tasks() == []


def test_it_keeps_the_task_in_step_through_the_admin(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    form = {
        "name": "Daily tip", "bot": bot.pk, "enabled": "on", "content": "text", "text": "Tip!",
        "audience": "all", "kind": "cron", "cron": "0 9 * * *", "timezone": "Europe/Berlin",
    }

    added = admin_client.post(reverse("admin:conversations_scheduledmessage_add"), form)
    scheduled = ScheduledMessage.objects.get()
    changed = admin_client.post(
        reverse("admin:conversations_scheduledmessage_change", args=[scheduled.pk]),
        {**form, "cron": "15 10 * * 1", "enabled": ""},
    )
    [task] = our_tasks()
    deleted = admin_client.post(
        reverse("admin:conversations_scheduledmessage_delete", args=[scheduled.pk]), {"post": "yes"}
    )

    assert (added.status_code, changed.status_code, deleted.status_code) == (302, 302, 302)
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("15", "10", "1")
    assert str(task.crontab.timezone) == "Europe/Berlin" and task.enabled is False
    assert our_tasks() == []


# --- cron validation and preview -------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("61 * * * *", "minute"), ("0 24 * * *", "hour"), ("0 9 32 * *", "day of month"),
        ("0 9 * 13 *", "month"), ("0 9 * * funday", "day of week"),
    ],
)
def test_it_rejects_a_bad_cron_expression_naming_the_field(expression: str, field: str) -> None:
    scheduled = ScheduledMessage(bot=make_bot(), name="x", text="x", kind="cron", cron=expression)

    with pytest.raises(ValidationError) as raised:
        scheduled.full_clean(exclude=["chats"])

    [message] = raised.value.message_dict["cron"]
    assert message.startswith(f"Bad {field} field")


def test_it_explains_a_cron_expression_with_the_wrong_number_of_fields(admin_client) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.post(reverse("admin:conversations_scheduledmessage_add"), {
        "name": "x", "bot": make_bot().pk, "content": "text", "text": "x", "audience": "all",
        "kind": "cron", "cron": "0 9 * *", "timezone": "UTC",
    })

    assert response.status_code == 200  # the form again, with the error
    assert "has 5 fields" in response.content.decode()
    assert not ScheduledMessage.objects.exists() and our_tasks() == []


def test_it_previews_the_next_runs_in_the_chosen_time_zone(admin_client) -> None:  # type: ignore[no-untyped-def]
    scheduled = scheduled_make(
        make_bot(), kind="cron", cron="30 9 * * 1-5", timezone=ZoneInfo("America/New_York"), run_at=None
    )

    html = admin_client.get(
        reverse("admin:conversations_scheduledmessage_change", args=[scheduled.pk])
    ).content.decode()

    runs = scheduling.runs_next(scheduled=scheduled, count=5)
    assert len(runs) == 5 and all((r.hour, r.minute, r.isoweekday()) < (9, 31, 6) for r in runs)
    assert all(r.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4)) for r in runs)
    assert "At 09:30 AM, Monday through Friday" in html
    for run in runs:
        assert f"{run:%a %Y-%m-%d} 09:30" in html


@pytest.mark.parametrize(("expression", "day"), [("0 0 31 2 *", "31"), ("0 0 30 2 *", "30")])
def test_the_admin_refuses_a_cron_date_that_never_comes_naming_the_field(admin_client, expression: str, day: str) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.post(reverse("admin:conversations_scheduledmessage_add"), {
        "name": "Leap day", "bot": make_bot().pk, "content": "text", "text": "x", "audience": "all",
        "kind": "cron", "cron": expression, "timezone": "UTC",
    })

    assert response.status_code == 200  # the form again, with the error on the cron field
    message = f"Bad day of month field “{day}”: no such day in February, so this schedule would never send."
    assert response.context["adminform"].form.errors["cron"] == [message]
    assert message in response.content.decode()
    assert not ScheduledMessage.objects.exists() and our_tasks() == []


def test_it_shows_never_for_a_saved_schedule_whose_next_run_cannot_be_computed(admin_client) -> None:  # type: ignore[no-untyped-def]
    # As a row saved before such dates were refused: straight into the database.
    broken = ScheduledMessage.objects.create(
        bot=make_bot(), name="Thirty-first of February", text="x", kind="cron", cron="0 0 31 2 *"
    )

    changelist = admin_client.get(reverse("admin:conversations_scheduledmessage_changelist"))
    change = admin_client.get(reverse("admin:conversations_scheduledmessage_change", args=[broken.pk]))

    assert (changelist.status_code, change.status_code) == (200, 200)
    html = changelist.content.decode()
    assert "Thirty-first of February" in html and '<td class="field-next_run">never</td>' in html
    assert "none to come" in change.content.decode()


# --- beat's DatabaseScheduler fires them ------------------------------------------------


class Beat(DatabaseScheduler):
    """The real DatabaseScheduler on a clock the test sets; what it would publish to
    the broker is recorded instead (the test then runs the fire service itself)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.published: list[tuple[str, dict]] = []

        class Entry(ModelEntry):
            def __init__(self, model, app=None):  # type: ignore[no-untyped-def]
                super().__init__(model, app)
                self.schedule.nowfun = clock

            def _default_now(self) -> datetime:
                return clock()

        self.Entry = Entry
        super().__init__(app=celery_app)

    def apply_async(self, entry, producer=None, advance=True, **kwargs):  # type: ignore[no-untyped-def]
        entry = self.reserve(entry) if advance else entry
        self.published.append((entry.task, dict(entry.kwargs)))

    def run_for_a_moment(self) -> list[int]:
        for _ in range(10):
            self.tick()
        return [kw["scheduled_id"] for task, kw in self.published if task == FIRE_TASK]


@pytest.fixture
def make_beat() -> "Iterator[Callable[[Clock], Beat]]":
    made: list[Beat] = []

    def factory(clock: "Clock") -> Beat:
        made.append(Beat(clock))
        return made[-1]

    yield factory
    for beat in made:
        scheduler_shut(beat)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at.astimezone(celery_app.timezone)


def test_it_fires_a_one_off_message_once_even_from_two_beats(telegram_api, emulated_bot, make_beat) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    [chat] = chats_make(telegram_api, bot, 1)
    # Within 5 minutes: the scheduler only loads one-offs due that soon.
    at = timezone.now().replace(microsecond=0) + timedelta(minutes=2)
    scheduled = scheduled_make(bot, [chat], run_at=at, text="Doors open at nine")
    clock = Clock(at - timedelta(seconds=30))
    beats = [make_beat(clock), make_beat(clock)]

    early = [beat.run_for_a_moment() for beat in beats]
    clock.at = at + timedelta(seconds=1)
    fired = [beat.run_for_a_moment() for beat in beats]
    runs = [fire(scheduled, now=clock.at) for _ in fired]

    assert early == [[], []]
    assert fired == [[scheduled.pk], [scheduled.pk]]  # no lock between beats: fired twice
    assert runs[0] is not None and runs[1] is None  # ...but claimed once
    assert [m["text"] for m in telegram_api.sent_messages(info["token"])] == ["Doors open at nine"]
    assert ScheduledRun.objects.get().slot == at


def test_it_fires_a_cron_message_at_its_next_slot_in_its_time_zone(telegram_api, emulated_bot, make_beat) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    [chat] = chats_make(telegram_api, bot, 1)
    # On the hour in Kolkata (UTC+05:30) is half past in UTC: the zone is honoured.
    scheduled = scheduled_make(
        bot, [chat], kind="cron", cron="0 * * * *", timezone=ZoneInfo("Asia/Kolkata"), run_at=None
    )
    [slot] = scheduling.runs_next(scheduled=scheduled, count=1)
    clock = Clock(slot - timedelta(seconds=20))
    beat = make_beat(clock)

    before = beat.run_for_a_moment()
    clock.at = slot + timedelta(seconds=1)
    at_slot = beat.run_for_a_moment()
    run = fire(scheduled, now=clock.at)
    clock.at = slot + timedelta(seconds=30)
    after = beat.run_for_a_moment()

    assert slot.astimezone(ZoneInfo("UTC")).minute == 30
    assert before == [] and at_slot == [scheduled.pk] and after == [scheduled.pk]  # nothing new
    assert run is not None and run.slot == slot and run.state == ScheduledRun.State.DONE
    assert len(telegram_api.sent_messages(info["token"])) == 1


def test_it_ignores_a_firing_of_a_disabled_message(telegram_api, emulated_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    scheduled = scheduled_make(bot, chats_make(telegram_api, bot, 1), run_at=timezone.now())
    scheduling.schedule_enable(scheduled=scheduled, enabled=False)

    assert fire(scheduled) is None
    assert telegram_api.sent_messages(info["token"]) == []


def test_it_routes_scheduled_tasks_to_the_scheduled_queue() -> None:
    for name in (FIRE_TASK, "conversations.tasks.scheduled_run_send"):
        assert celery_app.amqp.router.route({}, name)["queue"].name == "scheduled"


# --- AI-written messages -----------------------------------------------------------------


@pytest.fixture
def ai_bot(telegram_api, emulated_bot, gemini_credential):  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    bot.credential = gemini_credential
    bot.persona.instructions = "You are Captain Byte, a pirate who explains computers."
    bot.persona.fallback_reply = "Arr, no news today."
    bot.persona.save()
    bot.save()
    return bot, info


def test_it_has_the_persona_write_an_ai_message(ai_bot, telegram_api, gemini_api) -> None:  # type: ignore[no-untyped-def]
    bot, info = ai_bot
    gemini_api.script_replies(["Ahoy! Today's tip: save often."])
    chats = chats_make(telegram_api, bot, 2)
    scheduled = scheduled_make(bot, chats, content="prompt", text="Give one computer tip.", run_at=timezone.now())

    run = fire(scheduled)

    [request] = gemini_api.requests()
    assert request.api_key == GEMINI_TEST_KEY
    assert request.system_instruction.startswith("You are Captain Byte")
    assert [(t.role, t.text) for t in request.contents] == [("user", "Give one computer tip.")]
    assert [m["text"] for m in telegram_api.sent_messages(info["token"])] == ["Ahoy! Today's tip: save often."] * 2
    assert run is not None and run.ai_model and not run.error
    assert set(Message.objects.filter(scheduled=scheduled).values_list("ai_model", flat=True)) == {run.ai_model}


def test_it_sends_the_persona_fallback_when_the_ai_fails(ai_bot, telegram_api, gemini_api) -> None:  # type: ignore[no-untyped-def]
    bot, info = ai_bot
    gemini_api.add_fault("permission_denied")
    scheduled = scheduled_make(
        bot, chats_make(telegram_api, bot, 1), content="prompt", text="News?", run_at=timezone.now()
    )

    run = fire(scheduled)

    assert [m["text"] for m in telegram_api.sent_messages(info["token"])] == ["Arr, no news today."]
    assert run is not None and run.error and run.state == ScheduledRun.State.DONE
    scheduled.refresh_from_db()
    assert scheduled.last_status == "done" and "fallback" in scheduled.last_result


def test_it_sends_now_and_toggles_from_the_admin_actions(admin_client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from conversations import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks.scheduled_run_start, "delay", queued.append)  # no broker round trip
    scheduled = scheduled_make(make_bot(), kind="cron", cron="0 8 * * *", run_at=None)
    url = reverse("admin:conversations_scheduledmessage_changelist")

    for action in ("send_now", "disable"):
        admin_client.post(url, {"action": action, "_selected_action": [scheduled.pk]})
    disabled = PeriodicTask.objects.get(pk=scheduled.periodic_task_id).enabled
    admin_client.post(url, {"action": "enable", "_selected_action": [scheduled.pk]})

    run = ScheduledRun.objects.get()
    assert queued == [run.pk] and run.trigger == ScheduledRun.Trigger.MANUAL
    assert disabled is False and PeriodicTask.objects.get(pk=scheduled.periodic_task_id).enabled
    assert ScheduledMessage.objects.get().enabled
