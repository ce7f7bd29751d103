"""Photos and voice notes understood: fetched from Telegram within the cap and shown to
the AI (conversations.media), through the emulators and a real worker."""

import base64
import time
from typing import Any

import pytest

from bots.models import Bot
from bots.services import task_start
from conversations import wording
from conversations.models import Message
from credentials.models import AICredential
from emulators.openai_compat import OpenAICompatEmulator
from tests.conftest import OPENAI_TEST_KEY
from tests.factories import make_bot, make_persona, make_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.timeout(120)]

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 1200).decode()  # 1,208 bytes


def media_bot(telegram_api: Any, credential: AICredential, **persona: Any) -> tuple[Bot, dict[str, Any]]:
    info = telegram_api.add_bot(first_name="Seer")
    bot = make_bot(token=info["token"], api_base_url=telegram_api.base_url, credential=credential,
                   persona=make_persona(**persona))
    task_start(task=make_task(bot))
    bot.refresh_from_db()
    return bot, info


def answered(telegram_api: Any, token: str, chat_id: int, count: int = 1) -> list[str]:
    telegram_api.wait_for_sent(token, count, chat_id=chat_id, timeout=30)
    time.sleep(0.5)
    return [m["text"] for m in telegram_api.sent_messages(token, chat_id=chat_id)]


def test_a_photo_with_a_caption_reaches_gemini_as_an_image_part_with_that_caption(
    celery_worker, telegram_api, gemini_api, gemini_credential
) -> None:  # type: ignore[no-untyped-def]
    bot, info = media_bot(telegram_api, gemini_credential)

    update = telegram_api.send_media(info["token"], kind="photo", caption="What is on this label?",
                                     user_id=9501, content=PNG)
    texts = answered(telegram_api, info["token"], 9501)

    asked = gemini_api.requests()[-1].contents[-1]
    assert asked.text == "What is on this label?"
    assert list(asked.media) == [("image/jpeg", 1208)]
    assert "[received image/jpeg, 1208 bytes]" in texts[0]
    stored = Message.objects.get(bot=bot, direction="in")
    assert (stored.media_kind, stored.media_size) == ("photo", 1208)
    assert stored.media_file_id == update["message"]["photo"][-1]["file_id"]


def test_a_voice_note_reaches_gemini_as_audio(celery_worker, telegram_api, gemini_api, gemini_credential) -> None:  # type: ignore[no-untyped-def]
    _, info = media_bot(telegram_api, gemini_credential)

    telegram_api.send_media(info["token"], kind="voice", user_id=9502, size=5000)
    answered(telegram_api, info["token"], 9502)

    asked = gemini_api.requests()[-1].contents[-1]
    assert list(asked.media) == [("audio/ogg", 5000)]
    assert asked.text == wording.MEDIA_WITHOUT_CAPTION.format(what="voice message")


def test_an_oversized_file_gets_the_polite_line_and_is_never_downloaded(
    celery_worker, telegram_api, gemini_api, gemini_credential
) -> None:  # type: ignore[no-untyped-def]
    _, info = media_bot(telegram_api, gemini_credential)
    gemini_api.clear_requests()

    telegram_api.send_media(info["token"], kind="video", user_id=9503, size=15_000_000)
    texts = answered(telegram_api, info["token"], 9503)

    assert texts == [wording.MEDIA_TOO_LARGE.format(cap="10 MB")]
    assert telegram_api.file_downloads(info["token"]) == []
    assert not [c for c in telegram_api.calls(info["token"]) if c["method"].lower() == "getfile"]
    assert gemini_api.requests() == []  # no AI call either


def test_media_the_ai_cannot_take_gets_the_personas_line(celery_worker, telegram_api) -> None:  # type: ignore[no-untyped-def]
    with OpenAICompatEmulator(valid_keys={OPENAI_TEST_KEY}) as server:
        credential = AICredential.objects.create(
            name="Local model", provider=AICredential.Provider.OPENAI_COMPATIBLE, api_key=OPENAI_TEST_KEY,
            base_url=server.base_url, model="llava",
        )
        _, info = media_bot(telegram_api, credential, media_unsupported_reply="I can't listen to audio.")

        telegram_api.send_media(info["token"], kind="voice", user_id=9504, size=4000)
        voice = answered(telegram_api, info["token"], 9504)
        telegram_api.send_media(info["token"], kind="photo", user_id=9504, caption="and this?", content=PNG)
        answered(telegram_api, info["token"], 9504, count=2)
        recorded = server.requests()

    assert voice == ["I can't listen to audio."]
    assert len(recorded) == 1  # the photo only
    assert list(recorded[-1].messages[-1].media) == [("image/jpeg", 1208)]


def test_a_photo_replying_to_the_bot_in_a_group_is_answered(celery_worker, telegram_api, gemini_api, gemini_credential) -> None:  # type: ignore[no-untyped-def]
    _, info = media_bot(telegram_api, gemini_credential)
    group = telegram_api.add_group(title="Photos")
    telegram_api.send_group_message(info["token"], "{bot} hello", chat_id=group["id"], mention_bot="username")
    answered(telegram_api, info["token"], group["id"])
    bot_message = telegram_api.sent_messages(info["token"], chat_id=group["id"])[-1]

    telegram_api.send_media(info["token"], kind="photo", chat_id=group["id"], content=PNG,
                            reply_to_message_id=bot_message["message_id"])
    telegram_api.send_media(info["token"], kind="photo", chat_id=group["id"], content=PNG)  # not to the bot
    texts = answered(telegram_api, info["token"], group["id"], count=2)

    assert len(texts) == 2
    assert list(gemini_api.requests()[-1].contents[-1].media) == [("image/jpeg", 1208)]
