"""Credential failures as a user meets them: every provider failure is a ProviderError in
a few safe words, counted on the credential and by its circuit; a credential without an
API key is refused by the admin, and one that exists anyway fails with words saying so
(a reply gets the persona's fallback line, `send_message --ai` one line and a non-zero
exit)."""

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import telegram
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.urls import reverse

from bots.services import task_start
from conversations import replies
from conversations.ingest import updates_store
from conversations.models import Message, ScheduledRun
from core import aio
from credentials.generation import text_generate_async
from credentials.models import AICredential
from credentials.providers import ChatTurn, GenerationRequest, GenerationResult, ProviderError
from credentials.providers.base import MESSAGE_MAX_LENGTH
from emulators.gemini import GeminiEmulator
from emulators.openai_compat import OpenAICompatEmulator
from tests.conftest import GEMINI_TEST_KEY
from tests.support import worker
from tests.support.scheduling import chats_make

pytestmark = pytest.mark.django_db(transaction=True)

REQUEST = GenerationRequest(instructions="Be brief.", message=ChatTurn(role="user", text="hi"))
# Matches none of the redaction patterns: only its registration on decryption hides it.
CUSTOM_KEY = "custom-provider-key-0042-do-not-show"
FALLBACK = "Sorry, the AI is out. Back soon."


@pytest.fixture(scope="module")
def openai_api() -> Iterator[OpenAICompatEmulator]:
    with OpenAICompatEmulator() as emulator:  # any key is accepted
        yield emulator


def openai_credential(base_url: str, api_key: str = CUSTOM_KEY, **fields: Any) -> AICredential:
    return AICredential.objects.create(
        name="Local LLM", provider=AICredential.Provider.OPENAI_COMPATIBLE, api_key=api_key,
        base_url=base_url, model="llama3", requests_per_minute=1000, **fields,
    )


@pytest.fixture(params=["gemini", "openai"])
def emulated(request: pytest.FixtureRequest) -> tuple[GeminiEmulator | OpenAICompatEmulator, AICredential]:
    """Each provider's emulator, reset, and a credential (loaded from the database) for it."""
    if request.param == "gemini":
        credential = request.getfixturevalue("gemini_credential")
        return request.getfixturevalue("gemini_api"), AICredential.objects.get(pk=credential.pk)
    emulator = request.getfixturevalue("openai_api")
    emulator.reset()
    credential = openai_credential(emulator.base_url)
    return emulator, AICredential.objects.get(pk=credential.pk)


def generate(credential: AICredential) -> GenerationResult:
    return aio.run(text_generate_async(credential=credential, request=REQUEST), timeout=60)


def failure_of(credential: AICredential) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        generate(credential)
    return caught.value


# --- 1. whatever fails is a ProviderError: safe words, counted, seen by the circuit ----------


@pytest.mark.parametrize("fault", ["html_body", "invalid_json"])
def test_it_counts_an_answer_that_is_not_json_on_the_credential_and_its_circuit(
    emulated: tuple[GeminiEmulator | OpenAICompatEmulator, AICredential], fault: str, settings: Any
) -> None:
    emulator, credential = emulated
    settings.AI_MAX_ATTEMPTS, settings.AI_CIRCUIT_FAILURES = 1, 2
    emulator.add_fault(fault, times=None)

    first, second = failure_of(credential), failure_of(credential)
    stored = AICredential.objects.get(pk=credential.pk)
    skipped = failure_of(credential)

    assert first.kind == second.kind == ProviderError.SERVER
    assert "could not be read" in str(first) or "not a chat completion" in str(first)
    assert (stored.failures_total, stored.last_error) == (2, str(second))
    assert skipped.kind == ProviderError.CIRCUIT_OPEN
    assert len(emulator.requests()) == 2  # the open circuit kept the third call home


def test_it_makes_a_failure_no_mapping_foresaw_an_unexpected_error_counted_like_an_outage(
    settings: Any,
) -> None:
    settings.AI_MAX_ATTEMPTS, settings.AI_CIRCUIT_FAILURES = 1, 1
    # Saved in code, past the admin's URL check: the openai client refuses to be built.
    credential = openai_credential("http://[::1:8080/v1")

    failure = failure_of(credential)
    stored = AICredential.objects.get(pk=credential.pk)

    assert failure.kind == ProviderError.UNEXPECTED
    assert str(failure).startswith("The AI call failed unexpectedly (openai_compatible, InvalidURL")
    assert CUSTOM_KEY not in str(failure)
    assert (stored.failures_total, stored.last_error) == (1, str(failure))
    assert failure_of(credential).kind == ProviderError.CIRCUIT_OPEN


