import re

import pytest
from django.urls import reverse

from bots.models import Bot
from credentials.models import AICredential
from tests.factories import (
    bot_admin_form,
    make_bot,
    make_credential,
    make_persona,
    make_task,
    make_token,
)

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


def bot_form_data(bot: Bot, **overrides: str) -> dict[str, object]:
    return bot_admin_form(bot, **overrides)


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
    response = admin_client.post(reverse("admin:bots_bot_add"), bot_admin_form(name="No token"))

    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert not Bot.objects.filter(name="No token").exists()


@pytest.mark.parametrize(
    "model", ["bots_bot", "bots_bottask", "credentials_aicredential", "conversations_persona"],
)
def test_it_lists_and_adds_every_model(admin_client, model: str) -> None:  # type: ignore[no-untyped-def]
    make_task(make_bot(persona=make_persona(), credential=make_credential()))

    assert admin_client.get(reverse(f"admin:{model}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:{model}_add")).status_code == 200


@pytest.mark.parametrize("model", ["conversations_chat", "conversations_message", "conversations_telegramuser"])
def test_it_lists_the_log_but_adds_nothing_to_it(admin_client, model: str) -> None:  # type: ignore[no-untyped-def]
    make_task(make_bot(persona=make_persona(), credential=make_credential()))

    assert admin_client.get(reverse(f"admin:{model}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:{model}_add")).status_code == 403


# --- the token's shape, and the token again when the Bot API base URL changes -------------

TOKEN_SHAPE = "not a Telegram bot token"
TOKEN_TAIL = "AAFakeTokenForTests_0123456789-abcd"  # 35 characters, as Telegram's are
TOKEN_AGAIN = "Enter the token again: the Bot API base URL changed"


def field_errors(page: str, field: str) -> str:
    """The text of the form row of one field (its label, errors and help), as the page
    shows it."""
    row = page.split(f"field-{field}", 1)[1].split('<div class="form-row', 1)[0]
    return re.sub(r"<[^>]+>", " ", row)


@pytest.mark.parametrize(
    "typed",
    [
        "123456:short",  # too short after the colon
        f"123456789:{TOKEN_TAIL}x",  # too long
        f"bot123456789:{TOKEN_TAIL}",  # "bot" pasted in front
        f"123456789:{TOKEN_TAIL[:-1]}!",  # a character no token has
        f"{TOKEN_TAIL}0000000",  # no bot id
        f"123456789:{TOKEN_TAIL[:10]} {TOKEN_TAIL[11:]}",  # a space inside
        f"123456789;{TOKEN_TAIL}",  # no colon
    ],
)
def test_it_refuses_a_token_that_is_not_of_telegram_s_shape(admin_client, typed: str) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.post(reverse("admin:bots_bot_add"), bot_admin_form(name="Odd token", token=typed))

    assert response.status_code == 200
    page = response.content.decode()
    errors = field_errors(page, "token")
    assert "Token" in errors and TOKEN_SHAPE in errors
    assert typed not in page  # a secret, even a wrong one, is never shown back
    assert not Bot.objects.filter(name="Odd token").exists()


def test_it_refuses_a_new_token_of_the_wrong_shape_on_edit(admin_client) -> None:  # type: ignore[no-untyped-def]
    token = make_token()
    bot = make_bot(token=token)

    response = admin_client.post(
        reverse("admin:bots_bot_change", args=[bot.pk]), bot_form_data(bot, token="12345:abc")
    )

    assert TOKEN_SHAPE in field_errors(response.content.decode(), "token")
    bot.refresh_from_db()
    assert bot.token.reveal() == token


def test_it_accepts_a_token_of_telegram_s_shape(admin_client) -> None:  # type: ignore[no-untyped-def]
    token = f"123456789:{TOKEN_TAIL}"

    response = admin_client.post(reverse("admin:bots_bot_add"), bot_admin_form(name="Good token", token=token))

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Bot.objects.get(name="Good token").token.reveal() == token


def test_it_asks_for_the_token_again_when_the_bot_api_base_url_changes(admin_client) -> None:  # type: ignore[no-untyped-def]
    token = make_token()
    bot = make_bot(token=token, api_base_url="https://api.telegram.org/bot")

    response = admin_client.post(
        reverse("admin:bots_bot_change", args=[bot.pk]),
        bot_form_data(bot, api_base_url="https://collector.example.net/bot"),
    )

    assert response.status_code == 200
    assert TOKEN_AGAIN in field_errors(response.content.decode(), "token")
    bot.refresh_from_db()
    assert bot.api_base_url == "https://api.telegram.org/bot"  # nothing sent anywhere new
    assert bot.token.reveal() == token


def test_it_moves_a_bot_to_a_new_bot_api_base_url_with_its_token_typed_again(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot(api_base_url="https://api.telegram.org/bot")
    token = make_token()

    response = admin_client.post(
        reverse("admin:bots_bot_change", args=[bot.pk]),
        bot_form_data(bot, api_base_url="https://bot-api.example.net/bot", token=token),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    bot.refresh_from_db()
    assert bot.api_base_url == "https://bot-api.example.net/bot"
    assert bot.token.reveal() == token


def test_it_keeps_the_token_when_the_url_still_names_the_same_server(admin_client, settings) -> None:  # type: ignore[no-untyped-def]
    """Blank means the TELEGRAM_API_BASE_URL setting: writing that same URL out sends
    the token nowhere new."""
    token = make_token()
    bot = make_bot(token=token, api_base_url="")

    response = admin_client.post(
        reverse("admin:bots_bot_change", args=[bot.pk]),
        bot_form_data(bot, api_base_url=settings.TELEGRAM_API_BASE_URL, name="Same server"),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    bot.refresh_from_db()
    assert bot.name == "Same server" and bot.token.reveal() == token


def test_it_says_bot_api_base_url_wherever_the_bot_form_names_it(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot(api_base_url="https://api.telegram.org/bot")

    form = admin_client.get(reverse("admin:bots_bot_change", args=[bot.pk])).content.decode()
    refused = admin_client.post(
        reverse("admin:bots_bot_change", args=[bot.pk]),
        bot_form_data(bot, api_base_url="https://elsewhere.example.net/bot"),
    ).content.decode()

    for page in (form, refused):
        text = re.sub(r"<[^>]+>", " ", page)
        assert "Bot API base URL:" in text  # the label
        # Every other mention (the token's help, the error) uses the same words.
        assert "Bot API base URL" in field_errors(page, "token")
        assert not re.search(r"(?<!Bot )API base URL|base url|Api base|api_base_url(?!\")", text)
