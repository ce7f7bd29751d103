"""Start/stop/restart through the one service layer, and its clear errors; what a task
with default settings sends."""

import pytest
import telegram
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from bots.models import Bot, BotTask
from bots.services import TaskError, task_restart, task_start, task_stop
from conversations import replies
from conversations.ingest import updates_store
from tests.factories import make_task, make_token

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


# --- a task's default maximum reply length -----------------------------------------------


def test_a_task_with_default_settings_sends_a_long_ai_reply_whole_in_several_parts(telegram_api, emulated_bot, gemini_credential, gemini_api) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    bot.credential = gemini_credential
    bot.save()
    task = task_start(task=make_task(bot))  # every setting at its default
    answer = "\n\n".join(
        f"Part {n}. " + "All hands on deck, the ship sails at dawn. " * 70 for n in range(1, 4)
    )  # about 9,000 characters
    gemini_api.script_replies([answer])
    update = telegram_api.send_private_message(info["token"], "Tell me everything")

    stored = updates_store(bot=bot, task=task, updates=[telegram.Update.de_json(update, None)])
    replies.messages_answer(message_ids=[stored.to_answer[0].pk])

    sent = telegram_api.sent_messages(info["token"], chat_id=update["message"]["chat"]["id"])
    assert len(answer) > 9000 and len(sent) == 3
    assert all(len(message["text"]) <= 4096 for message in sent)
    assert " ".join(message["text"] for message in sent).split() == answer.split()  # nothing cut


def test_the_migration_raises_only_the_old_default_reply_length() -> None:
    before, after = [("bots", "0003_poll_owner")], [("bots", "0004_run_windows_and_reply_length")]
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        bot = old.get_model("bots", "Bot").objects.create(name="Old bot", token=make_token())
        tasks = old.get_model("bots", "BotTask").objects
        at_old_default = tasks.create(name="untouched", bot=bot).pk  # the old default: 4096
        lowered = tasks.create(name="lowered", bot=bot, max_response_length=1000).pk
        raised = tasks.create(name="raised", bot=bot, max_response_length=20000).pk

        executor = MigrationExecutor(connection)
        executor.migrate(after)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())  # every app at its latest again

    lengths = dict(BotTask.objects.values_list("pk", "max_response_length"))
    assert lengths == {at_old_default: 12000, lowered: 1000, raised: 20000}
    assert BotTask._meta.get_field("max_response_length").default == 12000
