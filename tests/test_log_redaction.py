import logging

import pytest

from credentials.redaction import REDACTED
from tests.factories import make_bot, make_token

logger = logging.getLogger("tests.redaction")


def test_it_redacts_a_bot_token_in_a_request_url(caplog: pytest.LogCaptureFixture) -> None:
    token = make_token()

    with caplog.at_level(logging.INFO):
        logger.info("HTTP Request: POST %s", f"http://127.0.0.1:1/bot{token}/getUpdates")

    assert token not in caplog.text
    assert f"/bot{REDACTED}/getUpdates" in caplog.text


def test_it_redacts_secrets_in_exception_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    token = make_token()

    try:
        raise ValueError(f"The token `{token}` was rejected")
    except ValueError:
        logger.exception("call failed")

    assert token not in caplog.text
    assert REDACTED in caplog.text


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
