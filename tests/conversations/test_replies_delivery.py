"""The reply pipeline against the Telegram emulator, run in-process (no worker): what
the batch path does with each stored message, through the outbox."""


import pytest
import telegram

from bots.models import BotTask
from bots.services import task_start
from conversations import replies
from conversations.ingest import updates_store
from conversations.models import Chat, Message

pytestmark = pytest.mark.django_db(transaction=True)


def incoming(bot_task: BotTask, update: dict) -> Message:
    task = BotTask.objects.select_related("bot").get(pk=bot_task.pk)
    stored = updates_store(bot=task.bot, task=task, updates=[telegram.Update.de_json(update, None)])
    return stored.to_answer[0]


@pytest.fixture
def started(telegram_api, emulated_bot, bot_task):  # type: ignore[no-untyped-def]
    task_start(task=bot_task)
    return emulated_bot[1]


def test_it_replies_and_records_the_outgoing_message(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = incoming(bot_task, telegram_api.send_private_message(started["token"], "Hi **there**"))

    replies.messages_answer(message_ids=[message.pk])

    out = Message.objects.get(direction="out", reply_to=message)
    assert (out.send_state, out.handed_at is not None) == ("sent", True)
    sent = telegram_api.sent_messages(started["token"])
    assert out.telegram_message_id == sent[0]["message_id"]
    assert (out.ai_model, out.finish_reason) == ("offline", "STOP")


def test_it_is_safe_to_run_twice(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = incoming(bot_task, telegram_api.send_private_message(started["token"], "once"))

    replies.messages_answer(message_ids=[message.pk])
    replies.messages_answer(message_ids=[message.pk])

    assert len(telegram_api.sent_messages(started["token"])) == 1
    assert BotTask.objects.get(pk=bot_task.pk).replies_sent == 1


def test_it_answers_a_photo_its_ai_cannot_see_with_the_personas_line(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = incoming(bot_task, telegram_api.send_media(started["token"], kind="photo"))  # the offline AI

    replies.messages_answer(message_ids=[message.pk])

    expected = bot_task.bot.persona.media_unsupported_reply if bot_task.bot.persona else ""
    assert telegram_api.sent_messages(started["token"])[0]["text"] == expected


def test_it_marks_the_chat_inactive_when_the_user_blocked_the_bot(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    update = telegram_api.send_private_message(started["token"], "bye")
    message = incoming(bot_task, update)
    telegram_api.block_bot(started["token"], update["message"]["from"]["id"])

    replies.messages_answer(message_ids=[message.pk])

    message.refresh_from_db()
    assert message.reply_state == Message.ReplyState.FAILED
    assert "blocked" in message.error
    chat = Chat.objects.get(pk=message.chat_id)
    assert not chat.is_active and "blocked" in chat.inactive_reason
    assert len(telegram_api.calls(started["token"], method="sendMessage")) == 1


def test_it_sends_plain_text_when_telegram_rejects_the_formatting(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = incoming(bot_task, telegram_api.send_private_message(started["token"], "**bold** please"))
    telegram_api.add_fault(
        started["token"], "error", method="sendMessage", status=400,
        description="Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 0",
    )

    replies.messages_answer(message_ids=[message.pk])

    attempts = telegram_api.calls(started["token"], method="sendMessage")
    assert len(attempts) == 2
    assert attempts[0]["params"].get("entities") and not attempts[1]["params"].get("entities")
    assert len(telegram_api.sent_messages(started["token"])) == 1


def test_it_sends_plain_text_after_any_formatting_refusal_once(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = incoming(bot_task, telegram_api.send_private_message(started["token"], "**bold** please"))
    telegram_api.add_fault(
        started["token"], "error", method="sendMessage", status=400, times=2,
        description="Bad Request: wrong HTTP URL specified",
    )

    replies.messages_answer(message_ids=[message.pk])

    attempts = telegram_api.calls(started["token"], method="sendMessage")
    assert len(attempts) == 2  # formatted, then plain once; no loop
    assert attempts[0]["params"].get("entities") and not attempts[1]["params"].get("entities")
    message.refresh_from_db()
    assert message.reply_state == Message.ReplyState.FAILED
    assert "wrong http url" in message.error.lower()


def test_it_retries_a_reply_after_a_server_error(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = incoming(bot_task, telegram_api.send_private_message(started["token"], "hello?"))
    telegram_api.add_fault(started["token"], "server_error", method="sendMessage")

    replies.messages_answer(message_ids=[message.pk])

    assert len(telegram_api.calls(started["token"], method="sendMessage")) == 2
    assert len(telegram_api.sent_messages(started["token"])) == 1
    message.refresh_from_db()
    out = Message.objects.get(direction="out", reply_to=message)
    assert (message.reply_state, out.send_state, out.attempts) == ("replied", "sent", 1)


def test_it_does_not_answer_once_the_task_is_stopped(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    from bots.services import task_stop

    message = incoming(bot_task, telegram_api.send_private_message(started["token"], "late"))
    task_stop(task=bot_task)

    replies.messages_answer(message_ids=[message.pk])

    message.refresh_from_db()
    assert message.reply_state == Message.ReplyState.NONE
    assert telegram_api.sent_messages(started["token"]) == []


def test_it_spaces_messages_to_one_chat_about_a_second_apart(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    update = telegram_api.send_private_message(started["token"], "one")
    chat_id = update["message"]["chat"]["id"]
    first = incoming(bot_task, update)
    second = incoming(bot_task, telegram_api.send_private_message(started["token"], "two", user_id=chat_id))

    replies.messages_answer(message_ids=[first.pk, second.pk])

    times = [m["time"] for m in telegram_api.sent_messages(started["token"], chat_id=chat_id)]
    assert len(times) == 2 and times[1] - times[0] >= 0.9


def test_a_failed_reply_does_not_hold_up_the_next_one_in_the_chat(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    update = telegram_api.send_private_message(started["token"], "first")
    chat_id = update["message"]["chat"]["id"]
    first = incoming(bot_task, update)
    second = incoming(bot_task, telegram_api.send_private_message(started["token"], "second", user_id=chat_id))
    telegram_api.add_fault(
        started["token"], "error", method="sendMessage", status=400, description="Bad Request: message is too long"
    )

    replies.messages_answer(message_ids=[first.pk, second.pk])

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.reply_state, second.reply_state) == ("failed", "replied")
    assert "too long" in first.error
    sent = telegram_api.sent_messages(started["token"], chat_id=chat_id)
    assert len(sent) == 1 and "second" in sent[0]["text"]


def test_it_fails_a_message_it_has_nothing_to_say_to_instead_of_sending_nothing(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    persona = BotTask.objects.get(pk=bot_task.pk).bot.persona
    persona.greeting, persona.fallback_reply = "", ""
    persona.save()
    message = incoming(bot_task, telegram_api.send_command(started["token"], "start"))

    replies.messages_answer(message_ids=[message.pk])

    message.refresh_from_db()
    assert (message.reply_state, message.error) == (Message.ReplyState.FAILED, "Nothing to send.")
    assert telegram_api.sent_messages(started["token"]) == []
