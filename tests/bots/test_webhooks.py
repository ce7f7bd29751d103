"""Webhook mode: Telegram pushes a bot's updates to Botfleet (bots.webhooks, bots.views,
bots.pushes).

The receiving view through Django's test client, and the drain a worker runs after it;
Start and Stop against the Telegram emulator; end to end (the emulator pushing to a live
server, a real worker answering) at the bottom."""

import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.test import Client
from django.urls import reverse

from bots import pushes, webhooks
from bots.models import Bot, BotTask, PushedUpdate
from bots.services import TaskError, task_start, task_stop
from bots.supervisor import webhooks_check
from conversations.models import Message, SkippedUpdate
from tests.factories import bot_admin_form, make_bot, make_persona, make_task
from tests.support.timing import wait_until

SECRET = "a-webhook-secret_0123456789"


def running_webhook_task(**bot_fields: Any) -> BotTask:
    bot = make_bot(update_mode=Bot.UpdateMode.WEBHOOK, webhook_secret=SECRET, **bot_fields)
    return make_task(bot, status=BotTask.Status.RUNNING)


def push(client: Client, bot_id: int, body: Any, *, secret: str | None = SECRET, raw: bytes | None = None) -> Any:
    headers = {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": secret} if secret is not None else {}
    data = raw if raw is not None else json.dumps(body)
    return client.post(
        reverse("telegram-webhook", args=[bot_id]), data=data, content_type="application/json", **headers
    )


def private_update(update_id: int, text: str, *, user_id: int = 501) -> dict[str, Any]:
    user = {"id": user_id, "is_bot": False, "first_name": "Ann"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id, "date": int(time.time()), "text": text,
            "chat": {"id": user_id, "type": "private", "first_name": "Ann"}, "from": user,
        },
    }


@dataclass
class Workers:
    """What the web process asked the workers for, and what a drain handed on."""

    drains_asked: list[int] = field(default_factory=list)  # bot ids
    handed_over: list[list[int]] = field(default_factory=list)  # message ids, per batch


@pytest.fixture
def workers(monkeypatch) -> Workers:  # type: ignore[no-untyped-def]
    """Stands in for the broker and the answering: records drains asked for and the
    messages a drain hands on (the end-to-end tests below run the real ones)."""
    from conversations import tasks

    seen = Workers()
    monkeypatch.setattr(pushes, "_drain_publish", seen.drains_asked.append)
    monkeypatch.setattr(tasks, "pushed_answer", seen.handed_over.append)
    return seen


def push_and_drain(bot_id: int, body: Any, **options: Any) -> Any:
    """A push, then the drain a worker would run for it."""
    response = push(Client(), bot_id, body, **options)
    pushes.drain(bot_id)
    return response


# --- the receiving view, and the drain ----------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_a_push_without_the_bots_secret() -> None:
    task = running_webhook_task()
    client = Client()

    missing = push(client, task.bot_id, private_update(1, "hi"), secret=None)
    wrong = push(client, task.bot_id, private_update(2, "hi"), secret="not-the-secret")
    unknown = push(client, task.bot_id + 1000, private_update(3, "hi"))

    assert [missing.status_code, wrong.status_code, unknown.status_code] == [403, 403, 403]
    assert not PushedUpdate.objects.exists()


@pytest.mark.django_db
def test_it_refuses_pushes_for_a_stopped_bot_or_a_polling_one() -> None:
    stopped = running_webhook_task()
    BotTask.objects.filter(pk=stopped.pk).update(status=BotTask.Status.STOPPED)
    polling = make_task(make_bot(webhook_secret=SECRET), status=BotTask.Status.RUNNING)
    client = Client()

    assert push(client, stopped.bot_id, private_update(1, "hi")).status_code == 403
    assert push(client, polling.bot_id, private_update(2, "hi")).status_code == 403
    assert not PushedUpdate.objects.exists()


@pytest.mark.django_db
def test_it_takes_only_posts() -> None:
    task = running_webhook_task()

    response = Client().get(
        reverse("telegram-webhook", args=[task.bot_id]), HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRET
    )

    assert response.status_code == 405


