"""The demo: seeding, wiring to the emulator, and the sandbox chat API."""

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from bots.models import Bot, BotTask
from bots.services import task_start
from conversations.models import Persona
from credentials.models import AICredential
from emulators.telegram import EmulatorClient
from sandbox.conversation import DEMO_GROUP_ID, GROUP_MEMBERS
from sandbox.demo import DEMO_BOT_USERNAME, demo_seed, demo_wire
from sandbox.emulator import emulator_bot_api_url, emulator_client
from tests.factories import bot_admin_form, make_bot, make_task, make_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _sandbox_on_the_test_emulator(settings, telegram_api) -> None:  # type: ignore[no-untyped-def]
    settings.SANDBOX_EMULATOR_URL = telegram_api.url


def test_it_seeds_the_demo_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)

    first, second = demo_seed(), demo_seed()

    assert first.bot.pk == second.bot.pk
    assert (Bot.objects.count(), BotTask.objects.count(), Persona.objects.count()) == (1, 1, 1)
    assert AICredential.objects.get().provider == AICredential.Provider.OFFLINE


def test_it_uses_gemini_when_a_key_is_in_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSyDEMO-key-from-the-environment-0001")

    credential = demo_seed().credential

    assert credential.provider == AICredential.Provider.GEMINI
    assert credential.api_key.reveal() == "AIzaSyDEMO-key-from-the-environment-0001"


def test_it_wires_the_demo_bot_to_a_fresh_emulator_and_starts_it(telegram_api) -> None:  # type: ignore[no-untyped-def]
    setup = demo_seed()
    Bot.objects.filter(pk=setup.bot.pk).update(update_offset=999_999_999_999)  # from an old run

    task = demo_wire(client=emulator_client(), setup=setup)

    assert task.status == BotTask.Status.RUNNING
    bot = Bot.objects.get(pk=setup.bot.pk)
    assert (bot.username, bot.update_offset) == (DEMO_BOT_USERNAME, 0)


def test_it_keeps_a_stopped_demo_task_stopped(telegram_api) -> None:  # type: ignore[no-untyped-def]
    setup = demo_seed()
    BotTask.objects.filter(pk=setup.task.pk).update(status=BotTask.Status.STOPPED)

    assert demo_wire(client=emulator_client(), setup=setup).status == BotTask.Status.STOPPED


def test_the_sandbox_is_for_staff_only(client, emulated_bot) -> None:  # type: ignore[no-untyped-def]
    bot, _ = emulated_bot

    page = client.get(reverse("sandbox:chat"))
    data = client.get(reverse("sandbox:messages", args=[bot.pk]))
    sent = client.post(reverse("sandbox:send", args=[bot.pk]), "{}", content_type="application/json")

    assert page.status_code == data.status_code == sent.status_code == 302
    assert "/admin/login/" in page["Location"]


def send(client, bot: Bot, **body: object):  # type: ignore[no-untyped-def]
    return client.post(
        reverse("sandbox:send", args=[bot.pk]), json.dumps(body), content_type="application/json"
    )


