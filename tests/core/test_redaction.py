"""core.redaction: secrets are taken out of every log record where it is born."""

import logging
import secrets

import pytest

from core.redaction import REDACTED, install_log_redaction, redact, register_secret
from tests.factories import make_token

logger = logging.getLogger("tests.redaction")


@pytest.fixture(autouse=True)
def _installed() -> None:
    # The credentials app installs it when Django starts; installing again is a no-op.
    install_log_redaction()


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


def test_it_redacts_the_key_shapes_it_knows_and_leaves_other_text_alone() -> None:
    gemini = "AIza" + secrets.token_urlsafe(30)[:35]
    openai = "sk-" + secrets.token_urlsafe(24)

    assert redact(f"key={gemini}, other={openai}.") == f"key={REDACTED}, other={REDACTED}."
    assert redact("chat 12345 said: hello world") == "chat 12345 said: hello world"


def test_it_redacts_a_registered_value_that_matches_no_pattern() -> None:
    value = f"local-llm-{secrets.token_hex(8)}"
    assert redact(f"calling with {value}") == f"calling with {value}"

    register_secret(value)

    assert redact(f"calling with {value}") == f"calling with {REDACTED}"


def test_it_ignores_registered_values_too_short_to_be_secrets() -> None:
    register_secret("hello")  # would otherwise redact an ordinary word

    assert redact("hello there") == "hello there"


def test_a_registered_secret_containing_another_is_replaced_whole() -> None:
    short = f"inner-{secrets.token_hex(6)}"
    register_secret(short)
    register_secret(short + "-outer-part")

    assert redact(f"[{short}-outer-part]") == f"[{REDACTED}]"


def test_a_malformed_record_is_left_for_logging_to_report() -> None:
    # "%d" with a string: getMessage() fails; the factory must not raise while building
    # the record (logging reports the error when the record is emitted).
    record = logging.getLogRecordFactory()("tests.redaction", logging.INFO, __file__, 1, "%d", ("x",), None)

    assert (record.msg, record.args) == ("%d", ("x",))
