"""A bot's poller meeting Telegram trouble: visible errors, back-off, still running;
leases that hold one poller per token and end it on Stop."""

import time

import pytest

from bots import polling
from bots.models import BotTask
from bots.services import task_start, task_stop
from tests.support.pollers import launched
from tests.support.timing import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_backs_off_when_another_program_polls_the_token(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    _, info = emulated_bot
    task_start(task=bot_task)
    telegram_api.add_fault(info["token"], "conflict", method="getUpdates")

    launched(bot_task)
    task = wait_until(lambda: BotTask.objects.filter(pk=bot_task.pk, consecutive_failures=1).first())
    time.sleep(3)

    assert task.status == BotTask.Status.RUNNING
    assert "Another program is polling this bot's token" in task.last_error
    # ~10 s back-off: no immediate retry fight with the other poller.
    assert len(telegram_api.calls(info["token"], method="getUpdates")) == 1


def test_it_keeps_polling_through_network_errors(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    _, info = emulated_bot
    task_start(task=bot_task)
    telegram_api.add_fault(info["token"], "drop_connection", method="getUpdates")

    launched(bot_task)
    telegram_api.wait_for_calls(info["token"], "getUpdates", 3, timeout=10)

    task = BotTask.objects.get(pk=bot_task.pk)
    assert task.status == BotTask.Status.RUNNING
    assert task.last_error.startswith("Telegram unreachable or failing")
    assert (task.error_count, task.consecutive_failures) == (1, 0)  # recovered


def test_a_duplicate_cycle_message_does_nothing(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    task_start(task=bot_task)
    bot_task.refresh_from_db()

    assert polling.poller_launch(task_id=bot_task.pk, token=bot_task.poll_token)
    assert not polling.poller_launch(task_id=bot_task.pk, token=bot_task.poll_token)
    assert not polling.poller_launch(task_id=bot_task.pk, token="some-old-token")
    assert polling.pollers_running() == [bot_task.pk]


def test_it_ends_the_poller_and_its_long_poll_on_stop(telegram_api, emulated_bot, bot_task, settings) -> None:  # type: ignore[no-untyped-def]
    _, info = emulated_bot
    settings.TELEGRAM_POLL_TIMEOUT = 30  # a long poll is in flight when Stop comes
    task_start(task=bot_task)
    launched(bot_task)
    telegram_api.wait_for_calls(info["token"], "getUpdates", 1, timeout=10)

    task_stop(task=bot_task)

    wait_until(lambda: polling.pollers_running() == [], timeout=3)
    update = telegram_api.send_private_message(info["token"], "anyone?")
    time.sleep(1.5)
    assert len(telegram_api.calls(info["token"], method="getUpdates")) == 1
    assert telegram_api.sent_messages(info["token"], chat_id=update["message"]["chat"]["id"]) == []


def test_it_renews_the_lease_while_idle_without_moving_the_offset(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    task_start(task=bot_task)
    task = launched(bot_task)
    first_expiry = BotTask.objects.get(pk=task.pk).lease_expires_at

    telegram_api.wait_for_calls(info["token"], "getUpdates", 3, timeout=10)  # idle polls

    renewed = BotTask.objects.get(pk=task.pk)
    assert renewed.lease_expires_at > first_expiry
    assert renewed.poll_token == task.poll_token  # the same lease, no hand-over per poll
    bot.refresh_from_db()
    assert bot.update_offset == 0


def test_a_proxy_error_page_shows_as_a_short_reason_not_its_html(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    _, info = emulated_bot
    task_start(task=bot_task)
    telegram_api.add_fault(info["token"], "html", method="getUpdates", status=502)

    launched(bot_task)
    task = wait_until(lambda: BotTask.objects.filter(pk=bot_task.pk, error_count__gte=1).first())

    assert task.last_error == "Telegram unreachable or failing: Bad Gateway (502) (not a Telegram answer)"
    assert task.status == BotTask.Status.RUNNING
