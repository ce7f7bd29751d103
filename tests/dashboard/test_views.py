"""The dashboard pages, their JSON feed and the task buttons, through Django's test client."""

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import clear_url_caches, reverse
from django.utils import timezone

from bots import supervisor
from bots.models import Bot, BotTask, time_label
from bots.services import task_start
from conversations.models import Chat, Message, TelegramUser
from dashboard import health
from tests.factories import make_bot, make_credential, make_task, make_token

pytestmark = pytest.mark.django_db

DASHBOARD = "/dashboard/"
DATA = "/dashboard/data.json"


@pytest.fixture(autouse=True)
def _no_live_workers() -> Iterator[None]:
    """As if the workers had just been asked and none answered: counting them waits a
    whole ping (about a second with Redis), which these tests do not need to pay."""
    cache.set(health.WORKERS_CACHE_KEY, {"names": []}, 300)
    yield
    cache.clear()


def running(task: BotTask) -> BotTask:
    """Marked running in the database only: these tests need no poller."""
    BotTask.objects.filter(pk=task.pk).update(
        status=BotTask.Status.RUNNING, heartbeat_at=timezone.now() - timedelta(seconds=12),
        lease_expires_at=timezone.now() + timedelta(seconds=30),
    )
    task.refresh_from_db()
    return task


def incoming(bot: Bot, text: str = "hello", **fields: object) -> Message:
    chat, _ = Chat.objects.get_or_create(
        bot=bot, telegram_id=1000 + bot.pk, defaults={"type": Chat.Type.PRIVATE, "title": "Alice"}
    )
    return Message.objects.create(bot=bot, chat=chat, direction=Message.Direction.IN, text=text, **fields)


def reply(to: Message, text: str = "hi there", latency_ms: int | None = 800, **fields: object) -> Message:
    return Message.objects.create(
        bot=to.bot, chat=to.chat, direction=Message.Direction.OUT, text=text, reply_to=to,
        telegram_message_id=to.pk + 5000, ai_latency_ms=latency_ms, **fields,
    )


