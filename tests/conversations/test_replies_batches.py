"""A poll batch is answered as a batch: AI calls side by side on the I/O loop, each
chat's messages answered in the order they came."""

from collections import defaultdict

import pytest
import telegram

from bots.models import Bot, BotTask
from bots.services import task_start
from conversations import replies
from conversations.ingest import updates_store
from conversations.models import Message
from tests.support.timing import most_in_flight

pytestmark = pytest.mark.django_db(transaction=True)

CHATS, PER_CHAT = 10, 5


def test_it_answers_a_batch_of_50_with_concurrent_ai_calls_in_per_chat_order(
    telegram_api, gemini_api, emulated_bot, bot_task, gemini_credential
) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    Bot.objects.filter(pk=bot.pk).update(credential=gemini_credential)
    gemini_api.set_latency(0.5)
    task_start(task=bot_task)
    users = [telegram_api.add_user()["id"] for _ in range(CHATS)]
    updates = [
        telegram_api.send_private_message(info["token"], f"question {n}", user_id=user)
        for n in range(PER_CHAT) for user in users
    ]
    task = BotTask.objects.select_related("bot").get(pk=bot_task.pk)
    stored = updates_store(bot=task.bot, task=task, updates=[telegram.Update.de_json(u, None) for u in updates])
    assert len(stored.to_answer) == CHATS * PER_CHAT

    replies.messages_answer(message_ids=[m.pk for m in stored.to_answer], timeout=90)

    by_chat = defaultdict(list)
    for sent in telegram_api.sent_messages(info["token"]):
        by_chat[sent["chat_id"]].append(sent["text"])
    assert sorted(by_chat) == sorted(users)
    for texts in by_chat.values():
        asked = [text.rsplit("You said: ", 1)[1] for text in texts]
        assert asked == [f"question {n}" for n in range(PER_CHAT)]  # in order, once each
    assert Message.objects.filter(direction="in", reply_state="replied").count() == CHATS * PER_CHAT
    assert BotTask.objects.get(pk=bot_task.pk).replies_sent == CHATS * PER_CHAT
    # One chat's questions go one after another; the ten chats' side by side.
    spans = [(r.monotonic, r.finished_monotonic) for r in gemini_api.requests()]
    assert most_in_flight(spans) >= CHATS - 1