def test_a_key_that_cannot_be_decrypted_is_a_provider_error_on_the_credential(
    gemini_api: GeminiEmulator, gemini_credential: AICredential, settings: Any
) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the key it was saved with is gone
    credential = AICredential.objects.get(pk=gemini_credential.pk)

    failure = failure_of(credential)

    assert failure.kind == ProviderError.KEY_UNREADABLE
    assert str(failure).startswith("The API key of “Gemini (emulated)” cannot be read: ")
    assert "FIELD_ENCRYPTION_KEYS" in str(failure) and gemini_api.requests() == []
    stored = AICredential.objects.get(pk=credential.pk)
    assert (stored.failures_total, stored.last_error) == (1, str(failure))


def test_it_keeps_a_providers_long_error_page_short_and_without_the_key(
    emulated: tuple[GeminiEmulator | OpenAICompatEmulator, AICredential], settings: Any
) -> None:
    emulator, credential = emulated
    settings.AI_MAX_ATTEMPTS = 1
    key = credential.api_key.reveal()
    page = f"<html>\n<body>\n<h1>Proxy error</h1>\n<pre>request with key {key}</pre>\n" + "<p>x</p>\n" * 2000
    emulator.add_fault("internal", message=page)

    failure = failure_of(credential)

    assert failure.kind == ProviderError.SERVER
    assert len(str(failure)) <= MESSAGE_MAX_LENGTH and "\n" not in str(failure)
    assert key not in str(failure) and "Proxy error" not in str(failure)  # no remote body
    assert "an HTML page" in str(failure)
    assert AICredential.objects.get(pk=credential.pk).last_error == str(failure)


def test_it_never_reports_negative_token_counts(
    emulated: tuple[GeminiEmulator | OpenAICompatEmulator, AICredential],
) -> None:
    emulator, credential = emulated
    emulator.add_fault("negative_usage")

    result = generate(credential)

    assert result.text and (result.tokens_in, result.tokens_out) == (0, 0)


# --- 2. no API key: refused by the admin; when it exists anyway, words that say so ----------


def credential_form(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Team key", "provider": "gemini", "api_key": "", "base_url": "",
        "model": "gemini-2.5-flash", "is_active": "on", "requests_per_minute": 60, **fields,
    }


@pytest.mark.parametrize(
    ("provider", "base_url"),
    [("gemini", ""), ("gemini", "http://127.0.0.1:8082"), ("openai_compatible", ""),
     ("openai_compatible", "https://api.example.com/v1")],
)
def test_the_admin_refuses_a_credential_without_the_key_its_provider_needs(
    admin_client: Any, provider: str, base_url: str
) -> None:
    response = admin_client.post(
        reverse("admin:credentials_aicredential_add"), credential_form(provider=provider, base_url=base_url)
    )

    assert response.status_code == 200  # the form again
    [error] = response.context["adminform"].form.errors["api_key"]
    assert "needs an API key" in error and error in response.content.decode()
    assert not AICredential.objects.exists()


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:11434/v1", "http://localhost:1234/v1", "http://192.168.1.20:8000/v1"],
)
def test_the_admin_saves_a_local_openai_compatible_server_without_a_key(admin_client: Any, base_url: str) -> None:
    response = admin_client.post(
        reverse("admin:credentials_aicredential_add"),
        credential_form(provider="openai_compatible", base_url=base_url, model="llama3"),
    )

    assert response.status_code == 302
    assert not AICredential.objects.get().api_key


def test_editing_with_the_key_field_left_empty_keeps_the_stored_key(admin_client: Any) -> None:
    credential = AICredential.objects.create(name="Team key", api_key=GEMINI_TEST_KEY)

    response = admin_client.post(
        reverse("admin:credentials_aicredential_change", args=[credential.pk]),
        credential_form(model="gemini-2.5-pro"),
    )

    assert response.status_code == 302
    stored = AICredential.objects.get()
    assert (stored.model, stored.api_key.reveal()) == ("gemini-2.5-pro", GEMINI_TEST_KEY)


def test_editing_a_credential_stored_without_a_key_asks_for_one(admin_client: Any) -> None:
    credential = AICredential.objects.create(name="Team key")  # in code, past the form

    response = admin_client.post(
        reverse("admin:credentials_aicredential_change", args=[credential.pk]), credential_form()
    )

    assert response.status_code == 200
    assert "needs an API key" in response.context["adminform"].form.errors["api_key"][0]


