"""/healthz, /readyz (real database, real Redis, a real Celery worker) and /metrics."""

import socket
import time
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from bots.models import Bot, BotTask
from bots.services import task_start
from config.embedded_redis import EmbeddedRedis, free_port
from conversations.models import Chat, Message
from tests.factories import make_bot, make_task

# --- health ---------------------------------------------------------------------------


def test_it_answers_healthz_while_the_process_is_alive(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.e2e
def test_it_is_ready_when_the_database_redis_and_a_worker_answer(client, celery_worker) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/readyz")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ready"] is True and body["failed"] == []
    assert all(check["ok"] for check in body["checks"].values())


@pytest.mark.django_db
def test_it_is_not_ready_when_no_worker_answers(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["failed"] == ["workers"]


@pytest.fixture
def redis_gone(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Redis was there, then stopped: REDIS_URL and the broker point at a dead port."""
    server = EmbeddedRedis().start()
    settings.REDIS_URL = settings.CELERY_BROKER_URL = server.url
    server.stop()
    yield


@pytest.mark.django_db
def test_it_is_not_ready_and_names_redis_when_redis_is_down(client, redis_gone) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    response = client.get("/readyz")
    took = time.monotonic() - started

    assert response.status_code == 503
    body = response.json()
    assert "redis" in body["failed"]
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert took < 3, f"/readyz took {took:.1f} s"


@pytest.fixture
def silent_redis(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """A port that accepts connections and never answers (a hung or black-holed Redis)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        settings.REDIS_URL = settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        yield


@pytest.mark.django_db
def test_it_answers_readyz_within_3_seconds_when_redis_hangs(client, silent_redis) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    response = client.get("/readyz")
    took = time.monotonic() - started

    assert response.status_code == 503
    assert "redis" in response.json()["failed"]
    assert took < 3, f"/readyz took {took:.1f} s"


@pytest.mark.django_db
def test_it_says_nothing_about_hosts_in_readyz(client, settings) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nothing listens there
    settings.REDIS_URL = settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"

    body = client.get("/readyz").content.decode()

    assert str(port) not in body and "127.0.0.1" not in body


# --- metrics --------------------------------------------------------------------------


def scrape(client: Client, **extra: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def conversation(bot: Bot, latencies_ms: list[int]) -> None:
    chat = Chat.objects.create(bot=bot, telegram_id=42, type=Chat.Type.PRIVATE)
    for n, latency in enumerate(latencies_ms):
        question = Message.objects.create(bot=bot, chat=chat, direction=Message.Direction.IN, text=f"q{n}")
        Message.objects.create(
            bot=bot, chat=chat, direction=Message.Direction.OUT, text=f"a{n}", reply_to=question,
            telegram_message_id=n + 1, ai_latency_ms=latency,
        )


@pytest.mark.django_db
def test_it_exposes_updates_and_replies_per_bot(client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot(name="helpdesk")
    make_task(bot, messages_processed=7, replies_sent=5)
    make_task(bot, messages_processed=3, replies_sent=2)

    samples = scrape(client)

    assert samples[("botfleet_updates_received_total", (("bot", "helpdesk"),))] == 10
    assert samples[("botfleet_replies_sent_total", (("bot", "helpdesk"),))] == 7


@pytest.mark.django_db
def test_it_exposes_an_ai_latency_histogram_per_bot(client) -> None:  # type: ignore[no-untyped-def]
    conversation(make_bot(name="helpdesk"), [200, 700, 1500, 45_000])

    samples = scrape(client)

    def bucket(le: str) -> float:
        return samples[("botfleet_ai_latency_seconds_bucket", (("bot", "helpdesk"), ("le", le)))]

    assert (bucket("0.25"), bucket("1.0"), bucket("2.5"), bucket("30.0"), bucket("60.0"), bucket("+Inf")) == (1, 2, 3, 3, 4, 4)
    assert samples[("botfleet_ai_latency_seconds_count", (("bot", "helpdesk"),))] == 4
    assert samples[("botfleet_ai_latency_seconds_sum", (("bot", "helpdesk"),))] == pytest.approx(47.4)


@pytest.mark.django_db
def test_it_counts_errors_by_kind_per_bot(client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot(name="helpdesk")
    make_task(bot, error_count=3, last_error="Telegram timed out", last_error_at=timezone.now())
    chat = Chat.objects.create(bot=bot, telegram_id=1, type=Chat.Type.PRIVATE)
    question = Message.objects.create(bot=bot, chat=chat, direction="in", text="?", reply_state="failed", error="gave up")
    Message.objects.create(bot=bot, chat=chat, direction="out", text="fallback", reply_to=question, error="AI timed out")

    samples = scrape(client)

    def errors(kind: str) -> float:
        return samples[("botfleet_errors_total", (("bot", "helpdesk"), ("kind", kind)))]

    assert (errors("task"), errors("ai"), errors("reply_failed")) == (3, 1, 1)


@pytest.mark.django_db
def test_it_exposes_tasks_by_status_and_queue_depths(client) -> None:  # type: ignore[no-untyped-def]
    make_task(status=BotTask.Status.FAILED)

    samples = scrape(client)

    assert samples[("botfleet_tasks", (("status", "failed"),))] == 1
    assert samples[("botfleet_tasks", (("status", "running"),))] == 0
    assert ("botfleet_queue_messages", (("queue", "replies"),)) in samples


@pytest.mark.django_db
def test_it_refuses_metrics_to_anonymous_clients_outside_the_allow_list(client) -> None:  # type: ignore[no-untyped-def]
    make_bot(name="helpdesk")

    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 403
    assert "botfleet_" not in response.content.decode()


@pytest.mark.django_db
def test_it_serves_metrics_to_staff_who_may_view_tasks_from_any_address(client) -> None:  # type: ignore[no-untyped-def]
    user = User.objects.create_user("ops", password="x-ops-pass", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_bottask"))
    client.force_login(user)

    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200


@pytest.mark.django_db
def test_it_lets_an_allowed_network_scrape_metrics(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]

    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_it_counts_in_metrics_the_work_a_worker_process_did(client, celery_worker, telegram_api, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    task_start(task=bot_task)
    update = telegram_api.send_private_message(info["token"], "Hello from the metrics test")
    telegram_api.wait_for_sent(info["token"], 1, chat_id=update["message"]["chat"]["id"], timeout=20)
    deadline = time.monotonic() + 10  # the counter is bumped just after the send
    while BotTask.objects.get(pk=bot_task.pk).replies_sent < 1 and time.monotonic() < deadline:
        time.sleep(0.05)

    samples = scrape(client)

    assert samples[("botfleet_updates_received_total", (("bot", bot.name),))] == 1
    assert samples[("botfleet_replies_sent_total", (("bot", bot.name),))] == 1