@pytest.mark.django_db
def test_it_keeps_a_push_once_and_asks_for_one_drain_however_many_come(workers) -> None:  # type: ignore[no-untyped-def]
    task = running_webhook_task()
    client = Client(enforce_csrf_checks=True)  # Telegram has no CSRF token

    first = push(client, task.bot_id, private_update(7, "Hello there"))
    again = push(client, task.bot_id, private_update(7, "Hello there"))  # Telegram retried it
    other = push(client, task.bot_id, private_update(8, "And more"))

    assert [first.status_code, again.status_code, other.status_code] == [200, 200, 200]
    assert sorted(PushedUpdate.objects.values_list("update_id", flat=True)) == [7, 8]
    assert not Message.objects.exists()  # the workers store them, not the web process
    assert workers.drains_asked == [task.bot_id]  # one drain due at a time per bot


@pytest.mark.django_db
def test_a_drain_stores_pushes_in_update_order_once_and_hands_them_on(workers) -> None:  # type: ignore[no-untyped-def]
    task = running_webhook_task()
    client = Client()
    for update_id in (12, 10, 11, 10):  # concurrent pushes land in any order; 10 came twice
        push(client, task.bot_id, private_update(update_id, f"message {update_id}", user_id=500 + update_id))

    assert pushes.drain(task.bot_id) == 3

    stored = list(Message.objects.filter(bot_id=task.bot_id).order_by("pk"))
    assert [m.update_id for m in stored] == [10, 11, 12]
    assert {(m.reply_state, m.claimed_by) for m in stored} == {(Message.ReplyState.PENDING, "")}
    assert workers.handed_over == [[m.pk for m in stored]]
    assert not PushedUpdate.objects.exists()
    task.refresh_from_db()
    assert task.messages_processed == 3
    assert task.heartbeat_at is not None
    # Telegram sends one again after it was drained: stored once all the same.
    push_and_drain(task.bot_id, private_update(11, "message 11", user_id=511))
    assert Message.objects.filter(bot_id=task.bot_id).count() == 3


@pytest.mark.django_db
def test_a_push_kept_while_a_drain_stores_its_batch_is_drained_by_it_too(workers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The drain asked for by the second push finds the first drain holding the bot and
    # leaves the work to it, so that drain must look again before it ends.
    task = running_webhook_task()
    client = Client()
    push(client, task.bot_id, private_update(1, "first"))
    batch_drain, batches = pushes._batch_drain, []

    def meanwhile(bot_id: int, rows: list[tuple[int, str]]) -> None:
        batches.append(len(rows))
        if len(batches) == 1:
            push(client, task.bot_id, private_update(2, "second", user_id=502))
            assert pushes.drain(task.bot_id) == 0  # the drain the second push asked for
        batch_drain(bot_id, rows)

    monkeypatch.setattr(pushes, "_batch_drain", meanwhile)

    assert pushes.drain(task.bot_id) == 2
    assert [m.update_id for m in Message.objects.order_by("pk")] == [1, 2]
    assert not PushedUpdate.objects.exists()
    assert workers.drains_asked == [task.bot_id, task.bot_id]  # each push, with no drain due
    assert batches == [1, 1]


@pytest.mark.django_db
def test_after_a_drain_the_next_push_asks_for_one_even_if_one_was_asked_for_meanwhile(workers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A push kept before the drain read its rows but whose request for a drain came
    # after (the web process was slow between the two): that drain finds the lock held
    # and does nothing, and the drain holding it took the push already.
    task = running_webhook_task()
    client = Client()
    push(client, task.bot_id, private_update(1, "first"))
    batch_drain = pushes._batch_drain

    def late_request(bot_id: int, rows: list[tuple[int, str]]) -> None:
        pushes.drain_request(bot_id)
        assert pushes.drain(bot_id) == 0
        batch_drain(bot_id, rows)

    monkeypatch.setattr(pushes, "_batch_drain", late_request)
    assert pushes.drain(task.bot_id) == 1
    monkeypatch.setattr(pushes, "_batch_drain", batch_drain)

    push(client, task.bot_id, private_update(2, "second"))

    assert workers.drains_asked == [task.bot_id] * 3  # the push after the drain asked again


@pytest.mark.django_db
def test_a_drain_leaves_the_bot_to_the_drain_holding_it(workers) -> None:  # type: ignore[no-untyped-def]
    task = running_webhook_task()
    push(Client(), task.bot_id, private_update(1, "hi"))
    holder = pushes._lock_take(task.bot_id)
    assert holder is not None

    assert pushes.drain(task.bot_id) == 0  # another worker drains this bot right now
    assert not Message.objects.exists()
    pushes._lock_release(task.bot_id, holder)
    assert pushes.drain(task.bot_id) == 1


@pytest.mark.django_db
def test_a_push_the_broker_never_took_is_drained_by_the_supervisor(monkeypatch, workers) -> None:  # type: ignore[no-untyped-def]
    task = running_webhook_task()

    def broker_down(bot_id: int) -> None:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(pushes, "_drain_publish", broker_down)
    assert push(Client(), task.bot_id, private_update(3, "still there?")).status_code == 200
    kept = PushedUpdate.objects.get()
    monkeypatch.setattr(pushes, "_drain_publish", workers.drains_asked.append)

    assert pushes.sweep(now=kept.received_at + timedelta(seconds=5)) == []  # not late yet
    assert pushes.sweep(now=kept.received_at + pushes.SWEEP_AFTER + timedelta(seconds=1)) == [task.bot_id]
    assert workers.drains_asked == [task.bot_id]


@pytest.mark.django_db
def test_a_push_is_logged_when_the_bot_stopped_before_the_drain(workers) -> None:  # type: ignore[no-untyped-def]
    task = running_webhook_task()
    push(Client(), task.bot_id, private_update(4, "just in time"))
    BotTask.objects.filter(pk=task.pk).update(status=BotTask.Status.STOPPED)

    pushes.drain(task.bot_id)

    assert Message.objects.get().text == "just in time"  # Telegram delivered it: never lost


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b"[1, 2, 3]", "not an update"),
        (b"[" * 100_000, "not JSON"),
        (json.dumps({"update_id": "x"}).encode(), "is not a positive number"),
        (json.dumps({"update_id": 9, "message": {"chat": "nonsense"}}).encode(), "update 9"),
    ],
)
def test_it_answers_200_to_a_body_that_is_not_an_update_and_records_why(raw: bytes, reason: str, workers) -> None:  # type: ignore[no-untyped-def]
    task = running_webhook_task()

    response = push_and_drain(task.bot_id, None, raw=raw)  # the last is read by the drain

    assert response.status_code == 200  # anything else and Telegram sends it forever
    assert not Message.objects.exists()
    assert SkippedUpdate.objects.filter(bot_id=task.bot_id).count() == 1
    task.refresh_from_db()
    assert reason in task.last_error