def test_a_private_message_reaches_the_bot_as_a_telegram_update(admin_client, telegram_api, emulated_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot

    assert send(admin_client, bot, text="Hi there", chat="private").status_code == 200

    update = telegram_api.updates(info["token"])[-1]["update"]
    assert update["message"]["text"] == "Hi there"
    assert update["message"]["chat"]["type"] == "private"
    lines = admin_client.get(reverse("sandbox:messages", args=[bot.pk]) + "?chat=private").json()
    assert [line["text"] for line in lines["messages"]] == ["Hi there"]


def test_a_group_mention_becomes_a_real_mention_entity(admin_client, telegram_api, emulated_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    Bot.objects.filter(pk=bot.pk).update(username=info["username"])
    bot.refresh_from_db()
    alice = next(iter(GROUP_MEMBERS))

    send(admin_client, bot, text=f"hey @{info['username']} ping", chat="group", as_member=alice)

    message = telegram_api.updates(info["token"])[-1]["update"]["message"]
    assert message["chat"]["id"] == DEMO_GROUP_ID and message["from"]["first_name"] == "Alice"
    mention = message["entities"][0]
    assert mention["type"] == "mention"
    assert message["text"][mention["offset"] : mention["offset"] + mention["length"]] == f"@{info['username']}"


def test_it_refuses_an_empty_or_overlong_message(admin_client, emulated_bot) -> None:  # type: ignore[no-untyped-def]
    bot, _ = emulated_bot

    empty, long = send(admin_client, bot, text="  "), send(admin_client, bot, text="x" * 5000)

    assert empty.status_code == long.status_code == 400
    assert "at most 4096" in long.json()["error"]


def test_it_says_so_when_the_emulator_is_down(admin_client, emulated_bot, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SANDBOX_EMULATOR_URL = "http://127.0.0.1:9"
    bot, _ = emulated_bot
    Bot.objects.filter(pk=bot.pk).update(api_base_url="http://127.0.0.1:9/bot")  # it lives there

    response = admin_client.get(reverse("sandbox:messages", args=[bot.pk]))

    assert response.status_code == 503
    assert "emulator is not answering" in response.json()["error"]


# --- who and which bots ----------------------------------------------------------------


def staff(*codenames: str) -> Client:
    user = User.objects.create_user("operator", password="x-operator-pass", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def emulator_calls(monkeypatch) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every control call the sandbox makes to the emulator, with its arguments."""
    calls: list[dict] = []
    real = EmulatorClient._invoke

    def recording(self, op, kwargs, **options):  # type: ignore[no-untyped-def]
        calls.append({"op": op, **kwargs})
        return real(self, op, kwargs, **options)

    monkeypatch.setattr(EmulatorClient, "_invoke", recording)
    return calls


def test_staff_who_may_not_view_bots_get_no_sandbox(telegram_api, emulated_bot, emulator_calls) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    client = staff("view_bottask")
    before = len(telegram_api.updates(info["token"]))

    page = client.get(reverse("sandbox:chat"))
    data = client.get(reverse("sandbox:messages", args=[bot.pk]))
    sent = send(client, bot, text="Let me in")

    assert page.status_code == data.status_code == sent.status_code == 403
    assert "view bot" in sent.json()["error"]
    assert emulator_calls == [] and len(telegram_api.updates(info["token"])) == before


def test_staff_who_may_view_bots_chat_in_the_sandbox(telegram_api, emulated_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    client = staff("view_bot")

    page = client.get(reverse("sandbox:chat"))
    sent = send(client, bot, text="Hello from a viewer")

    assert page.status_code == 200 and bot.name in page.content.decode()
    assert sent.status_code == 200
    assert telegram_api.updates(info["token"])[-1]["update"]["message"]["text"] == "Hello from a viewer"


@pytest.mark.parametrize("api_base_url", ["", "https://api.telegram.org/bot", "http://127.0.0.1:9/bot"])
def test_it_never_sends_the_token_of_a_bot_living_elsewhere(admin_client, telegram_api, emulator_calls, api_base_url) -> None:  # type: ignore[no-untyped-def]
    token = make_token()
    real_bot = make_bot(name="Production bot", token=token, api_base_url=api_base_url)

    page = admin_client.get(reverse("sandbox:chat"))
    data = admin_client.get(reverse("sandbox:messages", args=[real_bot.pk]))
    sent = send(admin_client, real_bot, text="Hi", chat="private")

    assert data.status_code == sent.status_code == 404
    assert "Bot API base URL" in sent.json()["error"]
    assert "Production bot" not in page.content.decode()
    assert not any(token in json.dumps(call) for call in emulator_calls)
    assert token not in json.dumps(telegram_api.bots())


# --- a bot added in the admin -------------------------------------------------------------


def bot_added_in_the_admin(admin_client, token: str) -> Bot:  # type: ignore[no-untyped-def]
    response = admin_client.post("/admin/bots/bot/add/", bot_admin_form(
        name="Admin-made bot", token=token, api_base_url=emulator_bot_api_url(),
    ))
    assert response.status_code == 302, response.content.decode()[-3000:]
    return Bot.objects.get(name="Admin-made bot")


def test_a_bot_added_in_the_admin_on_the_emulator_can_be_used_in_the_sandbox(admin_client, telegram_api) -> None:  # type: ignore[no-untyped-def]
    token = make_token()
    bot = bot_added_in_the_admin(admin_client, token)

    sent = send(admin_client, bot, text="Hello, new bot", chat="private")
    lines = admin_client.get(reverse("sandbox:messages", args=[bot.pk]) + "?chat=private")

    assert sent.status_code == 200, sent.content
    assert telegram_api.updates(token)[-1]["update"]["message"]["text"] == "Hello, new bot"
    assert [line["text"] for line in lines.json()["messages"]] == ["Hello, new bot"]


def test_opening_the_sandbox_registers_the_bot_so_it_can_start(admin_client, telegram_api) -> None:  # type: ignore[no-untyped-def]
    bot = bot_added_in_the_admin(admin_client, make_token())
    task = make_task(bot)

    page = admin_client.get(reverse("sandbox:chat"))
    task = task_start(task=task)  # getMe goes to the emulator

    assert "Admin-made bot" in page.content.decode()
    assert task.status == BotTask.Status.RUNNING
    assert Bot.objects.get(pk=bot.pk).username  # filled from the emulator's getMe


def test_it_says_what_the_emulator_could_not_do(admin_client, emulated_bot) -> None:  # type: ignore[no-untyped-def]
    bot, _ = emulated_bot

    response = send(admin_client, bot, text="About that…", chat="group", reply_to=987_654)

    assert response.status_code == 409
    assert "could not do that" in response.json()["error"]
