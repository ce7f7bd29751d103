"""Which incoming messages get an answer: updates shaped by the emulator, stored by
the same code the poller uses (no worker needed)."""

import asyncio

import pytest
import telegram

from bots.models import Bot
from conversations.ingest import updates_store
from conversations.models import Chat, Message
from tests.factories import make_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def known_bot(emulated_bot) -> Bot:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    bot.telegram_id, bot.username, bot.first_name = info["id"], info["username"], "Helper"
    bot.save()
    return bot


def store(bot: Bot, update: dict, **task_settings: bool) -> Message | None:
    task = make_task(bot, **task_settings)
    result = updates_store(bot=bot, task=task, updates=[telegram.Update.de_json(update, None)])
    return result.new_messages[0] if result.new_messages else None


def answered(bot: Bot, update: dict, **task_settings: bool) -> bool:
    stored = store(bot, update, **task_settings)
    assert stored is not None, "every message is logged"
    return stored.reply_state == Message.ReplyState.GENERATING  # claimed to be answered


def test_it_answers_private_messages(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    update = telegram_api.send_private_message(known_bot.token.reveal(), "hi")

    assert answered(known_bot, update)


def test_it_ignores_private_messages_when_the_task_says_so(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    update = telegram_api.send_private_message(known_bot.token.reveal(), "hi")

    assert not answered(known_bot, update, respond_to_private=False)


def test_it_stays_silent_in_a_group_without_a_mention(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    update = telegram_api.send_group_message(known_bot.token.reveal(), "talking among us")

    assert not answered(known_bot, update)


def test_it_answers_an_at_mention_after_emoji(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    # Entity offsets count UTF-16 units: the emoji before the mention must not shift it.
    update = telegram_api.send_group_message(
        known_bot.token.reveal(), "😀😀 {bot} help?", mention_bot="username"
    )

    assert answered(known_bot, update)


def test_it_answers_a_text_mention(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    update = telegram_api.send_group_message(
        known_bot.token.reveal(), "hey {bot}, a question", mention_bot="text_mention"
    )

    assert answered(known_bot, update)


def test_it_answers_when_called_by_its_name(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    update = telegram_api.send_group_message(known_bot.token.reveal(), "Helper, what is 2+2?")

    assert answered(known_bot, update)


def test_it_ignores_mentions_when_the_task_says_so(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    update = telegram_api.send_group_message(
        known_bot.token.reveal(), "{bot} hi", mention_bot="username"
    )

    assert not answered(known_bot, update, respond_to_mentions=False)


def test_it_answers_replies_to_its_own_messages(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    token = known_bot.token.reveal()
    group = telegram_api.add_group(title="Team")

    async def bot_says_something() -> None:  # a real send, so the reply quotes a real message
        async with telegram.Bot(token, base_url=telegram_api.base_url) as ptb:
            await ptb.send_message(group["id"], "I am the bot")

    asyncio.run(bot_says_something())
    update = telegram_api.reply_to_bot(token, group["id"], "thanks!")

    assert answered(known_bot, update)
    assert not answered(known_bot, telegram_api.reply_to_bot(token, group["id"], "again"), respond_to_replies=False)


def test_it_never_answers_other_bots(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    update = telegram_api.send_bot_message(known_bot.token.reveal(), f"@{known_bot.username} ping")

    assert not answered(known_bot, update)


def test_it_logs_but_does_not_answer_edits_and_service_messages(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    token = known_bot.token.reveal()
    original = telegram_api.send_private_message(token, "typo")["message"]
    edit = telegram_api.edit_message(token, original["chat"]["id"], original["message_id"], "fixed")
    service = telegram_api.send_service_message(token, kind="new_chat_members")

    edited = store(known_bot, edit)
    joined = store(known_bot, service)

    assert (edited.kind, edited.text, edited.reply_state) == ("edited", "fixed", "none")
    assert (joined.kind, joined.reply_state) == ("service", "none")


def test_it_answers_media_in_private_and_ignores_it_in_groups(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    token = known_bot.token.reveal()
    private_photo = telegram_api.send_media(token, kind="sticker")
    group = telegram_api.add_group(title="Photos")
    group_photo = telegram_api.send_media(token, kind="photo", chat_id=group["id"], caption="look")

    private = store(known_bot, private_photo)
    in_group = store(known_bot, group_photo)

    assert (private.kind, private.text, private.reply_state) == ("media", "[sticker]", "generating")
    assert (in_group.text, in_group.reply_state) == ("[photo] look", "none")


def test_it_answers_a_captioned_photo_in_a_group_that_mentions_or_replies_to_it(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    token = known_bot.token.reveal()
    group = telegram_api.add_group(title="Photos")
    mentioned = telegram_api.send_media(token, kind="photo", chat_id=group["id"],
                                        caption=f"@{known_bot.username} what is this?")
    document = telegram_api.send_media(token, kind="document", chat_id=group["id"],
                                       caption="Helper, can you read this?")
    bot_said = telegram_api.send_group_message(token, "placeholder", chat_id=group["id"])
    reply_to_bot = telegram_api.send_media(token, kind="video", chat_id=group["id"], caption="like this?")
    reply_to_bot["message"]["reply_to_message"] = {
        **bot_said["message"], "from": {"id": known_bot.telegram_id, "is_bot": True, "first_name": "Helper"},
    }
    unrelated = telegram_api.send_media(token, kind="photo", chat_id=group["id"], caption="my cat")

    assert answered(known_bot, mentioned)
    assert answered(known_bot, document)
    assert answered(known_bot, reply_to_bot)
    assert not answered(known_bot, unrelated)


def test_it_answers_commands_addressed_to_it_only(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    token = known_bot.token.reveal()
    group = telegram_api.add_group(title="Cmds")
    ours = telegram_api.send_command(token, "help", chat_id=group["id"], with_bot_username=True)
    theirs = dict(ours, message=dict(ours["message"], text="/help@some_other_bot"))
    theirs["message"]["entities"] = [{"type": "bot_command", "offset": 0, "length": 20}]
    theirs["update_id"] += 100_000

    assert answered(known_bot, ours)
    assert not answered(known_bot, theirs)


def test_it_stores_a_redelivered_update_once(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    update = telegram_api.send_private_message(known_bot.token.reveal(), "hi")

    assert store(known_bot, update) is not None
    assert store(known_bot, update) is None
    assert Message.objects.count() == 1
    assert Chat.objects.get().type == "private"


def test_it_stores_a_batch_where_another_poller_got_one_update_first(telegram_api, known_bot) -> None:  # type: ignore[no-untyped-def]
    token = known_bot.token.reveal()
    first = telegram_api.send_private_message(token, "one")
    second = telegram_api.send_private_message(token, "two")
    task = make_task(known_bot)
    updates = [telegram.Update.de_json(u, None) for u in (first, second)]
    updates_store(bot=known_bot, task=task, updates=updates[1:])  # the other poller's

    # Pretend the pre-check missed it (a race): the batch meets the unique constraint.
    from unittest import mock

    with mock.patch.object(Message.objects, "filter", wraps=Message.objects.filter) as spy:
        spy.return_value.values_list.return_value = []
        result = updates_store(bot=known_bot, task=task, updates=updates)

    assert [m.text for m in result.new_messages] == ["one"]
    assert Message.objects.filter(bot=known_bot).count() == 2
