"""Run windows: a task's optional "start at" and "run until" times.

Start pressed before the start time leaves the task `scheduled`; the beat-driven
supervisor starts it when the time comes and, when its run-until time passes, ends it as
`completed` through the same Stop service (its poller ends the way Stop ends it).
Times are set in the past or the future instead of waiting for them.
"""

import time
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from bots import polling, supervisor, tasks
from bots.models import Bot, BotTask, time_label
from bots.services import TaskError, task_start, task_stop
from tests.factories import make_task
from tests.support.pollers import launched
from tests.support.timing import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def in_(**delta: float) -> datetime:
    return timezone.now() + timedelta(**delta)


def ago(**delta: float) -> datetime:
    return timezone.now() - timedelta(**delta)


def reload(task: BotTask) -> BotTask:
    return BotTask.objects.get(pk=task.pk)


def scheduled(task: BotTask, *, run_until: datetime | None = None) -> BotTask:
    """Started an hour before its start time: waiting."""
    BotTask.objects.filter(pk=task.pk).update(start_at=in_(hours=1), run_until=run_until)
    return task_start(task=reload(task))


def start_time_comes(task: BotTask) -> None:
    BotTask.objects.filter(pk=task.pk).update(start_at=ago(seconds=1))


def run_until_passes(task: BotTask) -> None:
    BotTask.objects.filter(pk=task.pk).update(run_until=ago(seconds=1))


def beat() -> None:
    """One round of what celery-beat runs every SUPERVISOR_INTERVAL."""
    tasks.supervise()


def getme_calls(telegram_api: Any, token: str) -> int:
    return len(telegram_api.calls(token, method="getMe"))


# --- start at -----------------------------------------------------------------------


