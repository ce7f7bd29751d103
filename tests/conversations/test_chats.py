"""Chats as Telegram has them, through the real poller and the emulator: the bot's
membership, forum topics, and groups that became supergroups."""

from typing import Any

import pytest
import telegram

from bots.services import task_start
from conversations import replies
from conversations.ingest import updates_store
from conversations.models import Chat, Message
from tests.support.pollers import launched
from tests.support.timing import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def chat_row(bot_id: int, telegram_id: int) -> Chat | None:
    return Chat.objects.filter(bot_id=bot_id, telegram_id=telegram_id).first()


def test_removed_from_a_group_the_chat_goes_inactive_and_added_back_active(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    token = info["token"]
    group = telegram_api.add_group(title="Crew")
    telegram_api.add_bot_to_group(token, chat_id=group["id"])
    launched(bot_task)

    telegram_api.remove_bot_from_group(token, chat_id=group["id"], kicked=True)
    gone = wait_until(lambda: Chat.objects.filter(bot=bot, telegram_id=group["id"], is_active=False).first())
    assert "removed the bot from the group" in gone.inactive_reason

    telegram_api.add_bot_to_group(token, chat_id=group["id"], status="administrator")
    wait_until(lambda: Chat.objects.filter(bot=bot, telegram_id=group["id"], is_active=True).first())
    asked = telegram_api.send_group_message(token, "{bot} back?", chat_id=group["id"], mention_bot="username")
    sent = telegram_api.wait_for_sent(token, 1, chat_id=group["id"], timeout=15)
    assert "back?" in sent[0]["text"]
    assert sent[0]["reply_to_message_id"] == asked["message"]["message_id"]


def test_blocked_by_a_person_the_chat_goes_inactive(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    hello = telegram_api.send_private_message(info["token"], "hello")
    launched(bot_task)
    chat_id = hello["message"]["chat"]["id"]
    telegram_api.wait_for_sent(info["token"], 1, chat_id=chat_id, timeout=15)

    telegram_api.block_bot(info["token"], hello["message"]["from"]["id"])

    gone = wait_until(lambda: Chat.objects.filter(bot=bot, telegram_id=chat_id, is_active=False).first())
    assert "blocked the bot" in gone.inactive_reason
    assert len(telegram_api.calls(info["token"], method="sendMessage")) == 1  # nothing sent into the void


def test_a_forum_topic_is_answered_in_that_topic_with_that_topics_history(telegram_api, emulated_bot, bot_task, gemini_credential, gemini_api) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    token = info["token"]
    bot.credential = gemini_credential
    bot.save()
    forum = telegram_api.add_group(title="Forum", is_forum=True)
    telegram_api.add_bot_to_group(token, chat_id=forum["id"])
    ships = telegram_api.create_forum_topic(token, forum["id"], "Ships")
    cooking = telegram_api.create_forum_topic(token, forum["id"], "Cooking")
    long_answer = ("Sails and rigging. " * 250).strip()  # ~4,700 characters: two parts
    gemini_api.script_replies([long_answer, "Boil the pasta."])
    launched(bot_task)

    telegram_api.send_group_message(token, "{bot} tell me about ships", chat_id=forum["id"],
                                    mention_bot="username", message_thread_id=ships)
    first = telegram_api.wait_for_sent(token, 2, chat_id=forum["id"], timeout=20)
    telegram_api.send_group_message(token, "{bot} and pasta?", chat_id=forum["id"],
                                    mention_bot="username", message_thread_id=cooking)
    sent = telegram_api.wait_for_sent(token, 3, chat_id=forum["id"], timeout=20)

    assert [m.get("message_thread_id") for m in first] == [ships, ships]  # every part in its topic
    assert sent[-1]["message_thread_id"] == cooking
    cooking_request = gemini_api.requests()[-1]
    assert [t.text for t in cooking_request.contents if "ships" in t.text or "Sails" in t.text] == []
    assert "and pasta?" in cooking_request.contents[-1].text


def test_a_group_that_became_a_supergroup_keeps_its_history_under_the_new_id(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    token = info["token"]
    group = telegram_api.add_group(title="Old group", chat_type="group")
    telegram_api.add_bot_to_group(token, chat_id=group["id"])
    telegram_api.send_group_message(token, "{bot} hello", chat_id=group["id"], mention_bot="username")
    launched(bot_task)
    telegram_api.wait_for_sent(token, 1, chat_id=group["id"], timeout=15)

    new_id = telegram_api.migrate_group(token, group["id"])
    telegram_api.send_group_message(token, "{bot} still you?", chat_id=new_id, mention_bot="username")

    sent = telegram_api.wait_for_sent(token, 1, chat_id=new_id, timeout=15)
    assert "still you?" in sent[0]["text"]
    chats = list(Chat.objects.filter(bot=bot, type__in=["group", "supergroup"]))
    assert [(c.telegram_id, c.type, c.is_active) for c in chats] == [(new_id, "supergroup", True)]
    texts = list(Message.objects.filter(chat=chats[0], direction="in", kind="text").values_list("text", flat=True))
    assert any("hello" in t for t in texts) and any("still you?" in t for t in texts)


def test_a_reply_to_a_group_that_moved_goes_to_the_new_supergroup(telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    token = info["token"]
    group = telegram_api.add_group(title="Old group", chat_type="group")
    telegram_api.add_bot_to_group(token, chat_id=group["id"])
    update: dict[str, Any] = telegram_api.send_group_message(
        token, "{bot} are you there?", chat_id=group["id"], mention_bot="username"
    )
    task_start(task=bot_task)
    bot_task.refresh_from_db()
    bot.refresh_from_db()
    stored = updates_store(bot=bot, task=bot_task, updates=[telegram.Update.de_json(update, None)])
    new_id = telegram_api.migrate_group(token, group["id"])  # before the answer is sent

    replies.messages_answer(message_ids=[stored.to_answer[0].pk])

    sent = telegram_api.sent_messages(token, chat_id=new_id)
    assert len(sent) == 1 and "are you there?" in sent[0]["text"]
    assert Message.objects.get(pk=stored.to_answer[0].pk).reply_state == Message.ReplyState.REPLIED
    moved = Chat.objects.get(bot=bot, title="Old group")
    assert (moved.telegram_id, moved.type, moved.is_active) == (new_id, "supergroup", True)
    assert chat_row(bot.pk, group["id"]) is None