@pytest.mark.parametrize(
    ("provider", "base_url"), [("gemini", ""), ("openai_compatible", "https://api.example.com/v1")]
)
def test_a_credential_saved_without_a_key_fails_saying_the_key_is_missing(provider: str, base_url: str) -> None:
    AICredential.objects.create(name="Forgotten key", provider=provider, base_url=base_url)
    credential = AICredential.objects.get()  # as every caller has it: from the database

    failure = failure_of(credential)

    assert failure.kind == ProviderError.MISSING_KEY
    assert str(failure) == "The AI credential “Forgotten key” has no API key: add one in the admin (AI credentials)."
    stored = AICredential.objects.get()
    assert (stored.failures_total, stored.last_error) == (1, str(failure))


def test_a_local_openai_compatible_server_is_called_without_a_key(openai_api: OpenAICompatEmulator) -> None:
    openai_api.reset()
    openai_api.script_replies(["Hi from the box under the desk."])
    credential = AICredential.objects.get(pk=openai_credential(openai_api.base_url, api_key="").pk)

    result = generate(credential)

    assert result.text == "Hi from the box under the desk."


@pytest.fixture
def keyless_bot(emulated_bot, bot_task):  # type: ignore[no-untyped-def]
    bot, info = emulated_bot
    bot.credential = AICredential.objects.create(name="Forgotten key", provider=AICredential.Provider.GEMINI)
    bot.persona.fallback_reply = FALLBACK
    bot.persona.save()
    bot.save()
    task_start(task=bot_task)
    return bot, info, bot_task


def test_a_reply_through_a_credential_without_a_key_is_the_persona_fallback(keyless_bot, telegram_api) -> None:  # type: ignore[no-untyped-def]
    bot, info, task = keyless_bot
    update = telegram_api.send_private_message(info["token"], "Anyone there?")
    [incoming] = updates_store(bot=bot, task=task, updates=[telegram.Update.de_json(update, None)]).to_answer

    replies.messages_answer(message_ids=[incoming.pk])

    assert [m["text"] for m in telegram_api.sent_messages(info["token"])] == [FALLBACK]
    reply = Message.objects.get(direction="out", reply_to=incoming)
    assert "has no API key" in reply.error and "FIELD_ENCRYPTION_KEYS" not in reply.error


# --- 3. send_message --ai: one line on stderr, a non-zero exit, nothing sent -----------------


def send_message_run(*args: str) -> subprocess.CompletedProcess[str]:
    """`manage.py send_message` as an operator runs it, on the test database."""
    env = {
        **os.environ, "DATABASE_URL": worker.test_database_url(), "REDIS_URL": django_settings.REDIS_URL,
        **{name: str(value) for name, value in worker.RUNTIME_SETTINGS.items()},
    }
    env.pop("LOG_LEVEL", None)  # the operator's default
    return subprocess.run(
        [sys.executable, "manage.py", "send_message", *args], env=env, cwd=django_settings.BASE_DIR,
        capture_output=True, text=True, timeout=60,
    )


def test_send_message_with_the_ai_and_no_key_says_so_in_one_line_and_fails(keyless_bot, telegram_api) -> None:  # type: ignore[no-untyped-def]
    bot, info, task = keyless_bot
    [chat] = chats_make(telegram_api, bot, 1)

    done = send_message_run("--ai", "--task", str(task.pk), "--chat", str(chat.telegram_id), "Give one tip.")

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"CommandError: Run #{ScheduledRun.objects.get().pk} could not start: The AI could not write the "
        "message: The AI credential “Forgotten key” has no API key: add one in the admin (AI credentials)."
    ]
    assert telegram_api.sent_messages(info["token"]) == []
    assert ScheduledRun.objects.get().state == ScheduledRun.State.FAILED


def test_send_message_with_the_ai_failing_sends_no_fallback_and_fails(  # type: ignore[no-untyped-def]
    keyless_bot, telegram_api, gemini_api, gemini_credential
) -> None:
    bot, info, task = keyless_bot
    bot.credential = gemini_credential
    bot.save()
    gemini_api.add_fault("permission_denied")
    [chat] = chats_make(telegram_api, bot, 1)

    done = send_message_run("--ai", "--task", str(task.pk), "--chat", str(chat.telegram_id), "Give one tip.")

    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("CommandError: ") and "Gemini refused access (403 PERMISSION_DENIED)" in line
    assert telegram_api.sent_messages(info["token"]) == []
