import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from bots.models import Bot
from credentials.encryption import DecryptionError
from credentials.models import AICredential
from tests.factories import make_bot, make_credential, make_token

pytestmark = pytest.mark.django_db


def raw_column(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_it_stores_bot_tokens_encrypted() -> None:
    token = make_token()
    bot = make_bot(token=token)

    stored = raw_column("bots_bot", "token", bot.pk)

    assert token not in stored
    assert token.split(":")[1] not in stored
    assert Bot.objects.get(pk=bot.pk).token.reveal() == token


def test_it_stores_api_keys_encrypted() -> None:
    key = "AIzaSyD-test-key-0123456789abcdefghijk"
    credential = make_credential(provider=AICredential.Provider.GEMINI, api_key=key)

    stored = raw_column("credentials_aicredential", "api_key", credential.pk)

    assert key not in stored
    assert AICredential.objects.get(pk=credential.pk).api_key.reveal() == key


def test_it_never_shows_a_secret_in_str_or_repr() -> None:
    token = make_token()
    bot = Bot.objects.get(pk=make_bot(token=token).pk)

    assert token not in str(bot.token)
    assert token not in repr(bot.token)
    assert token not in repr(bot.__dict__)


def test_it_decrypts_with_an_older_key_after_rotation(settings) -> None:  # type: ignore[no-untyped-def]
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    token = make_token()
    bot = make_bot(token=token)
    before = raw_column("bots_bot", "token", bot.pk)

    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    assert Bot.objects.get(pk=bot.pk).token.reveal() == token  # old key still decrypts
    call_command("rotate_encryption_keys", stdout=open("/dev/null", "w"))
    after = raw_column("bots_bot", "token", bot.pk)

    assert after != before
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key can now be retired
    assert Bot.objects.get(pk=bot.pk).token.reveal() == token


def test_it_explains_a_wrong_key_without_showing_ciphertext(settings) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    ciphertext = raw_column("bots_bot", "token", bot.pk)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(DecryptionError) as excinfo:
        Bot.objects.get(pk=bot.pk).token.reveal()

    assert "FIELD_ENCRYPTION_KEYS" in str(excinfo.value)
    assert ciphertext not in str(excinfo.value)
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


def test_it_names_rows_that_rotation_cannot_decrypt(settings) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(CommandError, match=f"bots.Bot #{bot.pk} token"):
        call_command("rotate_encryption_keys", stdout=open("/dev/null", "w"))
