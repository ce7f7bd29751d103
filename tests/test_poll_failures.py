"""A poll cycle meeting Telegram trouble: visible errors, back-off, still running."""

import time

import pytest
from django.utils import timezone

from bots import polling
from bots.models import BotTask
from bots.services import task_start

pytestmark = pytest.mark.django_db(transaction=True)


def one_cycle(task: BotTask) -> BotTask:
    """Run the claimed cycle's long poll and finish it, in this process."""
    task.refresh_from_db()
    assert polling.cycle_launch(task_id=task.pk, token=task.poll_token)
    return cycle_finished(task)


def cycle_finished(task: BotTask) -> BotTask:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        task.refresh_from_db()
        if task.poll_claimed_at is None or task.status != BotTask.Status.RUNNING:
            return task
        time.sleep(0.05)
    raise AssertionError("the cycle did not finish")


def test_it_backs_off_when_another_program_polls_the_token(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    _, info = emulated_bot
    task_start(task=bot_task)
    telegram_api.add_fault(info["token"], "conflict", method="getUpdates")

    task = one_cycle(bot_task)

    assert task.status == BotTask.Status.RUNNING
    assert "Another program is polling this bot's token" in task.last_error
    assert task.consecutive_failures == 1
    backoff = (task.lease_expires_at - timezone.now()).total_seconds()
    assert backoff >= 8  # ~10 s back-off, not an immediate retry fight


def test_it_keeps_running_through_network_errors(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    _, info = emulated_bot
    task_start(task=bot_task)
    telegram_api.add_fault(info["token"], "drop", method="getUpdates")

    task = one_cycle(bot_task)

    assert task.status == BotTask.Status.RUNNING
    assert task.last_error.startswith("Telegram unreachable or failing")
    assert task.error_count == 1


def test_a_duplicate_cycle_message_does_nothing(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    task_start(task=bot_task)
    bot_task.refresh_from_db()

    assert polling.cycle_launch(task_id=bot_task.pk, token=bot_task.poll_token)
    assert not polling.cycle_launch(task_id=bot_task.pk, token=bot_task.poll_token)
    assert not polling.cycle_launch(task_id=bot_task.pk, token="some-old-token")
    cycle_finished(bot_task)  # the one real cycle ends inside the test
