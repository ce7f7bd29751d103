"""The message log in the admin: messages, chats, Telegram users, deliveries and
scheduled runs are read, never added or edited; newest first; their text readable;
every name isolated in <bdi> (admin, dashboard and task page)."""

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bots.models import Bot
from conversations.models import (
    Chat,
    Delivery,
    Message,
    ScheduledMessage,
    ScheduledRun,
    TelegramUser,
)
from dashboard import health
from tests.factories import make_bot, make_task

pytestmark = pytest.mark.django_db

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: flips whatever follows it, unless isolated

LOG_MODELS = [
    "conversations_message", "conversations_chat", "conversations_telegramuser",
    "conversations_delivery", "conversations_scheduledrun",
]


@pytest.fixture(autouse=True)
def _no_live_workers() -> Iterator[None]:
    # The dashboard asks the workers how many there are; none answer here, at once.
    cache.set(health.WORKERS_CACHE_KEY, {"names": []}, 300)
    yield
    cache.clear()


class Log:
    """One row of each kind the log holds, around one bot."""

    def __init__(self, bot: Bot | None = None, *, title: str = "Book club", name: str = "Alice") -> None:
        self.bot = bot or make_bot()
        self.user = TelegramUser.objects.create(telegram_id=5000 + self.bot.pk, first_name=name)
        self.chat = Chat.objects.create(
            bot=self.bot, telegram_id=-100 - self.bot.pk, type=Chat.Type.SUPERGROUP, title=title,
        )
        self.message = Message.objects.create(
            bot=self.bot, chat=self.chat, sender=self.user, direction=Message.Direction.IN,
            text="What time is the meeting?",
        )
        self.scheduled = ScheduledMessage.objects.create(
            name="Weekly reminder", bot=self.bot, text="Meeting tonight",
            run_at=timezone.now() + timedelta(days=1),
        )
        self.run = ScheduledRun.objects.create(
            scheduled=self.scheduled, slot=timezone.now(), text="Meeting tonight",
        )
        self.delivery = Delivery.objects.create(run=self.run, chat=self.chat)

    def row(self, model: str) -> object:
        return {
            "conversations_message": self.message, "conversations_chat": self.chat,
            "conversations_telegramuser": self.user, "conversations_delivery": self.delivery,
            "conversations_scheduledrun": self.run,
        }[model]


