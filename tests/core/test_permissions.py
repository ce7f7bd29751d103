"""The dashboard asks for the admin's own permissions: `bots.view_bottask` for the
dashboard, its JSON feed and a task's page; `conversations.view_message` for what
people wrote and who they are; `bots.change_bottask` for Start and Stop."""

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from bots.models import BotTask
from conversations.models import Chat, Message, TelegramUser
from dashboard import health
from tests.factories import make_bot, make_task

pytestmark = pytest.mark.django_db

DASHBOARD, DATA = "/dashboard/", "/dashboard/data.json"
SECRET_QUESTION = "Can you keep my diagnosis between us?"
SECRET_ANSWER = "Of course, nobody else will read this."
PERSON, CHAT_TITLE = "Alice", "Alice Liddell"


@pytest.fixture(autouse=True)
def _no_live_workers() -> Iterator[None]:
    cache.set(health.WORKERS_CACHE_KEY, {"names": []}, 300)  # no ping to wait for
    yield
    cache.clear()


@pytest.fixture
def task() -> BotTask:
    """A task whose bot had a private conversation, one reply of which failed."""
    task = make_task(make_bot(name="Clinic bot"), name="Clinic helpdesk", messages_processed=2,
                     replies_sent=1, error_count=1)
    bot = task.bot
    chat = Chat.objects.create(bot=bot, telegram_id=4242, type=Chat.Type.PRIVATE, title=CHAT_TITLE)
    alice = TelegramUser.objects.create(telegram_id=4242, first_name=PERSON)
    question = Message.objects.create(bot=bot, chat=chat, direction=Message.Direction.IN,
                                      text=SECRET_QUESTION, sender=alice)
    Message.objects.create(bot=bot, chat=chat, direction=Message.Direction.OUT, text=SECRET_ANSWER,
                           reply_to=question, telegram_message_id=7, ai_latency_ms=640)
    Message.objects.create(bot=bot, chat=chat, direction=Message.Direction.OUT, text="Sorry…",
                           reply_to=question, error="The AI provider timed out")
    return task


def staff(*codenames: str, username: str = "operator") -> Client:
    user = User.objects.create_user(username, password="x-operator-pass", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def page(client: Client, task: BotTask) -> tuple[int, str]:
    response = client.get(reverse("dashboard:task", args=[task.pk]))
    return response.status_code, response.content.decode()


def test_staff_without_permissions_read_no_task_and_no_conversation(task) -> None:  # type: ignore[no-untyped-def]
    client = staff()

    dashboard, data = client.get(DASHBOARD), client.get(DATA)
    status, html = page(client, task)

    # As the admin's own Messages page answers them:
    assert client.get("/admin/conversations/message/").status_code == 403
    assert dashboard.status_code == data.status_code == status == 403
    for body in (dashboard.content.decode(), data.content.decode(), html):
        assert "Clinic helpdesk" not in body and SECRET_QUESTION not in body and PERSON not in body
    assert "view bot task" in data.json()["error"]


def test_staff_who_may_view_tasks_see_the_dashboard_and_its_json(task) -> None:  # type: ignore[no-untyped-def]
    client = staff("view_bottask")

    dashboard, data = client.get(DASHBOARD), client.get(DATA)

    assert dashboard.status_code == data.status_code == 200
    assert "Clinic helpdesk" in dashboard.content.decode()
    assert [row["name"] for row in data.json()["tasks"]] == ["Clinic helpdesk"]


def test_the_change_permission_opens_the_dashboard_as_it_opens_the_admin(task) -> None:  # type: ignore[no-untyped-def]
    client = staff("change_bottask")

    assert client.get(DASHBOARD).status_code == client.get(DATA).status_code == 200
    assert client.get("/admin/bots/bottask/").status_code == 200


def test_a_task_viewer_without_view_message_sees_its_health_but_no_message(task) -> None:  # type: ignore[no-untyped-def]
    status, html = page(staff("view_bottask"), task)

    assert status == 200
    assert "Clinic helpdesk" in html and 'id="replies-chart"' in html  # the task's health
    assert "The AI provider timed out" in html  # its errors
    assert SECRET_QUESTION not in html and SECRET_ANSWER not in html  # no texts
    assert PERSON not in html and CHAT_TITLE not in html  # no names
    assert 'id="conversation"' not in html
    assert "“Can view message” permission" in html  # says why


def test_a_task_viewer_who_may_view_messages_reads_the_conversation(task) -> None:  # type: ignore[no-untyped-def]
    status, html = page(staff("view_bottask", "view_message"), task)

    assert status == 200
    assert SECRET_QUESTION in html and SECRET_ANSWER in html
    assert PERSON in html and CHAT_TITLE in html


def test_view_message_alone_opens_no_task_page(task) -> None:  # type: ignore[no-untyped-def]
    status, html = page(staff("view_message"), task)

    assert status == 403 and SECRET_QUESTION not in html


def test_start_and_stop_still_need_the_change_permission(task) -> None:  # type: ignore[no-untyped-def]
    BotTask.objects.filter(pk=task.pk).update(status=BotTask.Status.RUNNING)
    viewer = staff("view_bottask")

    html = viewer.get(DASHBOARD).content.decode()
    response = viewer.post(reverse("dashboard:task-action", args=[task.pk, "stop"]),
                           HTTP_ACCEPT="application/json")

    assert ">Stop<" not in html and ">Stop<" not in page(viewer, task)[1]
    assert response.status_code == 403
    assert BotTask.objects.get(pk=task.pk).status == BotTask.Status.RUNNING


def test_the_admin_header_links_the_dashboard_only_for_those_who_may_see_it(task) -> None:  # type: ignore[no-untyped-def]
    # A staff user who may only manage personas: the admin opens, the dashboard not.
    html = staff("view_persona").get("/admin/").content.decode()

    assert f'href="{DASHBOARD}">Dashboard<' not in html
    viewer = staff("view_bottask", username="viewer")
    assert f'href="{DASHBOARD}">Dashboard<' in viewer.get("/admin/").content.decode()
