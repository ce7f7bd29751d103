import pytest
from django.urls import reverse

from bots.models import Bot
from credentials.models import AICredential
from tests.factories import make_bot, make_credential, make_persona, make_task, make_token

pytestmark = pytest.mark.django_db

GEMINI_KEY = "AIzaSyA-admin-test-key-0123456789abcdef"


def test_it_never_renders_the_bot_token(admin_client) -> None:  # type: ignore[no-untyped-def]
    token = make_token()
    bot = make_bot(token=token)

    pages = [
        admin_client.get(reverse("admin:bots_bot_changelist")),
        admin_client.get(reverse("admin:bots_bot_change", args=[bot.pk])),
    ]

    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        assert token not in html and token.split(":")[1] not in html
    assert "••••" + token[-4:] in pages[1].content.decode()  # the masked hint


def test_it_never_renders_the_api_key(admin_client) -> None:  # type: ignore[no-untyped-def]
    credential = make_credential(provider=AICredential.Provider.GEMINI, api_key=GEMINI_KEY)

    for url in (
        reverse("admin:credentials_aicredential_changelist"),
        reverse("admin:credentials_aicredential_change", args=[credential.pk]),
    ):
        html = admin_client.get(url).content.decode()
        assert GEMINI_KEY not in html
        assert "••••" + GEMINI_KEY[-4:] in html


def bot_form_data(bot: Bot, **overrides: str) -> dict[str, str]:
    return {"name": bot.name, "token": "", "api_base_url": "", "persona": "", "credential": "", **overrides}


def test_it_keeps_the_stored_token_when_the_field_is_left_empty(admin_client) -> None:  # type: ignore[no-untyped-def]
    token = make_token()
    bot = make_bot(token=token)

    response = admin_client.post(
        reverse("admin:bots_bot_change", args=[bot.pk]), bot_form_data(bot, name="Renamed")
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    bot.refresh_from_db()
    assert bot.name == "Renamed"
    assert bot.token.reveal() == token


def test_it_replaces_the_token_when_a_new_one_is_typed(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    new_token = make_token()

    admin_client.post(
        reverse("admin:bots_bot_change", args=[bot.pk]), bot_form_data(bot, token=new_token)
    )

    bot.refresh_from_db()
    assert bot.token.reveal() == new_token


def test_it_requires_a_token_when_adding_a_bot(admin_client) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.post(reverse("admin:bots_bot_add"), {"name": "No token"})

    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert not Bot.objects.filter(name="No token").exists()


@pytest.mark.parametrize(
    "model", ["bots_bot", "bots_bottask", "credentials_aicredential", "conversations_persona",
              "conversations_chat", "conversations_message", "conversations_telegramuser"],
)
def test_it_lists_and_adds_every_model(admin_client, model: str) -> None:  # type: ignore[no-untyped-def]
    make_task(make_bot(persona=make_persona(), credential=make_credential()))

    assert admin_client.get(reverse(f"admin:{model}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:{model}_add")).status_code == 200
