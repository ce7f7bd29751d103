"""End to end: a real Celery worker process, real Redis, the Telegram emulator on
loopback, python-telegram-bot in between."""

import time

import pytest

from bots.models import Bot, BotTask
from bots.services import task_start, task_stop
from conversations.models import Message
from tests.support.timing import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def test_it_answers_a_private_message_exactly_once(celery_worker, telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    task_start(task=bot_task)

    update = telegram_api.send_private_message(info["token"], "Hello bot")
    chat_id = update["message"]["chat"]["id"]
    sent = telegram_api.wait_for_sent(info["token"], 1, chat_id=chat_id, timeout=20)
    time.sleep(1.5)  # room for a duplicate to show up, if there were one

    assert len(telegram_api.sent_messages(info["token"], chat_id=chat_id)) == 1
    assert "You said: Hello bot" in sent[0]["text"]
    incoming = Message.objects.get(bot=bot, direction="in")
    assert incoming.reply_state == Message.ReplyState.REPLIED
    assert Message.objects.filter(bot=bot, direction="out", reply_to=incoming).count() == 1
    task = BotTask.objects.get(pk=bot_task.pk)
    assert (task.messages_processed, task.replies_sent) == (1, 1)


def test_it_answers_in_a_group_only_when_mentioned(celery_worker, telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    task_start(task=bot_task)
    group = telegram_api.add_group(title="Team")

    telegram_api.send_group_message(info["token"], "just chatting among people", chat_id=group["id"])
    telegram_api.send_group_message(info["token"], "{bot} what time is it?", chat_id=group["id"], mention_bot="username")
    sent = telegram_api.wait_for_sent(info["token"], 1, chat_id=group["id"], timeout=20)
    time.sleep(1.5)

    assert len(telegram_api.sent_messages(info["token"], chat_id=group["id"])) == 1
    assert "what time is it?" in sent[0]["text"]
    assert sent[0]["reply_to_message_id"] is not None  # quotes the question in groups
    assert Message.objects.filter(bot=bot, direction="in").count() == 2  # both logged


def test_it_sends_a_long_reply_split_in_order(celery_worker, telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    paragraphs = [f"Paragraph {n}: " + "word " * 700 for n in range(1, 4)]  # ~3,500 chars each
    bot.persona.greeting = "\n\n".join(paragraphs)
    bot.persona.save()
    bot_task.max_response_length = 20_000
    bot_task.save()
    task_start(task=bot_task)

    update = telegram_api.send_command(info["token"], "start")
    chat_id = update["message"]["chat"]["id"]
    sent = telegram_api.wait_for_sent(info["token"], 3, chat_id=chat_id, timeout=30)

    assert [m["text"].split(":")[0] for m in sent] == ["Paragraph 1", "Paragraph 2", "Paragraph 3"]
    assert all(len(m["text"]) <= 4096 for m in sent)


def test_it_retries_after_a_429_and_delivers_once(celery_worker, telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    task_start(task=bot_task)
    telegram_api.add_fault(info["token"], "too_many_requests", method="sendMessage", retry_after=2)

    started = time.monotonic()
    update = telegram_api.send_private_message(info["token"], "are you there?")
    chat_id = update["message"]["chat"]["id"]
    telegram_api.wait_for_sent(info["token"], 1, chat_id=chat_id, timeout=30)
    waited = time.monotonic() - started
    time.sleep(1.5)

    assert len(telegram_api.sent_messages(info["token"], chat_id=chat_id)) == 1
    assert waited >= 2, "the reply went out before retry_after had passed"
    attempts = telegram_api.calls(info["token"], method="sendMessage")
    assert len(attempts) == 2  # the refused one and the delivered one


def test_it_does_not_answer_a_redelivered_update_twice(celery_worker, telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    task_start(task=bot_task)
    update = telegram_api.send_private_message(info["token"], "only once please")
    chat_id = update["message"]["chat"]["id"]
    telegram_api.wait_for_sent(info["token"], 1, chat_id=chat_id, timeout=20)

    # As if the poller had crashed after storing the update but before moving the
    # offset: the offset is back where it was and Telegram delivers the update again.
    Bot.objects.filter(pk=bot.pk).update(update_offset=update["update_id"])
    polls_before = len(telegram_api.calls(info["token"], method="getUpdates", limit=100_000))
    telegram_api.redeliver_update(info["token"], update)
    wait_until(lambda: len(telegram_api.calls(info["token"], method="getUpdates", limit=100_000)) >= polls_before + 2)
    time.sleep(1.5)

    assert len(telegram_api.sent_messages(info["token"], chat_id=chat_id)) == 1
    assert Message.objects.filter(bot=bot, direction="in").count() == 1
    assert Bot.objects.get(pk=bot.pk).update_offset == update["update_id"] + 1


def test_it_stops_within_one_poll_cycle(celery_worker, telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    task_start(task=bot_task)
    telegram_api.wait_for_calls(info["token"], "getUpdates", 1, timeout=10)

    task_stop(task=bot_task)
    time.sleep(2.5)  # poll timeout is 1 s in tests: the cycle in flight has ended
    polls_after_stop = len(telegram_api.calls(info["token"], method="getUpdates", limit=100_000))
    update = telegram_api.send_private_message(info["token"], "anyone?")
    time.sleep(2.5)

    assert len(telegram_api.calls(info["token"], method="getUpdates", limit=100_000)) == polls_after_stop
    assert telegram_api.sent_messages(info["token"], chat_id=update["message"]["chat"]["id"]) == []


def test_it_fails_the_task_when_telegram_rejects_the_token(celery_worker, telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    task_start(task=bot_task)
    telegram_api.add_fault(info["token"], "unauthorized", method="getUpdates")

    task = wait_until(lambda: BotTask.objects.filter(pk=bot_task.pk, status="failed").first())

    assert task.last_error.startswith("Telegram rejected the bot token")
    assert info["token"] not in task.last_error


def test_it_resumes_after_the_worker_is_killed_without_losing_or_repeating(transactional_db, telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    from bots.supervisor import pollers_revive
    from tests.support.worker import WorkerProcess

    bot, info = emulated_bot
    first = WorkerProcess().start()
    try:
        task_start(task=bot_task)
        chats = []
        for n in range(5):
            chats.append(telegram_api.send_private_message(info["token"], f"before {n}")["message"]["chat"]["id"])
        telegram_api.wait_for_sent(info["token"], 5, timeout=20)
        telegram_api.wait_for_calls(info["token"], "getUpdates", 3, timeout=10)
        first.kill()  # SIGKILL mid-cycle: a long poll is in flight
    finally:
        first.stop()
    for n in range(5):
        chats.append(telegram_api.send_private_message(info["token"], f"while down {n}")["message"]["chat"]["id"])

    second = WorkerProcess().start()
    try:
        revived = wait_until(pollers_revive, timeout=20, interval=0.5)  # what beat runs
        telegram_api.wait_for_sent(info["token"], 10, timeout=30)
        time.sleep(2)
    finally:
        second.stop()

    assert revived == [bot_task.pk]
    texts = sorted(m["text"] for m in telegram_api.sent_messages(info["token"]))
    assert len(texts) == 10
    assert len(set(texts)) == 10  # nobody answered twice
    assert Message.objects.filter(bot=bot, direction="in", reply_state="replied").count() == 10


def test_it_answers_with_gemini_and_remembers_the_conversation(celery_worker, telegram_api, gemini_api, emulated_bot, bot_task, gemini_credential) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    Bot.objects.filter(pk=bot.pk).update(credential=gemini_credential)
    gemini_api.script_replies(["The capital of France is Paris.", "About 2.1 million people."])
    task_start(task=bot_task)

    first = telegram_api.send_private_message(info["token"], "What is the capital of France?")
    chat_id = first["message"]["chat"]["id"]
    telegram_api.wait_for_sent(info["token"], 1, chat_id=chat_id, timeout=20)
    telegram_api.send_private_message(info["token"], "How many people live there?", user_id=chat_id)
    sent = telegram_api.wait_for_sent(info["token"], 2, chat_id=chat_id, timeout=20)

    assert [m["text"] for m in sent] == ["The capital of France is Paris.", "About 2.1 million people."]
    follow_up = gemini_api.requests()[-1]
    assert [(t.role, t.text) for t in follow_up.contents] == [
        ("user", "What is the capital of France?"),
        ("model", "The capital of France is Paris."),
        ("user", "How many people live there?"),
    ]


def test_it_answers_once_when_the_worker_dies_during_the_ai_call(transactional_db, telegram_api, gemini_api, emulated_bot, bot_task, gemini_credential) -> None:  # type: ignore[no-untyped-def]
    from conversations.tasks import claims_reap
    from tests.support.worker import WorkerProcess

    bot, info = emulated_bot
    Bot.objects.filter(pk=bot.pk).update(credential=gemini_credential)
    gemini_api.set_latency(3)
    first = WorkerProcess().start()
    try:
        task_start(task=bot_task)
        update = telegram_api.send_private_message(info["token"], "still there?")
        gemini_api.wait_for_requests(1, timeout=15)
        first.kill()  # SIGKILL while the AI call is in flight
    finally:
        first.stop()

    second = WorkerProcess().start()
    try:
        def answered():  # type: ignore[no-untyped-def]
            claims_reap.delay()  # what beat runs every SUPERVISOR_INTERVAL
            return telegram_api.sent_messages(info["token"])

        wait_until(answered, timeout=30, interval=1)
        time.sleep(2)  # room for a duplicate to show up, if there were one
    finally:
        second.stop()

    sent = telegram_api.sent_messages(info["token"], chat_id=update["message"]["chat"]["id"])
    assert len(sent) == 1 and "still there?" in sent[0]["text"]
    incoming = Message.objects.get(bot=bot, direction="in")
    assert (incoming.reply_state, incoming.attempts) == ("replied", 1)  # taken over once