def test_it_waits_when_started_before_its_start_time(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    _, info = emulated_bot

    task = scheduled(bot_task)

    assert task.status == BotTask.Status.SCHEDULED
    assert (task.poll_token, task.started_at) == ("", None)
    assert task.run_window() == f"starts {time_label(task.start_at)}"  # type: ignore[arg-type]
    assert getme_calls(telegram_api, info["token"]) == 0  # Telegram is asked when it starts


def test_the_supervisor_leaves_a_scheduled_task_waiting_until_its_time(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    task = scheduled(bot_task)

    beat()

    assert reload(task).status == BotTask.Status.SCHEDULED
    assert getme_calls(telegram_api, emulated_bot[1]["token"]) == 0


def test_the_supervisor_starts_a_scheduled_task_when_its_time_comes(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    task = scheduled(bot_task)
    start_time_comes(task)

    beat()

    task = reload(task)
    assert task.status == BotTask.Status.RUNNING and task.started_at is not None and task.poll_token
    assert Bot.objects.get(pk=bot.pk).username == info["username"]  # getMe, as Start does
    launched(task)
    telegram_api.wait_for_calls(info["token"], "getUpdates", 1, timeout=10)


def test_it_starts_at_once_when_the_start_time_has_passed(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    BotTask.objects.filter(pk=bot_task.pk).update(start_at=ago(minutes=5))

    assert task_start(task=bot_task).status == BotTask.Status.RUNNING


def test_stop_cancels_a_scheduled_task(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    task = scheduled(bot_task)

    assert task_stop(task=task).status == BotTask.Status.STOPPED
    start_time_comes(task)
    beat()

    assert reload(task).status == BotTask.Status.STOPPED
    assert getme_calls(telegram_api, emulated_bot[1]["token"]) == 0


def test_it_fails_a_scheduled_task_whose_token_is_rejected_at_its_start_time(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    _, info = emulated_bot
    task = scheduled(bot_task)
    telegram_api.add_fault(info["token"], "unauthorized", method="getMe")
    start_time_comes(task)

    beat()

    task = reload(task)
    assert task.status == BotTask.Status.FAILED
    assert task.last_error.startswith("Telegram rejected the bot token")


def test_it_keeps_a_scheduled_task_waiting_while_telegram_is_unreachable(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, _ = emulated_bot
    task = scheduled(bot_task)
    start_time_comes(task)
    Bot.objects.filter(pk=bot.pk).update(api_base_url="http://127.0.0.1:9/bot")  # nothing listens

    beat()
    waiting = reload(task)
    Bot.objects.filter(pk=bot.pk).update(api_base_url=telegram_api.base_url)
    beat()

    assert waiting.status == BotTask.Status.SCHEDULED
    assert "Telegram unreachable" in waiting.last_error and "Trying again shortly" in waiting.last_error
    assert reload(task).status == BotTask.Status.RUNNING  # the next round started it


def test_it_fails_a_scheduled_task_whose_bot_is_busy_with_another_task(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, _ = emulated_bot
    other = task_start(task=make_task(bot, name="Day shift"))
    task = scheduled(bot_task)
    start_time_comes(task)

    beat()

    task = reload(task)
    assert task.status == BotTask.Status.FAILED
    assert f"already has a running task: #{other.pk} “Day shift”" in task.last_error
    assert reload(other).status == BotTask.Status.RUNNING


def test_it_hands_a_bot_from_one_task_to_the_next_in_one_round(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, _ = emulated_bot
    BotTask.objects.filter(pk=bot_task.pk).update(run_until=in_(hours=1))
    day = task_start(task=reload(bot_task))
    night = scheduled(make_task(bot, name="Night shift"))
    run_until_passes(day)
    start_time_comes(night)

    beat()

    assert (reload(day).status, reload(night).status) == (BotTask.Status.COMPLETED, BotTask.Status.RUNNING)


# --- run until ------------------------------------------------------------------------


def test_the_supervisor_completes_a_running_task_when_its_run_until_passes(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    BotTask.objects.filter(pk=bot_task.pk).update(run_until=in_(hours=1))
    task = task_start(task=reload(bot_task))

    beat()
    still_running = reload(task).status
    run_until_passes(task)
    beat()

    task = reload(task)
    assert still_running == BotTask.Status.RUNNING
    assert task.status == BotTask.Status.COMPLETED
    assert task.stopped_at is not None and task.poll_token == "" and task.lease_expires_at is None
    assert task.run_window() == f"completed {time_label(task.stopped_at)}"


def test_a_completed_task_s_poller_stops_polling_telegram(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    _, info = emulated_bot
    BotTask.objects.filter(pk=bot_task.pk).update(run_until=in_(hours=1))
    task = launched(task_start(task=reload(bot_task)))
    telegram_api.wait_for_calls(info["token"], "getUpdates", 2, timeout=10)

    run_until_passes(task)
    beat()

    wait_until(lambda: polling.pollers_running() == [], timeout=3)
    polls = len(telegram_api.calls(info["token"], method="getUpdates"))
    update = telegram_api.send_private_message(info["token"], "still there?")
    time.sleep(2)  # two poll timeouts: a poller still running would have fetched it
    assert len(telegram_api.calls(info["token"], method="getUpdates")) == polls
    assert telegram_api.sent_messages(info["token"], chat_id=update["message"]["chat"]["id"]) == []
    assert reload(task).status == BotTask.Status.COMPLETED


def test_it_completes_a_scheduled_task_whose_window_passed_before_it_started(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    task = scheduled(bot_task, run_until=in_(hours=2))
    BotTask.objects.filter(pk=task.pk).update(start_at=ago(hours=2), run_until=ago(hours=1))  # beat was down

    beat()

    task = reload(task)
    assert task.status == BotTask.Status.COMPLETED and task.started_at is None
    assert getme_calls(telegram_api, emulated_bot[1]["token"]) == 0


def test_it_refuses_to_start_a_task_whose_run_until_has_passed(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    BotTask.objects.filter(pk=bot_task.pk).update(run_until=ago(minutes=1))

    with pytest.raises(TaskError, match="its “run until” time .* has passed"):
        task_start(task=bot_task)

    assert reload(bot_task).status == BotTask.Status.PENDING
    assert getme_calls(telegram_api, emulated_bot[1]["token"]) == 0


def test_a_completed_task_starts_again_once_its_run_until_is_moved_later(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    BotTask.objects.filter(pk=bot_task.pk).update(run_until=in_(hours=1))
    task = task_start(task=reload(bot_task))
    run_until_passes(task)
    beat()
    BotTask.objects.filter(pk=task.pk).update(run_until=in_(hours=1))

    assert task_start(task=reload(task)).status == BotTask.Status.RUNNING


# --- the admin: editing and validating the window --------------------------------------


def task_form(task: BotTask, **fields: object) -> dict[str, object]:
    form: dict[str, object] = {
        "name": task.name, "bot": task.bot_id, "use_ai": "on", "respond_to_private": "on",
        "respond_to_mentions": "on", "respond_to_replies": "on",
        "max_response_length": task.max_response_length,
        "start_at_0": "", "start_at_1": "", "run_until_0": "", "run_until_1": "",
    }
    for name, value in fields.items():
        moment = timezone.localtime(value)  # type: ignore[arg-type]
        form[f"{name}_0"], form[f"{name}_1"] = f"{moment:%Y-%m-%d}", f"{moment:%H:%M:%S}"
    return form


def test_the_admin_saves_a_run_window(admin_client) -> None:  # type: ignore[no-untyped-def]
    task = make_task()
    start, end = in_(days=1).replace(microsecond=0), in_(days=2).replace(microsecond=0)

    response = admin_client.post(
        reverse("admin:bots_bottask_change", args=[task.pk]), task_form(task, start_at=start, run_until=end)
    )

    assert response.status_code == 302
    assert (reload(task).start_at, reload(task).run_until) == (start, end)


def test_the_admin_refuses_a_run_until_before_the_start_at(admin_client) -> None:  # type: ignore[no-untyped-def]
    task = make_task()

    response = admin_client.post(
        reverse("admin:bots_bottask_change", args=[task.pk]),
        task_form(task, start_at=in_(days=2), run_until=in_(days=1)),
    )

    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors["run_until"] == [
        "“Run until” must be later than “start at”."
    ]
    assert "“Run until” must be later than “start at”." in response.content.decode()
    assert reload(task).run_until is None


def test_the_admin_refuses_a_run_until_in_the_past(admin_client) -> None:  # type: ignore[no-untyped-def]
    task = make_task()

    response = admin_client.post(
        reverse("admin:bots_bottask_change", args=[task.pk]), task_form(task, run_until=ago(hours=1))
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["run_until"] == ["“Run until” must be in the future."]
    assert reload(task).run_until is None


def test_the_admin_keeps_the_past_run_until_of_a_completed_task_when_it_is_edited(admin_client) -> None:  # type: ignore[no-untyped-def]
    ended = ago(hours=1).replace(microsecond=0)
    task = make_task(status=BotTask.Status.COMPLETED, run_until=ended)

    response = admin_client.post(
        reverse("admin:bots_bottask_change", args=[task.pk]), {**task_form(task, run_until=ended), "name": "Renamed"}
    )

    assert response.status_code == 302
    assert (reload(task).name, reload(task).run_until) == ("Renamed", ended)


def test_the_admin_start_action_says_when_a_scheduled_task_will_start(admin_client, telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    start = in_(hours=3)
    BotTask.objects.filter(pk=bot_task.pk).update(start_at=start)

    page = admin_client.post(
        reverse("admin:bots_bottask_changelist"),
        {"action": "start_tasks", "_selected_action": [bot_task.pk]}, follow=True,
    ).content.decode()

    assert f"Scheduled task #{bot_task.pk} “{bot_task.name}”: starts {time_label(start)}." in page
    assert reload(bot_task).status == BotTask.Status.SCHEDULED


# --- the commands ---------------------------------------------------------------------


def run(*args: object) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_bot_status_shows_when_a_scheduled_task_starts_and_until_when_it_runs(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    end = in_(hours=5)
    task = scheduled(bot_task, run_until=end)

    output = run("bot_status", task.pk)

    assert "scheduled" in output
    assert f"starts {time_label(task.start_at)}, runs until {time_label(end)}" in output  # type: ignore[arg-type]


def test_bot_status_shows_a_completed_task_and_when_it_ended(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    BotTask.objects.filter(pk=bot_task.pk).update(run_until=in_(hours=1))
    task = task_start(task=reload(bot_task))
    run_until_passes(task)
    beat()

    output = run("bot_status")

    assert f"#{task.pk}" in output and "completed" in output
    assert f"completed {time_label(reload(task).stopped_at)}" in output  # type: ignore[arg-type]


def test_the_start_command_says_a_task_was_scheduled(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    BotTask.objects.filter(pk=bot_task.pk).update(start_at=in_(hours=1))

    output = run("start_bot_background_task", bot_task.pk)

    assert output.startswith("Scheduled:") and "starts " in output


def test_stop_all_cancels_scheduled_tasks_too(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    task = scheduled(bot_task)

    assert "Stopped 1 task(s)" in run("stop_bot_background_task", "--all")
    assert reload(task).status == BotTask.Status.STOPPED


# --- the supervisor, alone ---------------------------------------------------------------


def test_the_supervisor_reports_what_it_completed_and_started(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, _ = emulated_bot
    BotTask.objects.filter(pk=bot_task.pk).update(run_until=in_(hours=1))
    ending = task_start(task=reload(bot_task))
    starting = scheduled(make_task(bot))
    run_until_passes(ending)
    start_time_comes(starting)

    assert supervisor.run_windows_apply() == ([ending.pk], [starting.pk])
    assert supervisor.run_windows_apply() == ([], [])