@pytest.mark.django_db
def test_it_passes_over_a_body_beyond_the_size_cap(settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEBHOOK_MAX_BODY_BYTES = 2000
    task = running_webhook_task()

    response = push(Client(), task.bot_id, private_update(5, "x" * 3000))

    assert response.status_code == 200
    assert not Message.objects.exists()
    task.refresh_from_db()
    assert "more than 2000 bytes" in task.last_error


@pytest.mark.django_db
def test_it_stores_a_group_message_that_wants_no_answer_as_log_only(workers) -> None:  # type: ignore[no-untyped-def]
    task = running_webhook_task()
    update = private_update(11, "people talking among themselves")
    update["message"]["chat"] = {"id": -100200, "type": "group", "title": "Team"}

    assert push_and_drain(task.bot_id, update).status_code == 200

    stored = Message.objects.get(bot_id=task.bot_id)
    assert stored.reply_state == Message.ReplyState.NONE
    assert workers.handed_over == []


# --- the admin ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_webhook_mode_without_a_base_url(admin_client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEBHOOK_BASE_URL = ""
    bot = make_bot()

    response = admin_client.post(reverse("admin:bots_bot_change", args=[bot.pk]), bot_admin_form(bot, update_mode="webhook"))

    assert response.status_code == 200
    assert "Webhook mode needs the WEBHOOK_BASE_URL setting" in response.content.decode()
    bot.refresh_from_db()
    assert bot.update_mode == Bot.UpdateMode.POLLING


@pytest.mark.django_db
def test_it_refuses_a_plain_http_base_url_that_is_not_loopback(admin_client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEBHOOK_BASE_URL = "http://bots.example.com"
    bot = make_bot()

    response = admin_client.post(reverse("admin:bots_bot_change", args=[bot.pk]), bot_admin_form(bot, update_mode="webhook"))

    assert "must be an https:// address" in response.content.decode()


@pytest.mark.django_db
def test_it_refuses_switching_modes_while_the_bot_runs(admin_client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEBHOOK_BASE_URL = "https://bots.example.com"
    bot = make_bot()
    make_task(bot, status=BotTask.Status.RUNNING)

    response = admin_client.post(reverse("admin:bots_bot_change", args=[bot.pk]), bot_admin_form(bot, update_mode="webhook"))

    assert "running task before switching how it gets updates" in response.content.decode()
    bot.refresh_from_db()
    assert bot.update_mode == Bot.UpdateMode.POLLING


# --- Start and Stop against the emulator ----------------------------------------------------


@pytest.fixture
def webhook_bot(telegram_api, settings) -> tuple[Bot, dict[str, Any]]:  # type: ignore[no-untyped-def]
    settings.WEBHOOK_BASE_URL = "http://127.0.0.1:9"  # nothing listens: these tests never push
    info = telegram_api.add_bot(first_name="Hooked")
    bot = make_bot(
        token=info["token"], api_base_url=telegram_api.base_url, update_mode=Bot.UpdateMode.WEBHOOK,
        persona=make_persona(),
    )
    return bot, info


def bot_api(telegram_api: Any, token: str, method: str, **params: Any) -> Any:
    """A Bot API call as another program holding the token would make it."""
    answer = httpx.post(f"{telegram_api.base_url}{token}/{method}", json=params, timeout=10).json()
    assert answer["ok"], answer
    return answer["result"]


@pytest.mark.django_db
def test_it_sets_the_webhook_with_a_new_secret_on_every_start(telegram_api, webhook_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = webhook_bot
    task = make_task(bot)

    task_start(task=task)
    first_secret = Bot.objects.get(pk=bot.pk).webhook_secret.reveal()
    task_stop(task=task)
    task_start(task=task)
    second_secret = Bot.objects.get(pk=bot.pk).webhook_secret.reveal()

    status = telegram_api.bot_status(info["token"])
    assert status["webhook_url"] == f"http://127.0.0.1:9/telegram/webhook/{bot.pk}/"
    assert bot_api(telegram_api, info["token"], "getWebhookInfo")["max_connections"] == 1  # in order
    assert first_secret and second_secret and first_secret != second_secret
    task.refresh_from_db()
    assert task.status == BotTask.Status.RUNNING
    assert task.lease_expires_at is None  # nothing to revive: no poller runs for it


@pytest.mark.django_db
def test_it_deletes_the_webhook_on_stop_and_refuses_pushes_after(telegram_api, webhook_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = webhook_bot
    task = make_task(bot)
    task_start(task=task)
    secret = Bot.objects.get(pk=bot.pk).webhook_secret.reveal()

    task_stop(task=task)

    assert telegram_api.bot_status(info["token"])["webhook_url"] == ""
    assert push(Client(), bot.pk, private_update(1, "late"), secret=secret).status_code == 403


@pytest.mark.django_db
def test_it_removes_the_webhook_when_the_bot_goes_back_to_polling(telegram_api, webhook_bot, settings) -> None:  # type: ignore[no-untyped-def]
    bot, info = webhook_bot
    bot_api(telegram_api, info["token"], "setWebhook", url="https://elsewhere.example.com/hook")
    Bot.objects.filter(pk=bot.pk).update(update_mode=Bot.UpdateMode.POLLING)

    task_start(task=make_task(bot))

    assert telegram_api.bot_status(info["token"])["webhook_url"] == ""


@pytest.mark.django_db
def test_it_drops_pending_updates_on_start_when_the_task_says_so(telegram_api, webhook_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = webhook_bot
    telegram_api.send_private_message(info["token"], "sent while the bot was off")

    task_start(task=make_task(bot, drop_pending_updates=True))

    assert telegram_api.bot_status(info["token"])["pending_update_count"] == 0


@pytest.mark.django_db
def test_it_says_why_a_webhook_bot_cannot_start_without_a_base_url(webhook_bot, settings) -> None:  # type: ignore[no-untyped-def]
    bot, _ = webhook_bot
    settings.WEBHOOK_BASE_URL = ""
    task = make_task(bot)

    with pytest.raises(TaskError, match="WEBHOOK_BASE_URL"):
        task_start(task=task)

    task.refresh_from_db()
    assert task.status == BotTask.Status.PENDING


@pytest.mark.django_db
def test_it_records_what_telegram_says_about_the_webhook(telegram_api, webhook_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = webhook_bot
    task = make_task(bot)
    task_start(task=task)
    telegram_api.send_private_message(info["token"], "waiting at Telegram")

    asked = webhooks_check()

    assert asked == [task.pk]
    task.refresh_from_db()
    assert task.webhook_pending_updates == 1
    assert task.webhook_checked_at is not None
    assert webhooks_check() == []  # asked again only after WEBHOOK_INFO_INTERVAL


@pytest.mark.django_db
def test_it_notices_a_webhook_changed_behind_its_back(telegram_api, webhook_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = webhook_bot
    task = make_task(bot)
    task_start(task=task)
    bot_api(telegram_api, info["token"], "deleteWebhook")

    webhooks_check()

    task.refresh_from_db()
    assert "webhook for this bot was removed by another program" in task.last_error


# --- end to end: the emulator pushes, a real worker answers ---------------------------------


@pytest.fixture
def pushed_bot(live_server, telegram_api, settings) -> tuple[Bot, dict[str, Any]]:  # type: ignore[no-untyped-def]
    settings.WEBHOOK_BASE_URL = live_server.url
    info = telegram_api.add_bot(first_name="Pushed")
    bot = make_bot(
        token=info["token"], api_base_url=telegram_api.base_url, update_mode=Bot.UpdateMode.WEBHOOK,
        persona=make_persona(greeting="Hello from the persona!"),
    )
    return bot, info


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_it_answers_pushed_messages_once_each_in_order(celery_worker, telegram_api, pushed_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = pushed_bot
    task = make_task(bot)
    task_start(task=task)

    first = telegram_api.send_private_message(info["token"], "first")
    chat_id = first["message"]["chat"]["id"]
    telegram_api.send_private_message(info["token"], "second", user_id=first["message"]["from"]["id"])
    sent = telegram_api.wait_for_sent(info["token"], 2, chat_id=chat_id, timeout=30)
    time.sleep(1.5)  # room for a duplicate to show up, if there were one

    assert [m["text"] for m in telegram_api.sent_messages(info["token"], chat_id=chat_id)] == [
        m["text"] for m in sent
    ]
    assert [m["text"] for m in sent] == ["[offline reply] You said: first", "[offline reply] You said: second"]
    assert set(Message.objects.filter(bot=bot, direction="in").values_list("reply_state", flat=True)) == {
        Message.ReplyState.REPLIED
    }
    assert telegram_api.bot_status(info["token"])["pending_update_count"] == 0  # all acknowledged


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_the_sandbox_chats_with_a_webhook_bot(celery_worker, telegram_api, pushed_bot, admin_client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SANDBOX_EMULATOR_URL = telegram_api.url
    bot, info = pushed_bot
    task_start(task=make_task(bot))

    response = admin_client.post(
        reverse("sandbox:send", args=[bot.pk]), {"text": "/start", "chat": "private"},
        content_type="application/json",
    )

    assert response.status_code == 200
    messages_url = reverse("sandbox:messages", args=[bot.pk]) + "?chat=private"
    lines = wait_until(lambda: [
        line["text"] for line in admin_client.get(messages_url).json()["messages"] if line["text"] != "/start"
    ], timeout=30)
    assert lines == ["Hello from the persona!"]


# --- the dashboard ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_task_page_shows_telegrams_delivery_error_and_waiting_updates(admin_client, telegram_api, webhook_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = webhook_bot  # its webhook points at a port nobody listens on
    task = make_task(bot)
    task_start(task=task)
    telegram_api.send_private_message(info["token"], "anyone there?")
    wait_until(lambda: telegram_api.bot_status(info["token"])["webhook_last_error_message"], timeout=10)

    page = admin_client.get(reverse("dashboard:task", args=[task.pk])).content.decode()

    assert "webhook (Telegram pushes them)" in page
    assert "1 update waiting at Telegram" in page
    assert "Connection refused" in page


@pytest.mark.django_db
def test_the_dashboard_shows_each_tasks_update_mode(admin_client) -> None:  # type: ignore[no-untyped-def]
    running_webhook_task()
    make_task(make_bot())

    rows = admin_client.get(reverse("dashboard:data")).json()["tasks"]

    assert sorted(row["mode"] for row in rows) == ["polling", "webhook"]


@pytest.mark.parametrize(
    ("base", "accepted"),
    [
        ("https://bots.example.com", True),
        ("https://bots.example.com:8443", True),
        ("http://127.0.0.1:8000", True),
        ("https://bots.example.com:9000", False),
        ("http://bots.example.com", False),
        ("ftp://bots.example.com", False),
    ],
)
def test_it_accepts_only_base_urls_telegram_pushes_to(settings, base: str, accepted: bool) -> None:  # type: ignore[no-untyped-def]
    settings.WEBHOOK_BASE_URL = base

    assert (webhooks.base_url_problem() == "") is accepted
