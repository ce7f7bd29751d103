"""Start/stop/restart through the one service layer, and its clear errors."""

import pytest

from bots.models import Bot, BotTask
from bots.services import TaskError, task_restart, task_start, task_stop
from tests.factories import make_task

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_starts_a_task_clearing_the_webhook_and_learning_who_the_bot_is(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    import asyncio

    import telegram

    async def set_webhook() -> None:
        async with telegram.Bot(info["token"], base_url=telegram_api.base_url) as ptb:
            await ptb.set_webhook("https://example.com/hook")

    asyncio.run(set_webhook())

    task = task_start(task=bot_task)

    assert task.status == BotTask.Status.RUNNING and task.started_at is not None
    assert telegram_api.bot_status(info["token"])["webhook_url"] in ("", None)
    bot = Bot.objects.get(pk=bot.pk)
    assert (bot.telegram_id, bot.username, bot.first_name) == (info["id"], info["username"], "Helper")


def test_it_refuses_to_start_a_running_task(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    task_start(task=bot_task)

    with pytest.raises(TaskError, match="is already running"):
        task_start(task=bot_task)


def test_it_refuses_a_second_running_task_for_the_same_bot(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    task_start(task=bot_task)
    second = make_task(emulated_bot[0], name="second")

    with pytest.raises(TaskError, match=f"already has a running task: #{bot_task.pk}"):
        task_start(task=second)


def test_it_fails_to_start_when_telegram_rejects_the_token(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    telegram_api.add_fault(info["token"], "unauthorized", method="getMe")

    with pytest.raises(TaskError, match="Telegram rejected the bot token") as excinfo:
        task_start(task=bot_task)

    assert info["token"] not in str(excinfo.value)
    task = BotTask.objects.get(pk=bot_task.pk)
    assert task.status == BotTask.Status.FAILED
    assert task.last_error.startswith("Telegram rejected the bot token")


def test_it_explains_when_telegram_is_unreachable(emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, _ = emulated_bot
    Bot.objects.filter(pk=bot.pk).update(api_base_url="http://127.0.0.1:9/bot")  # nothing listens

    with pytest.raises(TaskError, match="Telegram unreachable"):
        task_start(task=BotTask.objects.get(pk=bot_task.pk))
    assert BotTask.objects.get(pk=bot_task.pk).status == BotTask.Status.PENDING


def test_it_stops_and_restarts(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    task_start(task=bot_task)

    stopped = task_stop(task=bot_task)
    assert (stopped.status, stopped.poll_token) == (BotTask.Status.STOPPED, "")
    with pytest.raises(TaskError, match="is not running"):
        task_stop(task=bot_task)
    assert task_restart(task=bot_task).status == BotTask.Status.RUNNING
