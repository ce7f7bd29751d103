"""Streaming replies: the answer shown as drafts while Gemini writes it (in a group, a
preview message edited as it grows, when the persona asks for it), then sent once
through the outbox (conversations.streaming), through the emulators and a real worker."""

import time
from typing import Any

import pytest

from bots.models import Bot
from bots.services import task_start
from conversations.models import Message
from conversations.streaming import DRAFT_INTERVAL, EDIT_INTERVAL, STILL_WRITING
from credentials.models import AICredential
from tests.factories import make_bot, make_persona, make_task
from tests.support.timing import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(120)]

ANSWER = " ".join(f"word{n}" for n in range(60))  # long enough for several chunks


@pytest.fixture
def streaming_bot(telegram_api, gemini_api, gemini_credential) -> tuple[Bot, dict[str, Any]]:  # type: ignore[no-untyped-def]
    info = telegram_api.add_bot(first_name="Quill")
    bot = make_bot(token=info["token"], api_base_url=telegram_api.base_url, credential=gemini_credential,
                   persona=make_persona())
    task_start(task=make_task(bot))
    return bot, info


def final_texts(telegram_api: Any, token: str, chat_id: int, count: int = 1) -> list[str]:
    telegram_api.wait_for_sent(token, count, chat_id=chat_id, timeout=30)
    time.sleep(1.0)  # room for a duplicate or a late draft to show up
    return [m["text"] for m in telegram_api.sent_messages(token, chat_id=chat_id)]


