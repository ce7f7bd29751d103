"""The outbox and the reaper: one way to send, exactly once by the "handed to Telegram"
stamp, claims that expire and are taken over. The crash states are built as a killed
worker leaves them (rows claimed by a process that no longer renews its claims)."""

from datetime import timedelta

import pytest
import telegram
from django.conf import settings
from django.utils import timezone

from bots.formatting import FormattedText
from bots.models import BotTask
from bots.services import task_start
from conversations import broadcasts, outbox, reaper
from conversations.ingest import updates_store
from conversations.models import Delivery, Message, ScheduledRun
from core import aio
from tests.support.scheduling import chats_make, run_drive, scheduled_make

pytestmark = pytest.mark.django_db(transaction=True)

DEAD_WORKER = "host-that-died:4242:0000"


@pytest.fixture
def started(telegram_api, emulated_bot, bot_task):  # type: ignore[no-untyped-def]
    task_start(task=bot_task)
    return emulated_bot[1]


def stored(bot_task: BotTask, update: dict) -> Message:
    task = BotTask.objects.select_related("bot").get(pk=bot_task.pk)
    return updates_store(bot=task.bot, task=task, updates=[telegram.Update.de_json(update, None)]).new_messages[0]


def left_by_a_dead_worker(rows, *, lapsed: bool = True) -> None:  # type: ignore[no-untyped-def]
    """As a SIGKILLed worker leaves its claims: owned by a process that is gone."""
    expiry = timezone.now() - timedelta(seconds=1) if lapsed else timezone.now() + timedelta(minutes=1)
    rows.update(claimed_by=DEAD_WORKER, claim_expires_at=expiry)


def reply_in_flight(bot_task: BotTask, message: Message, texts: list[str], edits: int | None = None) -> list[Message]:
    """A reply whose parts the dead worker had queued and was sending (the first part
    replacing the text of the preview `edits`, when given)."""
    Message.objects.filter(pk=message.pk).update(reply_state=Message.ReplyState.SENDING, claimed_by="", claim_expires_at=None)
    message.refresh_from_db()
    endpoint = outbox.telegram.BotEndpoint.of(message.bot)
    (parts,) = outbox.parts_create([outbox.Outgoing(
        bot=message.bot, chat=message.chat, parts=[FormattedText(t) for t in texts],
        reply_to=message, endpoint=endpoint, edits=edits,
    )])
    rows = Message.objects.filter(pk__in=[p.pk for p in parts])
    left_by_a_dead_worker(rows)
    return list(rows.order_by("id"))


def reap_and_send() -> reaper.Reaped:
    reaped = reaper.claims_reap()
    if reaped.answers:
        from conversations import replies

        replies.answer_soon(reaped.answers).result(30)
    aio.run(outbox.parts_send(reaped.parts), timeout=30)
    return reaped


