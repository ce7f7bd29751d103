"""Management commands and admin actions: thin layers over the same services."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from bots.models import BotTask

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: object) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_start_command_starts_and_lists(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    assert "Started:" in run("start_bot_background_task", bot_task.pk)

    listing = run("start_bot_background_task", "--list")
    assert f"#{bot_task.pk}" in listing and "running" in listing


def test_start_command_names_an_unknown_id() -> None:
    with pytest.raises(CommandError, match="No bot task with id 999"):
        run("start_bot_background_task", 999)


def test_start_command_refuses_a_running_task(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    run("start_bot_background_task", bot_task.pk)

    with pytest.raises(CommandError, match="already running"):
        run("start_bot_background_task", bot_task.pk)


def test_stop_command_stops_one_or_all(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    run("start_bot_background_task", bot_task.pk)

    assert "Stopped 1 task(s)" in run("stop_bot_background_task", "--all")
    assert BotTask.objects.get(pk=bot_task.pk).status == BotTask.Status.STOPPED
    with pytest.raises(CommandError, match="is not running"):
        run("stop_bot_background_task", bot_task.pk)


def test_stop_command_refuses_a_task_id_with_all(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    """`stop 3 --all` is a mistake, not an order to stop the fleet: nothing stops."""
    run("start_bot_background_task", bot_task.pk)

    with pytest.raises(CommandError, match="Give a task id or --all, not both") as refused:
        run("stop_bot_background_task", bot_task.pk, "--all")

    assert f"stop_bot_background_task {bot_task.pk}" in str(refused.value)
    assert BotTask.objects.get(pk=bot_task.pk).status == BotTask.Status.RUNNING


def test_start_command_refuses_a_task_id_with_list(bot_task) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="Give a task id or --list, not both"):
        run("start_bot_background_task", bot_task.pk, "--list")

    assert BotTask.objects.get(pk=bot_task.pk).status == BotTask.Status.PENDING


def test_status_command_shows_counters_and_last_error(bot_task) -> None:  # type: ignore[no-untyped-def]
    BotTask.objects.filter(pk=bot_task.pk).update(replies_sent=7, last_error="boom")

    output = run("bot_status", bot_task.pk)

    assert "out=7" in output and "last error: boom" in output


def test_admin_actions_start_and_stop_tasks(admin_client, telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    url = reverse("admin:bots_bottask_changelist")

    started = admin_client.post(url, {"action": "start_tasks", "_selected_action": [bot_task.pk]}, follow=True)
    assert "Started 1 task(s)." in started.content.decode()
    assert BotTask.objects.get(pk=bot_task.pk).status == BotTask.Status.RUNNING

    again = admin_client.post(url, {"action": "start_tasks", "_selected_action": [bot_task.pk]}, follow=True)
    assert "already running" in again.content.decode()

    admin_client.post(url, {"action": "stop_tasks", "_selected_action": [bot_task.pk]})
    assert BotTask.objects.get(pk=bot_task.pk).status == BotTask.Status.STOPPED


def test_admin_restarts_only_failed_tasks(admin_client, telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    BotTask.objects.filter(pk=bot_task.pk).update(status=BotTask.Status.FAILED, last_error="x")
    url = reverse("admin:bots_bottask_changelist")

    page = admin_client.post(url, {"action": "restart_failed_tasks", "_selected_action": [bot_task.pk]}, follow=True)

    assert "Restarted 1 task(s)." in page.content.decode()
    assert BotTask.objects.get(pk=bot_task.pk).status == BotTask.Status.RUNNING