def test_drafts_grow_in_order_and_end_with_one_final_message(celery_worker, telegram_api, gemini_api, streaming_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = streaming_bot
    gemini_api.set_stream_timing(first_chunk_delay=0.3, chunk_delay=0.25, chunks=10)
    gemini_api.script_replies([ANSWER])

    telegram_api.send_private_message(info["token"], "Write something long", user_id=9601)
    finals = final_texts(telegram_api, info["token"], 9601)

    drafts = telegram_api.drafts(info["token"], chat_id=9601)
    assert finals == [ANSWER]
    assert len(drafts) >= 2
    texts = [d["text"] for d in drafts]
    assert all(ANSWER.startswith(t) for t in texts)  # each a prefix of the answer…
    assert [len(t) for t in texts] == sorted(len(t) for t in texts)  # …growing, in order
    assert len({d["draft_id"] for d in drafts}) == 1  # one draft id for the reply
    assert max(d["at"] for d in drafts) <= telegram_api.sent_messages(info["token"], chat_id=9601)[0]["time"]  # drafts first
    reply = Message.objects.get(bot=bot, direction="out")
    assert reply.ai_first_token_ms is not None and reply.first_draft_ms is not None
    assert reply.first_draft_ms < reply.ai_latency_ms


def test_the_throttle_holds_under_a_fast_stream(celery_worker, telegram_api, gemini_api, streaming_bot) -> None:  # type: ignore[no-untyped-def]
    _, info = streaming_bot
    gemini_api.set_stream_timing(first_chunk_delay=0.05, chunk_delay=0.03, chunks=60)
    gemini_api.script_replies([ANSWER])

    telegram_api.send_private_message(info["token"], "fast please", user_id=9602)
    final_texts(telegram_api, info["token"], 9602)

    stamps = [d["at"] for d in telegram_api.drafts(info["token"], chat_id=9602)]
    assert stamps, "no draft at all"
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(gap >= DRAFT_INTERVAL - 0.05 for gap in gaps), gaps  # about one a second at most
    assert len(stamps) <= 1 + 1.8 / DRAFT_INTERVAL + 1  # 60 chunks over ~1.8 s


def test_a_stream_that_breaks_halfway_never_leaves_a_half_answer(celery_worker, telegram_api, gemini_api, streaming_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = streaming_bot
    gemini_api.set_stream_timing(first_chunk_delay=0.05, chunk_delay=0.3, chunks=8)
    gemini_api.add_fault("stream_break", after_chunks=3)

    telegram_api.send_private_message(info["token"], "tell me a story", user_id=9603)
    finals = final_texts(telegram_api, info["token"], 9603)

    asked = [r for r in gemini_api.requests() if r.contents and r.contents[-1].text == "tell me a story"]
    assert [r.action for r in asked] == ["streamGenerateContent", "generateContent"]  # then asked whole
    assert len(finals) == 1
    assert "tell me a story" in finals[0]  # the emulator's whole echo, not a cut one
    assert Message.objects.get(bot=bot, direction="in").reply_state == Message.ReplyState.REPLIED


def test_drafts_are_never_sent_to_groups(celery_worker, telegram_api, gemini_api, streaming_bot) -> None:  # type: ignore[no-untyped-def]
    _, info = streaming_bot
    gemini_api.set_stream_timing(first_chunk_delay=0.05, chunk_delay=0.2, chunks=6)
    group = telegram_api.add_group(title="Team")

    telegram_api.send_group_message(info["token"], "{bot} hello team", chat_id=group["id"], mention_bot="username")
    finals = final_texts(telegram_api, info["token"], group["id"])

    assert telegram_api.drafts(info["token"]) == []
    assert len(finals) == 1 and telegram_api.edits(info["token"]) == []  # and no edits: off by default


def test_a_draft_telegram_refuses_turns_drafts_off_and_the_answer_still_arrives(celery_worker, telegram_api, gemini_api, streaming_bot) -> None:  # type: ignore[no-untyped-def]
    _, info = streaming_bot
    gemini_api.set_stream_timing(first_chunk_delay=0.05, chunk_delay=0.25, chunks=8)
    gemini_api.script_replies([ANSWER])
    telegram_api.add_fault(info["token"], "too_many_requests", method="sendMessageDraft", retry_after=5)

    telegram_api.send_private_message(info["token"], "go on", user_id=9604)
    finals = final_texts(telegram_api, info["token"], 9604)

    assert finals == [ANSWER]
    assert telegram_api.drafts(info["token"], chat_id=9604) == []  # off after the refusal
    assert len(telegram_api.calls(info["token"], method="sendMessageDraft")) == 1


def test_a_persona_that_does_not_stream_sends_the_answer_whole(celery_worker, telegram_api, gemini_api, streaming_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = streaming_bot
    bot.persona.stream_replies = False
    bot.persona.save()

    telegram_api.send_private_message(info["token"], "no drafts please", user_id=9605)
    final_texts(telegram_api, info["token"], 9605)

    assert telegram_api.drafts(info["token"]) == []
    assert gemini_api.requests()[-1].action == "generateContent"
    assert AICredential.objects.count() == 1


def sandbox_said(admin_client: Any, bot: Bot, text: str, chat: str) -> str:
    """Say `text` in the sandbox's `chat` (private | group) with an answer ready to stream;
    the URL of what the sandbox page shows of that chat."""
    import json

    from django.urls import reverse

    admin_client.post(reverse("sandbox:send", args=[bot.pk]), json.dumps({"text": text, "chat": chat}),
                      content_type="application/json")
    return reverse("sandbox:messages", args=[bot.pk]) + f"?chat={chat}"


@pytest.fixture
def sandbox_streams(telegram_api, gemini_api, gemini_credential, settings) -> None:  # type: ignore[no-untyped-def]
    # After gemini_credential, which resets the Gemini emulator.
    settings.SANDBOX_EMULATOR_URL = telegram_api.url
    gemini_api.set_stream_timing(first_chunk_delay=0.1, chunk_delay=0.4, chunks=10)
    gemini_api.script_replies([ANSWER])


def test_the_sandbox_shows_the_draft_growing(celery_worker, sandbox_streams, streaming_bot, admin_client) -> None:  # type: ignore[no-untyped-def]
    url = sandbox_said(admin_client, streaming_bot[0], "hello", "private")
    draft = wait_until(lambda: admin_client.get(url).json()["draft"], timeout=20)
    final = wait_until(lambda: [m["text"] for m in admin_client.get(url).json()["messages"] if m["from_bot"]], timeout=30)

    assert ANSWER.startswith(draft["text"]) and draft["text"] != ANSWER
    assert final == [ANSWER]
    assert admin_client.get(url).json()["draft"] is None  # the final message replaced it


def test_a_slow_draft_does_not_bunch_the_next_one_up(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The interval counts from when Telegram took a draft, not from when it was started:
    a first draft held up (here 0.4 s waiting for its slot) must not let the next one
    reach Telegram sooner than DRAFT_INTERVAL after it (found by benchmarks.streaming_load:
    208 ms apart under a burst)."""
    import asyncio

    from bots import telegram
    from conversations import streaming

    received: list[float] = []
    slots = iter([0.4])

    async def slot(*, bot_id: int) -> bool:
        await asyncio.sleep(next(slots, 0.0))
        return True

    async def draft(endpoint: Any, **kwargs: Any) -> None:
        received.append(time.perf_counter())

    monkeypatch.setattr(streaming.ratelimit, "draft_slot_try", slot)
    monkeypatch.setattr(streaming.telegram, "send_message_draft", draft)

    async def answer() -> None:
        stream = streaming.DraftStream(
            endpoint=telegram.BotEndpoint(bot_id=1, token="t", base_url="http://127.0.0.1:9/bot"),
            chat_id=5, message_id=7, thread=None, max_length=4096,
        )
        for n in range(50):  # a chunk every 50 ms for 2.5 s
            await stream.update(ANSWER[: 20 + n])
            await asyncio.sleep(0.05)
        await stream.finish()

    asyncio.run(answer())

    gaps = [b - a for a, b in zip(received, received[1:], strict=False)]
    assert len(received) >= 2
    assert all(gap >= DRAFT_INTERVAL for gap in gaps), gaps


def test_a_message_that_waited_in_a_backlog_is_answered_whole(telegram_api, gemini_api, gemini_credential) -> None:  # type: ignore[no-untyped-def]
    """A message whose worker is behind gets no drafts (they would come later than a
    whole answer does when the worker keeps up, and cost the CPU the backlog needs); one
    answered promptly, in the same batch, streams."""
    from datetime import timedelta

    import telegram
    from django.utils import timezone

    from bots.models import BotTask
    from conversations import replies
    from conversations.ingest import updates_store
    from conversations.streaming import BACKLOG_SECONDS

    info = telegram_api.add_bot(first_name="Quill")
    bot = make_bot(token=info["token"], api_base_url=telegram_api.base_url, credential=gemini_credential,
                   persona=make_persona())
    task = make_task(bot, status=BotTask.Status.RUNNING)
    gemini_api.set_stream_timing(first_chunk_delay=0.3, chunk_delay=0.25, chunks=10)
    gemini_api.script_replies([ANSWER, ANSWER])
    pushed = [telegram_api.send_private_message(info["token"], "Write something long", user_id=chat)
              for chat in (9621, 9622)]
    stored = updates_store(bot=bot, task=task, updates=[telegram.Update.de_json(u, None) for u in pushed])
    late, prompt = stored.to_answer
    Message.objects.filter(pk=late.pk).update(created_at=timezone.now() - timedelta(seconds=BACKLOG_SECONDS + 1))

    replies.messages_answer(message_ids=[late.pk, prompt.pk])

    assert [m["text"] for m in telegram_api.sent_messages(info["token"], chat_id=9621)] == [ANSWER]
    assert [m["text"] for m in telegram_api.sent_messages(info["token"], chat_id=9622)] == [ANSWER]
    assert telegram_api.drafts(info["token"], chat_id=9621) == []
    assert telegram_api.drafts(info["token"], chat_id=9622) != []


@pytest.fixture
def group_streaming_bot(streaming_bot) -> tuple[Bot, dict[str, Any]]:  # type: ignore[no-untyped-def]
    bot, info = streaming_bot
    bot.persona.stream_group_edits = True
    bot.persona.save()
    return bot, info


def group_answer(telegram_api: Any, bot: Bot, token: str, text: str) -> tuple[int, list[dict[str, Any]]]:
    """Ask in a group; once the answer is settled, the group's messages from the bot."""
    group = telegram_api.add_group(title="Team")
    telegram_api.send_group_message(token, "{bot} " + text, chat_id=group["id"], mention_bot="username")
    wait_until(lambda: Message.objects.filter(bot=bot, direction="in", reply_state__in=["replied", "failed"]).exists(),
               timeout=30)
    time.sleep(1.0)  # room for a duplicate or a late edit to show up
    return group["id"], telegram_api.sent_messages(token, chat_id=group["id"])


def test_in_a_group_the_answer_grows_by_edits_of_one_message(celery_worker, telegram_api, gemini_api, group_streaming_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = group_streaming_bot
    gemini_api.set_stream_timing(first_chunk_delay=0.3, chunk_delay=0.35, chunks=10)
    gemini_api.script_replies([ANSWER])

    group_id, sent = group_answer(telegram_api, bot, info["token"], "write something long")

    question = Message.objects.get(bot=bot, direction="in")
    assert [(m["text"], m["reply_to_message_id"]) for m in sent] == [(ANSWER, question.telegram_message_id)]
    edits = telegram_api.edits(info["token"], chat_id=group_id)
    assert len(edits) >= 2 and {e["message_id"] for e in edits} == {sent[0]["message_id"]}
    growing = [e["text"] for e in edits[:-1]]
    assert all(t.endswith(STILL_WRITING) and ANSWER.startswith(t.removesuffix(STILL_WRITING)) for t in growing)
    assert [len(t) for t in growing] == sorted(len(t) for t in growing)
    assert edits[-1]["text"] == ANSWER  # the outbox's final edit, without the mark
    stamps = [e["at"] for e in edits[:-1]]
    assert all(b - a >= EDIT_INTERVAL - 0.05 for a, b in zip(stamps, stamps[1:], strict=False)), stamps
    assert telegram_api.drafts(info["token"]) == []
    reply = Message.objects.get(bot=bot, direction="out")
    assert (reply.telegram_message_id, question.preview_message_id) == (sent[0]["message_id"],) * 2
    assert reply.first_draft_ms is not None and reply.first_draft_ms < reply.ai_latency_ms


def test_a_group_stream_that_breaks_halfway_ends_as_the_whole_answer(celery_worker, telegram_api, gemini_api, group_streaming_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = group_streaming_bot
    gemini_api.set_stream_timing(first_chunk_delay=0.05, chunk_delay=0.6, chunks=8)
    gemini_api.add_fault("stream_break", after_chunks=3)

    _, sent = group_answer(telegram_api, bot, info["token"], "tell me a story")

    asked = [r for r in gemini_api.requests() if r.contents and "tell me a story" in r.contents[-1].text]
    assert [r.action for r in asked] == ["streamGenerateContent", "generateContent"]  # then asked whole
    assert len(sent) == 1  # the preview, which became the answer
    assert "tell me a story" in sent[0]["text"] and not sent[0]["text"].endswith(STILL_WRITING)
    assert sent[0]["edits"] >= 1
    assert Message.objects.get(bot=bot, direction="in").reply_state == Message.ReplyState.REPLIED


def test_the_sandbox_group_shows_the_preview_growing(celery_worker, sandbox_streams, group_streaming_bot, admin_client) -> None:  # type: ignore[no-untyped-def]
    bot, info = group_streaming_bot
    url = sandbox_said(admin_client, bot, f"@{info['username']} hello", "group")

    def from_bot() -> list[str]:
        return [m["text"] for m in admin_client.get(url).json()["messages"] if m["from_bot"]]

    preview = wait_until(lambda: [t for t in from_bot() if t.endswith(STILL_WRITING)], timeout=20)
    final = wait_until(lambda: [t for t in from_bot() if t == ANSWER], timeout=30)

    assert ANSWER.startswith(preview[0].removesuffix(STILL_WRITING))
    assert from_bot() == final == [ANSWER]  # the same message, grown into the answer