def test_it_sends_again_a_part_never_handed_to_telegram(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = stored(bot_task, telegram_api.send_private_message(started["token"], "hi"))
    (part,) = reply_in_flight(bot_task, message, ["Hello there"])

    reaped = reap_and_send()

    assert [p.pk for p in reaped.parts] == [part.pk]
    assert [m["text"] for m in telegram_api.sent_messages(started["token"])] == ["Hello there"]
    part.refresh_from_db()
    message.refresh_from_db()
    assert (part.send_state, message.reply_state) == ("sent", "replied")


def test_it_never_sends_again_a_part_handed_to_telegram(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = stored(bot_task, telegram_api.send_private_message(started["token"], "hi"))
    first, second = reply_in_flight(bot_task, message, ["Part one", "Part two"])
    Message.objects.filter(pk=first.pk).update(handed_at=timezone.now())  # then the worker died

    reaped = reap_and_send()

    assert reaped.interrupted == 1
    assert telegram_api.calls(started["token"], method="sendMessage") == []
    first.refresh_from_db()
    second.refresh_from_db()
    message.refresh_from_db()
    assert (first.send_state, first.error) == ("failed", outbox.INTERRUPTED)
    assert (second.send_state, second.error) == ("failed", outbox.EARLIER_PART_FAILED)
    assert (message.reply_state, message.error) == ("failed", outbox.INTERRUPTED)


def preview_sent(message: Message, text: str) -> int:
    """A preview of the answer, as streaming in a group sends it (here to any chat)."""
    endpoint = outbox.telegram.BotEndpoint.of(message.bot)
    sent = aio.run(outbox.telegram.send_message(endpoint, chat_id=message.chat.telegram_id, text=text))
    return int(sent.message_id)


def test_an_edit_of_a_preview_handed_to_telegram_is_redone_not_failed(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = stored(bot_task, telegram_api.send_private_message(started["token"], "hi"))
    preview = preview_sent(message, "Hello th …")
    first, second = reply_in_flight(bot_task, message, ["Hello there", "and more"], edits=preview)
    Message.objects.filter(pk=first.pk).update(handed_at=timezone.now())  # then the worker died

    reaped = reap_and_send()

    assert reaped.interrupted == 0
    sent = telegram_api.sent_messages(started["token"])
    assert [(m["message_id"], m["text"]) for m in sent] == [(preview, "Hello there"), (sent[1]["message_id"], "and more")]
    first.refresh_from_db()
    message.refresh_from_db()
    assert (first.send_state, first.telegram_message_id, message.reply_state) == ("sent", preview, "replied")


def test_a_preview_that_cannot_be_edited_is_replaced_by_a_new_message(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = stored(bot_task, telegram_api.send_private_message(started["token"], "hi"))
    (part,) = reply_in_flight(bot_task, message, ["Hello there"], edits=987654)  # deleted meanwhile

    reap_and_send()

    assert [m["text"] for m in telegram_api.sent_messages(started["token"])] == ["Hello there"]
    part.refresh_from_db()
    assert (part.send_state, part.edits_message_id) == ("sent", None)
    assert part.telegram_message_id == telegram_api.sent_messages(started["token"])[0]["message_id"]


def test_it_leaves_a_live_claim_alone(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = stored(bot_task, telegram_api.send_private_message(started["token"], "hi"))
    (part,) = reply_in_flight(bot_task, message, ["Still being sent"])
    left_by_a_dead_worker(Message.objects.filter(pk=part.pk), lapsed=False)

    reaped = reap_and_send()

    assert (reaped.parts, reaped.interrupted) == ([], 0)
    assert telegram_api.calls(started["token"], method="sendMessage") == []


def test_it_sends_a_deferred_part_when_its_wait_is_over(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = stored(bot_task, telegram_api.send_private_message(started["token"], "hi"))
    (part,) = reply_in_flight(bot_task, message, ["After the flood wait"])
    later = timezone.now() + timedelta(seconds=30)
    Message.objects.filter(pk=part.pk).update(send_state="queued", send_after=later, claimed_by="", claim_expires_at=None)

    assert reap_and_send().parts == []  # not yet due
    Message.objects.filter(pk=part.pk).update(send_after=timezone.now())
    reap_and_send()

    assert [m["text"] for m in telegram_api.sent_messages(started["token"])] == ["After the flood wait"]


def test_it_answers_a_message_whose_worker_died_while_composing(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = stored(bot_task, telegram_api.send_private_message(started["token"], "are you there?"))
    left_by_a_dead_worker(Message.objects.filter(pk=message.pk))

    reaped = reap_and_send()

    assert reaped.answers == [(message.pk, message.chat_id)]
    sent = telegram_api.sent_messages(started["token"])
    assert len(sent) == 1 and "are you there?" in sent[0]["text"]
    message.refresh_from_db()
    assert (message.reply_state, message.attempts) == ("replied", 1)


def test_an_answer_redone_after_a_crash_replaces_the_preview_its_worker_sent(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = stored(bot_task, telegram_api.send_private_message(started["token"], "are you there?"))
    preview = preview_sent(message, "I am …")
    Message.objects.filter(pk=message.pk).update(preview_message_id=preview)
    left_by_a_dead_worker(Message.objects.filter(pk=message.pk))

    reap_and_send()

    sent = telegram_api.sent_messages(started["token"])
    assert [m["message_id"] for m in sent] == [preview]  # no second message…
    assert "are you there?" in sent[0]["text"]  # …the preview became the answer
    message.refresh_from_db()
    assert message.reply_state == "replied"


def test_it_gives_up_on_a_message_that_keeps_killing_its_worker(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    message = stored(bot_task, telegram_api.send_private_message(started["token"], "poison"))
    Message.objects.filter(pk=message.pk).update(attempts=settings.REPLY_MAX_ATTEMPTS - 1)
    left_by_a_dead_worker(Message.objects.filter(pk=message.pk))

    reaped = reap_and_send()

    assert (reaped.answers, reaped.given_up) == ([], 1)
    message.refresh_from_db()
    assert message.reply_state == "failed" and message.error.startswith("Gave up after")
    assert telegram_api.calls(started["token"], method="sendMessage") == []


def test_a_broadcast_follows_the_same_rule_and_finishes(telegram_api, emulated_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    chats = chats_make(telegram_api, bot, 6)
    scheduled = scheduled_make(bot, text="Once only", run_at=timezone.now())
    run = broadcasts.scheduled_fire(scheduled_id=scheduled.pk)
    assert run is not None
    run = broadcasts.run_prepare(run_id=run.pk)
    assert run is not None
    # The dead worker had handed two chats to the outbox; one part was with Telegram.
    endpoint = outbox.telegram.BotEndpoint.of(bot)
    for chat, handed in ((chats[0], True), (chats[1], False)):
        Delivery.objects.filter(run=run, chat=chat).update(state="sending")
        ((part,),) = outbox.parts_create([outbox.Outgoing(
            bot=bot, chat=chat, parts=[FormattedText("Once only")], scheduled_run=run, endpoint=endpoint,
        )])
        rows = Message.objects.filter(pk=part.pk)
        rows.update(handed_at=timezone.now() if handed else None)
        left_by_a_dead_worker(rows)

    reap_and_send()
    run = run_drive(ScheduledRun.objects.get(pk=run.pk))

    sent_to = [m["chat_id"] for m in telegram_api.sent_messages(info["token"])]
    assert sorted(sent_to) == sorted(c.telegram_id for c in chats[1:])  # each once, not chats[0]
    interrupted = Delivery.objects.get(run=run, chat=chats[0])
    assert (interrupted.state, interrupted.error) == ("failed", outbox.INTERRUPTED)
    assert (run.state, run.sent, run.failed) == ("done", 5, 1)


def test_it_answers_a_message_left_waiting_without_a_claim(telegram_api, started, bot_task) -> None:  # type: ignore[no-untyped-def]
    # As a message stored by the previous version (a reply task per message) and never
    # answered is found after an upgrade: pending, no claim.
    message = stored(bot_task, telegram_api.send_private_message(started["token"], "from before"))
    Message.objects.filter(pk=message.pk).update(
        reply_state="pending", claimed_by="", claim_expires_at=None,
        updated_at=timezone.now() - timedelta(minutes=5),
    )

    reaped = reap_and_send()

    assert reaped.answers == [(message.pk, message.chat_id)]
    message.refresh_from_db()
    assert message.reply_state == "replied"
