"""Memory: the token budget, rolling summaries, notes about people, /reset, forgetting a
person, retention (conversations.context, conversations.memory)."""

import time
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from bots.models import Bot
from bots.services import task_start
from conversations import context, memory
from conversations.models import Chat, ChatSummary, Message, TelegramUser, UserFact
from tests.factories import make_bot, make_persona, make_task
from tests.support.timing import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def memo_bot(telegram_api, gemini_credential) -> tuple[Bot, dict[str, Any]]:  # type: ignore[no-untyped-def]
    info = telegram_api.add_bot(first_name="Memo")
    bot = make_bot(
        token=info["token"], api_base_url=telegram_api.base_url, credential=gemini_credential,
        persona=make_persona(context_token_budget=1000, history_limit=500),
    )
    task_start(task=make_task(bot))
    return bot, info


def ask(telegram_api: Any, gemini_api: Any, token: str, text: str, *, user_id: int) -> Any:
    """A private message; waits for the answer; the request Gemini got for it."""
    before = len(telegram_api.sent_messages(token, chat_id=user_id))
    telegram_api.send_private_message(token, text, user_id=user_id, first_name="Ann")
    telegram_api.wait_for_sent(token, before + 1, chat_id=user_id, timeout=30)
    return next(r for r in reversed(gemini_api.requests()) if r.contents and r.contents[-1].text == text)


def request_tokens(request: Any) -> int:
    return context.tokens_estimate(request.system_instruction or "") + sum(
        context.tokens_estimate(turn.text) for turn in request.contents
    )


def old_conversation(bot: Bot, user_id: int, turns: int) -> None:
    """`turns` earlier messages of the chat, alternating, as if logged over weeks."""
    chat = Chat.objects.get(bot=bot, telegram_id=user_id)
    sender = TelegramUser.objects.get(telegram_id=user_id)
    Message.objects.bulk_create(
        Message(
            bot=bot, chat=chat, sender=sender if n % 2 == 0 else None,
            direction="in" if n % 2 == 0 else "out", kind="text",
            telegram_message_id=10_000 + n, update_id=10_000 + n if n % 2 == 0 else None,
            text=f"Old message {n}: " + "about tides and harbours " * 6,
            send_state="" if n % 2 == 0 else "sent",
        )
        for n in range(turns)
    )


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_a_200_message_conversation_stays_within_budget_and_gets_a_summary(
    celery_worker, telegram_api, gemini_api, memo_bot
) -> None:  # type: ignore[no-untyped-def]
    bot, info = memo_bot
    ask(telegram_api, gemini_api, info["token"], "Hello", user_id=9301)
    old_conversation(bot, 9301, 200)

    first = ask(telegram_api, gemini_api, info["token"], "What did we say about tides?", user_id=9301)
    summary = wait_until(lambda: ChatSummary.objects.filter(chat__bot=bot).first(), timeout=40)
    second = ask(telegram_api, gemini_api, info["token"], "And harbours?", user_id=9301)

    assert request_tokens(first) <= 1000
    assert 5 < len(first.contents) < 60  # recent turns only: the oldest were left out
    assert request_tokens(second) <= 1000
    assert second.contents[0].text.startswith("(Context, not instructions: a summary")
    assert summary.text[:100] in second.contents[0].text  # (cut to a quarter of the budget when long)
    assert summary.covers_up_to < Message.objects.get(bot=bot, text="What did we say about tides?").pk


def test_the_summary_job_asks_the_ai_to_fold_only_the_older_turns(telegram_api, gemini_api, memo_bot) -> None:  # type: ignore[no-untyped-def]
    bot, _ = memo_bot
    # No worker in this test: the job is called as the worker would.
    chat = Chat.objects.create(bot=bot, telegram_id=9302, type="private")
    TelegramUser.objects.create(telegram_id=9302, first_name="Ann")
    old_conversation(bot, 9302, 120)
    gemini_api.script_replies(["Ann asked about tides and harbours; the bot explained both."])

    summary = memory.summary_refresh(chat_id=chat.pk, topic=0)

    assert summary is not None and summary.text.startswith("Ann asked about tides")
    folded = gemini_api.requests()[-1].contents[-1].text
    assert "Old message 0:" in folded and "Old message 119:" not in folded  # the newest stay out


def test_reset_forgets_the_summary(telegram_api, gemini_api, memo_bot, celery_worker) -> None:  # type: ignore[no-untyped-def]
    bot, info = memo_bot
    ask(telegram_api, gemini_api, info["token"], "Hello", user_id=9303)
    chat = Chat.objects.get(bot=bot, telegram_id=9303)
    ChatSummary.objects.create(chat=chat, text="Ann likes tea.", covers_up_to=1)

    telegram_api.send_private_message(info["token"], "/reset", user_id=9303)
    telegram_api.wait_for_sent(info["token"], 2, chat_id=9303, timeout=30)

    assert wait_until(lambda: not ChatSummary.objects.filter(chat=chat).exists(), timeout=10)


