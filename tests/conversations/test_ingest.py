"""Hostile and odd updates never stop a bot: strings are cleaned and cut to fit, updates
that cannot be stored leave a placeholder with why, and the offset moves past them."""

import time
from typing import Any

import pytest

from bots.models import BotTask
from conversations.models import Chat, Message, SkippedUpdate, TelegramUser
from tests.support.pollers import launched
from tests.support.timing import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def a_message(telegram_api: Any, token: str, text: str = "placeholder") -> dict[str, Any]:
    """A real private message's shape, to tamper with (the original is answered too)."""
    message: dict[str, Any] = telegram_api.send_private_message(token, text)["message"]
    return message


def test_surrogates_and_nul_characters_are_replaced_and_the_message_answered(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    poison = a_message(telegram_api, info["token"])
    poison["text"] = "broken \ud800 text with a \x00 NUL"
    poison["from"] = {**poison["from"], "first_name": "Eve \udfff", "id": poison["from"]["id"] + 1}
    update = telegram_api.inject_update(info["token"], {"message": poison})

    launched(bot_task)
    stored = wait_until(lambda: Message.objects.filter(bot=bot, update_id=update["update_id"]).first())

    assert stored.text == "broken \ufffd text with a  NUL"
    assert stored.sender.first_name == "Eve \ufffd"
    sent = telegram_api.wait_for_sent(info["token"], 2, chat_id=poison["chat"]["id"], timeout=15)
    assert any("broken \ufffd text" in m["text"] for m in sent)  # answered, not passed over
    assert not SkippedUpdate.objects.filter(bot=bot).exists()


def test_names_titles_and_codes_too_long_for_their_columns_are_cut(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    group = telegram_api.send_group_message(info["token"], "hi {bot}", mention_bot="username")["message"]
    group["chat"] = {**group["chat"], "title": "T" * 300}
    group["from"] = {
        **group["from"], "first_name": "F" * 300, "last_name": "L" * 300,
        "username": "u" * 80, "language_code": "x" * 40,
    }
    update = telegram_api.inject_update(info["token"], {"message": group})

    launched(bot_task)
    stored = wait_until(lambda: Message.objects.filter(bot=bot, update_id=update["update_id"]).first())

    chat, sender = Chat.objects.get(pk=stored.chat_id), TelegramUser.objects.get(pk=stored.sender_id)
    assert (len(chat.title), len(sender.first_name), len(sender.last_name)) == (255, 255, 255)
    assert (len(sender.username), len(sender.language_code)) == (64, 16)
    telegram_api.wait_for_sent(info["token"], 2, chat_id=group["chat"]["id"], timeout=15)


def test_an_impossible_chat_id_leaves_a_placeholder_and_the_next_message_is_answered(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    poison = a_message(telegram_api, info["token"])
    poison["chat"] = {**poison["chat"], "id": 2**70}
    bad = telegram_api.inject_update(info["token"], {"message": poison})
    after = telegram_api.send_private_message(info["token"], "still there?")

    launched(bot_task)
    sent = telegram_api.wait_for_sent(info["token"], 1, chat_id=after["message"]["chat"]["id"], timeout=15)

    assert any("still there?" in m["text"] for m in sent)
    skipped = SkippedUpdate.objects.get(bot=bot)
    assert (skipped.update_id, skipped.error) == (bad["update_id"], "an id beyond 64 bits")
    task = BotTask.objects.get(pk=bot_task.pk)
    assert task.status == BotTask.Status.RUNNING
    assert f"Could not store update {bad['update_id']} (an id beyond 64 bits)" in task.last_error
    bot.refresh_from_db()
    assert bot.update_offset == after["update_id"] + 1


def test_an_update_without_chat_or_date_leaves_a_placeholder(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    shapeless = a_message(telegram_api, info["token"])
    del shapeless["chat"], shapeless["date"]
    broken = telegram_api.inject_update(info["token"], {"message": shapeless})
    after = telegram_api.send_private_message(info["token"], "anyone home?")

    launched(bot_task)
    telegram_api.wait_for_sent(info["token"], 1, chat_id=after["message"]["chat"]["id"], timeout=15)

    skipped = wait_until(lambda: SkippedUpdate.objects.filter(bot=bot).first())
    assert skipped.update_id == broken["update_id"]
    assert skipped.error  # the reader's complaint, in words
    task = BotTask.objects.get(pk=bot_task.pk)
    assert task.status == BotTask.Status.RUNNING
    assert f"update {broken['update_id']}" in task.last_error
    bot.refresh_from_db()
    assert bot.update_offset == after["update_id"] + 1


@pytest.mark.parametrize("update_id", [0, "12abc"])
def test_an_update_id_that_is_not_positive_is_passed_over_not_polled_in_a_loop(update_id, telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    zero = {
        "message_id": 1, "date": int(time.time()), "text": "zero",
        "chat": {"id": 4242, "type": "private", "first_name": "Zed"},
        "from": {"id": 4242, "is_bot": False, "first_name": "Zed"},
    }
    telegram_api.redeliver_update(info["token"], {"update_id": update_id, "message": zero})  # alone

    launched(bot_task)
    wait_until(lambda: SkippedUpdate.objects.filter(bot=bot).exists())
    time.sleep(1.5)

    # Long polls, not a loop on the same answer: a handful of calls, one placeholder.
    assert len(telegram_api.calls(info["token"], method="getUpdates")) <= 4
    assert SkippedUpdate.objects.filter(bot=bot).count() == 1
    bot.refresh_from_db()
    assert bot.update_offset >= 1
    assert BotTask.objects.get(pk=bot_task.pk).status == BotTask.Status.RUNNING


def test_an_update_id_beyond_64_bits_is_passed_over(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    first = telegram_api.send_private_message(info["token"], "before it")
    telegram_api.jump_update_id(info["token"], to=2**64 + 5)
    telegram_api.send_private_message(info["token"], "the hostile one")

    launched(bot_task)
    telegram_api.wait_for_sent(info["token"], 1, chat_id=first["message"]["chat"]["id"], timeout=15)
    skipped = wait_until(lambda: SkippedUpdate.objects.filter(bot=bot).first())
    time.sleep(1.5)

    assert "beyond 64 bits" in skipped.error
    assert len(telegram_api.calls(info["token"], method="getUpdates")) <= 4  # moved past it
    assert BotTask.objects.get(pk=bot_task.pk).status == BotTask.Status.RUNNING