def staff_client(*, can_change_tasks: bool, csrf_checks: bool = False) -> Client:
    """Staff who may view tasks (the dashboard's own permission), and change them if told."""
    user = User.objects.create_user("operator", password="x-operator-pass", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_bottask"))
    if can_change_tasks:
        user.user_permissions.add(Permission.objects.get(codename="change_bottask"))
    client = Client(enforce_csrf_checks=csrf_checks)
    client.force_login(user)
    return client


# --- who may see it -----------------------------------------------------------------


def test_it_redirects_anonymous_visitors_to_the_admin_login(client) -> None:  # type: ignore[no-untyped-def]
    make_task(name="Secret task")

    response = client.get(DASHBOARD)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/dashboard/")


def test_it_gives_anonymous_visitors_no_json_data(client) -> None:  # type: ignore[no-untyped-def]
    make_task(name="Secret task")

    response = client.get(DATA)

    assert response.status_code == 403
    assert "Secret task" not in response.content.decode()


def test_it_gives_logged_in_non_staff_users_no_data(client) -> None:  # type: ignore[no-untyped-def]
    make_task(name="Secret task")
    client.force_login(User.objects.create_user("visitor", password="x-visitor-pass"))

    page, data = client.get(DASHBOARD), client.get(DATA)

    assert page.status_code == 302 and "/admin/login/" in page["Location"]
    assert data.status_code == 403 and "Secret task" not in data.content.decode()


def test_it_hides_task_details_from_anonymous_visitors(client) -> None:  # type: ignore[no-untyped-def]
    task = make_task(name="Secret task")

    response = client.get(reverse("dashboard:task", args=[task.pk]))

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_it_links_the_dashboard_from_the_admin_header(admin_client) -> None:  # type: ignore[no-untyped-def]
    html = admin_client.get("/admin/").content.decode()

    assert f'href="{DASHBOARD}"' in html


# --- the way in: the site's root, the admin's links -----------------------------------


def test_the_site_root_sends_visitors_to_the_login_page(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/"


def test_the_site_root_sends_staff_to_the_dashboard(admin_client) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.get("/", follow=True)

    assert response.redirect_chain == [(DASHBOARD, 302)]
    assert "Fleet dashboard" in response.content.decode()


def test_the_site_root_sends_staff_who_may_not_see_the_dashboard_to_the_admin(client) -> None:  # type: ignore[no-untyped-def]
    client.force_login(User.objects.create_user("editor", password="x-editor-pass", is_staff=True))

    response = client.get("/")

    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_the_admin_s_view_site_link_goes_to_the_dashboard(admin_client) -> None:  # type: ignore[no-untyped-def]
    html = admin_client.get("/admin/").content.decode()

    assert f'<a href="{DASHBOARD}">View site</a>' in html


def test_the_admin_header_links_the_sandbox_when_it_is_served(admin_client) -> None:  # type: ignore[no-untyped-def]
    html = admin_client.get("/admin/").content.decode()

    assert '<a href="/sandbox/">Sandbox</a>' in html


@pytest.fixture
def sandbox_off(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The URLs as a server with SANDBOX_ENABLED off builds them."""
    import importlib

    import config.urls

    def rebuild(enabled: bool) -> None:
        settings.SANDBOX_ENABLED = enabled
        importlib.reload(config.urls)
        clear_url_caches()

    before = settings.SANDBOX_ENABLED
    rebuild(False)
    yield
    rebuild(before)


def test_the_admin_header_has_no_sandbox_link_when_it_is_off(admin_client, sandbox_off) -> None:  # type: ignore[no-untyped-def]
    html = admin_client.get("/admin/").content.decode()

    assert "Sandbox" not in html
    assert admin_client.get("/sandbox/").status_code == 404


# --- what it shows ------------------------------------------------------------------


def test_it_lists_tasks_with_status_heartbeat_counters_and_last_error(admin_client) -> None:  # type: ignore[no-untyped-def]
    task = running(make_task(make_bot(username="helper_bot"), name="Helpdesk"))
    BotTask.objects.filter(pk=task.pk).update(
        messages_processed=41, replies_sent=40, last_error="Telegram timed out", last_error_at=timezone.now()
    )

    html = admin_client.get(DASHBOARD).content.decode()

    row = re.search(rf'<tr data-task-id="{task.pk}">(.*?)</tr>', html, re.S).group(1)  # type: ignore[union-attr]
    assert 'class="badge badge-running"' in row
    assert "@helper_bot" in row and "Helpdesk" in row
    assert "12 s ago" in row
    assert ">41<" in row and ">40<" in row
    assert "Telegram timed out" in row
    assert ">Stop<" in row and ">Restart<" in row and ">Start<" not in row


def test_it_sums_up_today_s_messages_replies_errors_and_tasks(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    running(make_task(bot))
    make_task(status=BotTask.Status.FAILED)
    question = incoming(bot)
    reply(question)
    incoming(bot, "second", error="Gave up after 5 attempts")

    summary = admin_client.get(DATA).json()["summary"]

    assert summary["tasks_running"] == 1
    assert summary["tasks_failed"] == 1
    assert summary["messages_today"] == 2
    assert summary["replies_today"] == 1
    assert summary["errors_today"] == 1


def test_it_counts_a_reply_sent_in_parts_once(admin_client) -> None:  # type: ignore[no-untyped-def]
    question = incoming(make_bot())
    reply(question, "part 1")
    Message.objects.create(
        bot=question.bot, chat=question.chat, direction=Message.Direction.OUT, text="part 2",
        reply_to=question, telegram_message_id=99,
    )

    assert admin_client.get(DATA).json()["summary"]["replies_today"] == 1


def test_it_reports_ai_latency_percentiles_of_the_last_hour(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    for latency in range(100, 2100, 100):  # 20 replies: 100 ms ... 2000 ms
        reply(incoming(bot), latency_ms=latency)
    old = reply(incoming(bot), latency_ms=60_000)
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))

    data = admin_client.get(DATA).json()

    assert (data["summary"]["ai_latency_p50_ms"], data["summary"]["ai_latency_p95_ms"]) == (1000, 1900)
    latency_card = next(card for card in data["cards"] if card["key"] == "latency")
    assert latency_card["value"] == "1.0 / 1.9 s"


def test_it_shows_the_celery_queue_depths(admin_client, redis_client) -> None:  # type: ignore[no-untyped-def]
    redis_client.delete("scheduled")
    redis_client.lpush("scheduled", "a", "b", "c")
    try:
        queues = admin_client.get(DATA).json()["summary"]["queues"]
    finally:
        redis_client.delete("scheduled")

    assert queues["scheduled"] == 3
    assert set(queues) == {"polling", "replies", "scheduled", "default"}


def test_it_filters_tasks_by_status(admin_client) -> None:  # type: ignore[no-untyped-def]
    running(make_task(name="Up one"))
    make_task(name="Down one", status=BotTask.Status.FAILED)

    data = admin_client.get(DATA, {"status": "failed"}).json()

    assert [task["name"] for task in data["tasks"]] == ["Down one"]
    assert {tab["value"]: tab["count"] for tab in data["statuses"]}["running"] == 1


def test_it_pages_through_many_tasks(admin_client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DASHBOARD_TASKS_PER_PAGE = 50
    bulk_tasks(120)

    first, last = admin_client.get(DATA).json(), admin_client.get(DATA, {"page": 3}).json()

    assert len(first["tasks"]) == 50 and first["page"]["num_pages"] == 3 and first["page"]["next"] == 2
    assert len(last["tasks"]) == 20 and last["page"]["next"] is None


def bulk_tasks(count: int) -> None:
    start = Bot.objects.count()
    bots = Bot.objects.bulk_create(
        [Bot(name=f"Bulk bot {start + n}", token=make_token(), username=f"bulk{start + n}_bot") for n in range(count)]
    )
    BotTask.objects.bulk_create(
        [BotTask(name=f"Bulk task {bot.pk:05d}", bot=bot, status=BotTask.Status.RUNNING if n % 2 else BotTask.Status.STOPPED)
         for n, bot in enumerate(bots)]
    )


def test_it_runs_as_many_queries_for_300_tasks_as_for_5(admin_client) -> None:  # type: ignore[no-untyped-def]
    bulk_tasks(5)
    admin_client.get(DATA)  # warm up: session, content types, the worker cache

    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(DATA).status_code == 200
    bulk_tasks(295)
    with CaptureQueriesContext(connection) as many:
        data = admin_client.get(DATA).json()

    assert len(data["tasks"]) == 50 and data["page"]["count"] == 300
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_it_escapes_html_in_names_and_errors(admin_client) -> None:  # type: ignore[no-untyped-def]
    task = make_task(name="<script>alert('name')</script>")
    BotTask.objects.filter(pk=task.pk).update(last_error="<img src=x onerror=alert(1)>")

    html = admin_client.get(DASHBOARD).content.decode()

    assert "<script>alert('name')</script>" not in html
    assert "&lt;script&gt;" in html
    assert "<img src=x" not in html


def test_it_never_shows_the_bot_token_or_the_api_key(admin_client) -> None:  # type: ignore[no-untyped-def]
    token, key = make_token(), "AIzaSyD-dashboard-test-key-0123456789ab"
    bot = make_bot(token=token, credential=make_credential(api_key=key))
    task = make_task(bot)

    pages = [admin_client.get(DASHBOARD), admin_client.get(DATA), admin_client.get(reverse("dashboard:task", args=[task.pk]))]

    for page in pages:
        body = page.content.decode()
        assert page.status_code == 200
        assert token not in body and token.split(":")[1] not in body and key not in body


def task_row_html(html: str, task: BotTask) -> str:
    return re.search(rf'<tr data-task-id="{task.pk}">(.*?)</tr>', html, re.S).group(1)  # type: ignore[union-attr]


def test_it_shows_when_a_scheduled_task_will_start(admin_client) -> None:  # type: ignore[no-untyped-def]
    start = timezone.now() + timedelta(hours=3)
    task = task_start(task=make_task(name="Night shift", start_at=start))  # pressed Start early

    row = task_row_html(admin_client.get(DASHBOARD).content.decode(), task)
    data = admin_client.get(DATA).json()

    assert 'class="badge badge-scheduled"' in row and f"starts {time_label(start)}" in row
    assert ">Stop<" in row and ">Start<" not in row  # Stop cancels the start
    [shown] = data["tasks"]
    assert (shown["status"], shown["window"]) == ("scheduled", f"starts {time_label(start)}")
    assert {tab["value"]: tab["count"] for tab in data["statuses"]}["scheduled"] == 1
    assert "1 scheduled to start" in {card["key"]: card["hint"] for card in data["cards"]}["running"]


def test_start_pressed_before_the_start_time_says_when_the_task_will_start(admin_client) -> None:  # type: ignore[no-untyped-def]
    start = timezone.now() + timedelta(hours=3)
    task = make_task(name="Night shift", start_at=start)

    response = admin_client.post(
        reverse("dashboard:task-action", args=[task.pk, "start"]), HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 200
    assert response.json() == {
        "ok": True, "message": f"Scheduled task #{task.pk} “Night shift”: starts {time_label(start)}.",
    }
    assert BotTask.objects.get(pk=task.pk).status == BotTask.Status.SCHEDULED


def test_it_shows_a_completed_task_and_when_it_ended(admin_client) -> None:  # type: ignore[no-untyped-def]
    until = timezone.now() + timedelta(hours=1)
    task = running(make_task(name="Campaign", run_until=until))
    before = task_row_html(admin_client.get(DASHBOARD).content.decode(), task)
    BotTask.objects.filter(pk=task.pk).update(run_until=timezone.now() - timedelta(seconds=1))

    supervisor.run_windows_apply()  # what beat runs: the run-until time passed

    task.refresh_from_db()
    row = task_row_html(admin_client.get(DASHBOARD).content.decode(), task)
    data = admin_client.get(DATA).json()
    page = admin_client.get(reverse("dashboard:task", args=[task.pk])).content.decode()
    assert f"runs until {time_label(until)}" in before
    assert 'class="badge badge-completed"' in row and f"completed {time_label(task.stopped_at)}" in row  # type: ignore[arg-type]
    assert ">Start<" in row and ">Stop<" not in row
    assert {tab["value"]: tab["count"] for tab in data["statuses"]}["completed"] == 1
    assert 'id="task-status">completed<' in page and f"completed {time_label(task.stopped_at)}" in page  # type: ignore[arg-type]


# --- the buttons ----------------------------------------------------------------------


def test_it_stops_a_running_task_when_stop_is_pressed(admin_client) -> None:  # type: ignore[no-untyped-def]
    task = running(make_task())

    response = admin_client.post(
        reverse("dashboard:task-action", args=[task.pk, "stop"]), HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 200 and response.json()["ok"] is True
    assert BotTask.objects.get(pk=task.pk).status == BotTask.Status.STOPPED


def test_it_redirects_a_plain_form_post_back_with_a_message(admin_client) -> None:  # type: ignore[no-untyped-def]
    task = running(make_task(name="Helpdesk"))

    response = admin_client.post(
        reverse("dashboard:task-action", args=[task.pk, "stop"]), {"next": "/dashboard/?status=running"},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == "/dashboard/?status=running"
    assert f"Stopped task #{task.pk} “Helpdesk”." in response.content.decode()


def test_it_explains_why_a_task_cannot_be_stopped(admin_client) -> None:  # type: ignore[no-untyped-def]
    task = make_task(status=BotTask.Status.STOPPED)

    response = admin_client.post(
        reverse("dashboard:task-action", args=[task.pk, "stop"]), HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 409
    assert "is not running" in response.json()["message"]


def test_it_refuses_stop_without_a_csrf_token() -> None:
    task = running(make_task())
    client = staff_client(can_change_tasks=True, csrf_checks=True)

    response = client.post(reverse("dashboard:task-action", args=[task.pk, "stop"]))

    assert response.status_code == 403
    assert BotTask.objects.get(pk=task.pk).status == BotTask.Status.RUNNING


def test_it_refuses_start_without_a_csrf_token() -> None:
    task = make_task(status=BotTask.Status.STOPPED)
    client = staff_client(can_change_tasks=True, csrf_checks=True)

    response = client.post(reverse("dashboard:task-action", args=[task.pk, "start"]))

    assert response.status_code == 403
    assert BotTask.objects.get(pk=task.pk).status == BotTask.Status.STOPPED


def test_it_accepts_stop_with_the_page_s_csrf_token() -> None:
    task = running(make_task())
    client = staff_client(can_change_tasks=True, csrf_checks=True)
    page = client.get(DASHBOARD).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

    response = client.post(reverse("dashboard:task-action", args=[task.pk, "stop"]), {"csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert BotTask.objects.get(pk=task.pk).status == BotTask.Status.STOPPED


def test_it_refuses_actions_to_staff_without_the_change_permission() -> None:
    task = running(make_task(name="Helpdesk"))
    client = staff_client(can_change_tasks=False)

    html = client.get(DASHBOARD).content.decode()
    response = client.post(reverse("dashboard:task-action", args=[task.pk, "stop"]), HTTP_ACCEPT="application/json")

    assert "Helpdesk" in html and ">Stop<" not in html
    assert response.status_code == 403
    assert BotTask.objects.get(pk=task.pk).status == BotTask.Status.RUNNING


def test_it_starts_a_task_through_the_task_service(admin_client, emulated_bot, bot_task) -> None:  # type: ignore[no-untyped-def]
    # In a test transaction the poll cycle's on_commit enqueue never fires: no worker needed.
    response = admin_client.post(
        reverse("dashboard:task-action", args=[bot_task.pk, "start"]), HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 200, response.content
    task = BotTask.objects.select_related("bot").get(pk=bot_task.pk)
    assert task.status == BotTask.Status.RUNNING
    assert task.bot.username == emulated_bot[1]["username"]  # getMe went to the emulator


# --- the task page --------------------------------------------------------------------


def test_it_shows_a_task_s_settings_conversation_and_errors(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot(username="helper_bot", credential=make_credential(name="Team Gemini"))
    task = make_task(bot, name="Helpdesk", max_response_length=900)
    sender = TelegramUser.objects.create(telegram_id=77, first_name="Alice")
    question = incoming(bot, "What are your opening hours?", sender=sender)
    reply(question, "We open at nine.", latency_ms=1234)
    reply(incoming(bot, "And on Sunday?"), "Sorry, I can't answer right now.", latency_ms=None,
          error="The AI provider timed out")

    html = admin_client.get(reverse("dashboard:task", args=[task.pk])).content.decode()

    assert "Team Gemini" in html and "900 characters" in html
    assert "What are your opening hours?" in html and "We open at nine." in html
    assert "Alice" in html and "1234 ms" in html
    assert "The AI provider timed out" in html
    assert 'id="replies-chart"' in html


def test_it_shows_at_most_the_last_50_messages(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    task = make_task(bot)
    for n in range(60):
        incoming(bot, f"message number {n:02d}")

    html = admin_client.get(reverse("dashboard:task", args=[task.pk])).content.decode()

    assert "message number 59" in html and "message number 10" in html
    assert "message number 09" not in html


def test_it_draws_replies_per_hour_as_svg_bars(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    task = make_task(bot)
    for _ in range(3):
        reply(incoming(bot))
    earlier = reply(incoming(bot))
    Message.objects.filter(pk=earlier.pk).update(created_at=timezone.now() - timedelta(hours=5))

    html = admin_client.get(reverse("dashboard:task", args=[task.pk])).content.decode()

    svg = re.search(r'<svg class="dash-chart".*?</svg>', html, re.S).group(0)  # type: ignore[union-attr]
    bars = re.findall(r"<title>[\d:]+: (\d+) repl", svg)
    assert len(bars) == 24
    assert bars[-1] == "3" and bars[-6] == "1"
    assert sum(int(n) for n in bars) == 4


def test_it_answers_404_for_an_unknown_task(admin_client) -> None:  # type: ignore[no-untyped-def]
    assert admin_client.get(reverse("dashboard:task", args=[999_999])).status_code == 404