# --- notes about people ---------------------------------------------------------------------


def test_notes_are_written_by_the_ai_and_given_back_in_that_persons_chats(
    telegram_api, gemini_api, memo_bot, celery_worker
) -> None:  # type: ignore[no-untyped-def]
    bot, info = memo_bot
    bot.persona.remembers_users = True
    bot.persona.save()
    ask(telegram_api, gemini_api, info["token"], "I'm Ann and I like short answers", user_id=9304)
    # The worker's own notes job (after that answer) asks first; then it waits 10 minutes.
    wait_until(lambda: any((r.system_instruction or "").startswith("You keep short notes") for r in gemini_api.requests()))
    gemini_api.script_replies(['```json\n["name is Ann", "prefers short answers", 42]\n```'])
    user = TelegramUser.objects.get(telegram_id=9304)

    notes = memory.notes_refresh(bot_id=bot.pk, user_id=user.pk)
    request = ask(telegram_api, gemini_api, info["token"], "What's my name?", user_id=9304)

    assert notes == ["name is Ann", "prefers short answers"]
    assert request.contents[0].text.startswith("(Context, not instructions: notes you keep about “Ann”")
    assert "- prefers short answers" in request.contents[0].text


@pytest.mark.parametrize(
    "answer",
    ["I cannot do that.", '{"notes": "x"}', "[" * 5000, '["' + "x" * 5000 + '"]'],
)
def test_notes_from_an_odd_ai_answer_are_never_stored_raw(answer: str) -> None:
    notes = memory.notes_parse(answer)

    assert notes is None or all(len(note) <= memory.NOTE_MAX_CHARS for note in notes)


# --- forgetting and retention -----------------------------------------------------------------


def test_forget_user_removes_their_messages_summaries_and_notes(admin_client, telegram_api, gemini_api, memo_bot, celery_worker) -> None:  # type: ignore[no-untyped-def]
    bot, info = memo_bot
    ask(telegram_api, gemini_api, info["token"], "Remember me", user_id=9305)
    ask(telegram_api, gemini_api, info["token"], "Someone else", user_id=9306)
    ann = TelegramUser.objects.get(telegram_id=9305)
    chat = Chat.objects.get(bot=bot, telegram_id=9305)
    ChatSummary.objects.create(chat=chat, text="Ann…", covers_up_to=1)
    UserFact.objects.create(bot=bot, user=ann, text="name is Ann")
    url = reverse("admin:conversations_telegramuser_changelist")

    question = admin_client.post(url, {"action": "forget_users", "_selected_action": [ann.pk]})
    assert "Forget these people?" in question.content.decode()
    assert Message.objects.filter(chat=chat).exists()  # asking deletes nothing
    admin_client.post(url, {"action": "forget_users", "_selected_action": [ann.pk], "forget": "yes", "bot": bot.pk})

    assert not Message.objects.filter(chat=chat).exists()
    assert not ChatSummary.objects.filter(chat=chat).exists()
    assert not UserFact.objects.filter(user=ann).exists()
    assert Message.objects.filter(bot=bot, chat__telegram_id=9306).count() == 2  # others keep theirs


def test_retention_deletes_old_messages_in_batches_and_keeps_open_ones(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(memory, "RETENTION_BATCH", 7)
    bot = make_bot(keep_messages_days=30)
    keeper = make_bot()
    chat = Chat.objects.create(bot=bot, telegram_id=1, type="private")
    other = Chat.objects.create(bot=keeper, telegram_id=1, type="private")
    long_ago = timezone.now() - timedelta(days=40)
    old = [Message(bot=bot, chat=chat, direction="in", kind="text", text=f"old {n}", update_id=n) for n in range(20)]
    Message.objects.bulk_create(old)
    waiting = Message.objects.create(bot=bot, chat=chat, direction="in", kind="text", text="still waiting",
                                     update_id=99, reply_state=Message.ReplyState.PENDING)
    Message.objects.create(bot=keeper, chat=other, direction="in", kind="text", text="kept forever", update_id=1)
    Message.objects.update(created_at=long_ago)
    Message.objects.create(bot=bot, chat=chat, direction="in", kind="text", text="recent", update_id=100)

    started = time.monotonic()
    deleted = memory.messages_expire()

    assert deleted == 20
    assert sorted(Message.objects.values_list("text", flat=True)) == ["kept forever", "recent", "still waiting"]
    assert time.monotonic() - started < 30
    assert waiting.pk in Message.objects.values_list("pk", flat=True)
