"""Redaction as the product meets it: secrets revealed by decryption, httpx's request
logs. The helper's own contract is in tests/core/test_redaction.py."""

import logging

import pytest

from tests.factories import make_bot, make_token

logger = logging.getLogger("tests.redaction")


@pytest.mark.django_db
def test_it_redacts_any_secret_this_process_has_decrypted(caplog: pytest.LogCaptureFixture) -> None:
    # A key of a self-hosted provider matches no known pattern; it is redacted because
    # the process revealed it.
    plain_key = "my-local-llm-key-not-matching-any-pattern"
    bot = make_bot(token=make_token())
    bot.token = plain_key
    bot.save()
    bot.refresh_from_db()
    bot.token.reveal()

    logger.warning("calling provider with key %s", plain_key)

    assert plain_key not in caplog.text


@pytest.mark.django_db
def test_it_redacts_the_token_from_httpx_request_logs(caplog, telegram_api, emulated_bot) -> None:  # type: ignore[no-untyped-def]
    from bots import telegram

    bot, info = emulated_bot
    with caplog.at_level(logging.INFO, logger="httpx"):
        telegram.get_me(telegram.BotEndpoint.of(bot))

    requests = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert requests and all("/bot[REDACTED]/" in line for line in requests)
    assert info["token"] not in caplog.text