def html(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.status_code
    return str(response.content.decode())


def result_rows(page: str) -> list[str]:
    """The changelist's rows, top to bottom, as HTML."""
    body = page.split('<table id="result_list">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr>.*?</tr>", body.split("<tbody>", 1)[1], flags=re.S)


def staff_client(*permissions: str) -> Client:
    user = User.objects.create_user("staff", password="x", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


# --- read-only --------------------------------------------------------------------------


@pytest.mark.parametrize("model", LOG_MODELS)
def test_it_offers_no_way_to_add_to_the_log(admin_client, model: str) -> None:  # type: ignore[no-untyped-def]
    Log()

    listing = html(admin_client.get(reverse(f"admin:{model}_changelist")))

    assert reverse(f"admin:{model}_add") not in listing
    assert admin_client.get(reverse(f"admin:{model}_add")).status_code == 403


@pytest.mark.parametrize("model", LOG_MODELS)
def test_it_shows_a_log_row_read_only(admin_client, model: str) -> None:  # type: ignore[no-untyped-def]
    row = Log().row(model)
    url = reverse(f"admin:{model}_change", args=[row.pk])  # type: ignore[attr-defined]

    page = html(admin_client.get(url))

    assert "<h1>View " in page
    assert 'name="_save"' not in page
    assert not re.search(r'<(input|textarea|select)[^>]+name="(?!csrfmiddlewaretoken)', page)


def test_it_refuses_an_edit_of_a_message_s_text(admin_client) -> None:  # type: ignore[no-untyped-def]
    log = Log()

    response = admin_client.post(
        reverse("admin:conversations_message_change", args=[log.message.pk]),
        {"text": "I never said that", "direction": "in", "kind": "text"},
    )

    assert response.status_code == 403
    log.message.refresh_from_db()
    assert log.message.text == "What time is the meeting?"


def test_it_keeps_a_chat_s_active_flag_to_telegram(admin_client) -> None:  # type: ignore[no-untyped-def]
    """Telegram's word (blocked, removed, a new message): an operator's switch would be
    undone by the chat's next message, so the page shows it and offers no switch."""
    log = Log()
    url = reverse("admin:conversations_chat_change", args=[log.chat.pk])

    page = html(admin_client.get(url))
    response = admin_client.post(url, {"is_active": ""})

    assert "field-is_active" in page and 'name="is_active"' not in page
    assert response.status_code == 403
    log.chat.refresh_from_db()
    assert log.chat.is_active


def test_it_lets_only_superusers_delete_chats_messages_and_users(admin_client) -> None:  # type: ignore[no-untyped-def]
    log = Log()
    staff = staff_client("view_message", "delete_message")
    url = reverse("admin:conversations_message_delete", args=[log.message.pk])

    assert staff.get(url).status_code == 403
    assert staff.get(reverse("admin:conversations_message_changelist")).status_code == 200
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not Message.objects.filter(pk=log.message.pk).exists()


@pytest.mark.parametrize("model", ["conversations_delivery", "conversations_scheduledrun"])
def test_it_never_deletes_a_broadcast_s_records(admin_client, model: str) -> None:  # type: ignore[no-untyped-def]
    """A run is the claim on its slot: deleted, a re-delivered firing would send again."""
    row = Log().row(model)

    response = admin_client.get(reverse(f"admin:{model}_delete", args=[row.pk]))  # type: ignore[attr-defined]

    assert response.status_code == 403


# --- newest first, text readable --------------------------------------------------------


def test_it_lists_messages_newest_first(admin_client) -> None:  # type: ignore[no-untyped-def]
    log = Log()
    now = timezone.now()
    for age, text in ((3, "oldest"), (2, "middle"), (1, "newest")):
        message = Message.objects.create(
            bot=log.bot, chat=log.chat, direction=Message.Direction.IN, text=text
        )
        Message.objects.filter(pk=message.pk).update(created_at=now - timedelta(minutes=age))

    rows = result_rows(html(admin_client.get(reverse("admin:conversations_message_changelist"))))

    texts = [next(t for t in ("newest", "middle", "oldest", "meeting") if t in row) for row in rows]
    assert texts == ["meeting", "newest", "middle", "oldest"]


def test_it_lists_chats_and_users_by_their_latest_activity(admin_client) -> None:  # type: ignore[no-untyped-def]
    """The chat (the person) seen last comes first, however long ago it was created."""
    recent, quiet = Log(title="Recent chat", name="Nina"), Log(title="Quiet chat", name="Olga")
    now = timezone.now()
    Chat.objects.filter(pk=recent.chat.pk).update(last_message_at=now - timedelta(minutes=5))
    Chat.objects.filter(pk=quiet.chat.pk).update(last_message_at=now - timedelta(hours=2))
    TelegramUser.objects.filter(pk=quiet.user.pk).update(last_seen_at=now - timedelta(hours=2))
    Chat.objects.create(bot=quiet.bot, telegram_id=1, type=Chat.Type.PRIVATE, title="Never spoke")

    chats = result_rows(html(admin_client.get(reverse("admin:conversations_chat_changelist"))))
    users = result_rows(html(admin_client.get(reverse("admin:conversations_telegramuser_changelist"))))

    assert ["Recent chat" in chats[0], "Quiet chat" in chats[1], "Never spoke" in chats[2]] == [True] * 3
    assert "Nina" in users[0] and "Olga" in users[1]


def test_it_lists_runs_and_deliveries_newest_first(admin_client) -> None:  # type: ignore[no-untyped-def]
    first, second = Log(title="First chat"), Log(title="Second chat")
    ScheduledRun.objects.filter(pk=first.run.pk).update(slot=timezone.now() - timedelta(days=1))

    runs = result_rows(html(admin_client.get(reverse("admin:conversations_scheduledrun_changelist"))))
    deliveries = result_rows(html(admin_client.get(reverse("admin:conversations_delivery_changelist"))))

    assert f"/{second.run.pk}/" in runs[0] and f"/{first.run.pk}/" in runs[1]
    assert "Second chat" in deliveries[0] and "First chat" in deliveries[1]


def test_it_shows_enough_of_a_message_s_text(admin_client) -> None:  # type: ignore[no-untyped-def]
    log = Log()
    text = " ".join(f"word{n}" for n in range(80))  # about 500 characters
    Message.objects.create(bot=log.bot, chat=log.chat, direction=Message.Direction.OUT, text=text)

    page = html(admin_client.get(reverse("admin:conversations_message_changelist")))

    assert f'<bdi class="log-text">{text}</bdi>' in page


def test_it_shows_where_a_long_message_s_text_is_cut(admin_client) -> None:  # type: ignore[no-untyped-def]
    log = Log()
    Message.objects.create(
        bot=log.bot, chat=log.chat, direction=Message.Direction.OUT, text="x " * 2000
    )

    page = html(admin_client.get(reverse("admin:conversations_message_changelist")))

    shown = re.search(r'<bdi class="log-text">(x [^<]*)</bdi>', page)
    assert shown and shown.group(1).endswith("…") and 500 <= len(shown.group(1)) <= 600


def test_it_makes_the_admin_s_tables_wrap_long_names(admin_client) -> None:  # type: ignore[no-untyped-def]
    Log()

    for url in (reverse("admin:conversations_chat_changelist"), reverse("admin:bots_bot_changelist")):
        assert "dashboard/admin.css" in html(admin_client.get(url))


# --- names in <bdi> ----------------------------------------------------------------------


def test_it_isolates_names_in_the_admin_s_lists(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot(name=f"{RLO}Flipper bot")
    make_task(bot, name=f"{RLO}Flipper task")
    log = Log(bot, title=f"{RLO}Evil group", name=f"{RLO}Mallory")

    pages = {
        "conversations_message": [f"<bdi>{RLO}Evil group</bdi>", f"<bdi>{RLO}Mallory</bdi>",
                                  f"<bdi>{RLO}Flipper bot</bdi>"],
        "conversations_chat": [f"<bdi>{RLO}Evil group</bdi>", f"<bdi>{RLO}Flipper bot</bdi>"],
        "conversations_telegramuser": [f"<bdi>{RLO}Mallory</bdi>"],
        "conversations_delivery": [f"<bdi>{RLO}Evil group</bdi>"],
        "bots_bot": [f"<bdi>{RLO}Flipper bot</bdi>"],
        "bots_bottask": [f"<bdi>{RLO}Flipper task</bdi>", f"<bdi>{RLO}Flipper bot</bdi>"],
    }
    for model, expected in pages.items():
        page = html(admin_client.get(reverse(f"admin:{model}_changelist")))
        for name in expected:
            assert name in page, (model, name)
    assert log.chat.title.startswith(RLO)


def test_it_isolates_names_on_the_dashboard_and_the_task_page(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot(name=f"{RLO}Flipper bot")
    task = make_task(bot, name=f"{RLO}Flipper task")
    log = Log(bot, title=f"{RLO}Evil group", name=f"{RLO}Mallory")
    Message.objects.filter(pk=log.message.pk).update(text=f"{RLO}evil text", error=f"{RLO}evil error")

    dashboard = html(admin_client.get("/dashboard/"))
    detail = html(admin_client.get(reverse("dashboard:task", args=[task.pk])))

    assert f"<bdi>{RLO}Flipper task</bdi>" in dashboard
    assert f"<bdi>{RLO}Flipper bot</bdi>" in dashboard
    assert f"<h1><bdi>{RLO}Flipper task</bdi></h1>" in detail
    for name in ("Flipper bot", "Evil group", "Mallory", "evil text", "evil error"):
        assert f"<bdi>{RLO}{name}</bdi>" in detail, name
