"""Files and message drafts of the Telegram Bot API emulator, through python-telegram-bot.

``send_media`` puts fetchable files in its updates: ``getFile`` gives their path and
``GET /file/bot<token>/<file_path>`` their bytes (what PTB's ``File.download_*`` fetch).
``sendMessageDraft`` (PTB ``Bot.send_message_draft``) is recorded per bot and chat.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
from telegram import Bot, Message
from telegram.error import BadRequest, Forbidden, RetryAfter

from emulators.telegram import EmulatorClient, TelegramEmulator

pytestmark = [
    pytest.mark.timeout(20),
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]

T = TypeVar("T")
# A 1x1 JPEG is not needed: the emulator serves whatever bytes the test gives it.
SMALL_IMAGE = b"\xff\xd8\xff\xe0" + bytes(range(60))
FILE_KINDS = ("photo", "sticker", "voice", "audio", "document", "video", "animation", "video_note")


def run_with_bot(emu: TelegramEmulator, token: str, body: Callable[[Bot], Awaitable[T]]) -> T:
    """Run ``body(bot)`` on a fresh loop with an initialised PTB Bot."""

    async def main() -> T:
        async with Bot(token, base_url=emu.base_url, base_file_url=emu.base_file_url) as bot:
            return await body(bot)

    return asyncio.run(main())


def received(emu: TelegramEmulator, token: str, **media: Any) -> Message:
    """The message of a ``send_media`` update, as PTB parses it from getUpdates (its Bot
    is closed afterwards: fetch its files with another one's ``get_file(file_id)``)."""
    emu.send_media(token, **media)

    async def body(bot: Bot) -> Message:
        (update,) = await bot.get_updates()
        await bot.get_updates(offset=update.update_id + 1)  # confirm it
        return update.message

    return run_with_bot(emu, token, body)


def file_objects(message: Message) -> list[Any]:
    """Every object with a file_id in a media message (all photo sizes)."""
    if message.photo:
        return list(message.photo)
    return [getattr(message, kind) for kind in FILE_KINDS if getattr(message, kind, None)]


# --------------------------------------------------------------------------- files


def test_it_serves_the_exact_content_of_a_photo(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    message = received(
        telegram_emulator,
        token,
        kind="photo",
        caption="what is this?",
        content=base64.b64encode(SMALL_IMAGE).decode(),
    )

    async def body(bot: Bot) -> bytes:
        file = await bot.get_file(message.photo[-1].file_id)
        return bytes(await file.download_as_bytearray())

    assert run_with_bot(telegram_emulator, token, body) == SMALL_IMAGE
    assert message.photo[-1].file_size == len(SMALL_IMAGE)
    assert message.caption == "what is this?"


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_it_lets_the_bot_fetch_every_file_of_an_update(
    telegram_emulator: TelegramEmulator, telegram_bot: dict, kind: str
) -> None:
    token = telegram_bot["token"]
    message = received(telegram_emulator, token, kind=kind, size=3_000)

    async def body(bot: Bot) -> list[tuple[int | None, int, int]]:
        sizes = []
        for media in file_objects(message):
            file = await bot.get_file(media.file_id)
            data = await file.download_as_bytearray()
            sizes.append((media.file_size, file.file_size, len(data)))
        return sizes

    sizes = run_with_bot(telegram_emulator, token, body)

    assert sizes and all(sent == told == got for sent, told, got in sizes)
    assert sizes[-1][0] == 3_000  # the file itself (a photo's largest size)


def test_it_makes_deterministic_fake_bytes_of_the_given_size_and_type(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    message = received(telegram_emulator, token, kind="voice", size=2_345, mime_type="audio/mpeg")

    async def body(bot: Bot) -> tuple[str, bytes, bytes]:
        file = await bot.get_file(message.voice.file_id)
        first, second = await file.download_as_bytearray(), await file.download_as_bytearray()
        return file.file_path, bytes(first), bytes(second)

    path, first, second = run_with_bot(telegram_emulator, token, body)

    assert message.voice.mime_type == "audio/mpeg"
    assert path.endswith(".mp3") and "/voice/" in path
    assert len(first) == 2_345 and first == second


def test_it_sends_the_file_with_its_content_length(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    message = received(telegram_emulator, token, kind="document", size=4_321)
    file_id = message.document.file_id
    path = httpx.post(f"{telegram_emulator.base_url}{token}/getFile", data={"file_id": file_id})

    response = httpx.get(
        f"{telegram_emulator.base_file_url}{token}/{path.json()['result']['file_path']}"
    )

    assert response.status_code == 200
    assert response.headers["Content-Length"] == "4321"
    assert response.headers["Content-Type"] == "application/pdf"


def test_it_refuses_files_over_20_mb_and_never_serves_them(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    message = received(telegram_emulator, token, kind="video", size=25_000_000)

    async def body(bot: Bot) -> None:
        with pytest.raises(BadRequest, match="File is too big"):
            await bot.get_file(message.video.file_id)

    run_with_bot(telegram_emulator, token, body)

    assert message.video.file_size == 25_000_000
    assert telegram_emulator.file_downloads(token) == []


def test_it_answers_an_unknown_file_id_with_invalid_file_id(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    async def body(bot: Bot) -> None:
        with pytest.raises(BadRequest, match="Invalid file_id"):
            await bot.get_file("AgACnot-a-file-of-this-bot")

    run_with_bot(telegram_emulator, telegram_bot["token"], body)


def test_it_serves_a_file_only_to_the_bot_that_received_it(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    other = telegram_emulator.add_bot()["token"]
    message = received(telegram_emulator, token, kind="voice")
    file_id = message.voice.file_id
    path = httpx.post(f"{telegram_emulator.base_url}{token}/getFile", data={"file_id": file_id})
    file_path = path.json()["result"]["file_path"]

    foreign = httpx.post(f"{telegram_emulator.base_url}{other}/getFile", data={"file_id": file_id})
    stolen = httpx.get(f"{telegram_emulator.base_file_url}{other}/{file_path}")

    assert foreign.json()["description"] == "Bad Request: invalid file_id"
    assert stolen.status_code == 404
    assert telegram_emulator.file_downloads(other) == []


def test_it_records_file_downloads(telegram_emulator: TelegramEmulator, telegram_bot: dict) -> None:
    token = telegram_bot["token"]
    message = received(telegram_emulator, token, kind="audio", size=1_000)

    async def body(bot: Bot) -> str:
        file = await bot.get_file(message.audio.file_id)
        await file.download_as_bytearray()
        return file.file_path

    url = run_with_bot(telegram_emulator, token, body)

    (download,) = telegram_emulator.file_downloads(token)
    assert url.endswith("/" + download["file_path"])
    assert download["file_id"] == message.audio.file_id
    assert download["bytes"] == 1_000 and download["at"] > 0


def test_it_lets_the_bot_fetch_media_it_sent(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    chat_id = telegram_emulator.add_user()["id"]

    async def body(bot: Bot) -> tuple[int | None, int]:
        sent = await bot.send_photo(chat_id, SMALL_IMAGE)
        file = await sent.photo[-1].get_file()
        return sent.photo[-1].file_size, len(await file.download_as_bytearray())

    announced, downloaded = run_with_bot(telegram_emulator, telegram_bot["token"], body)

    assert announced == downloaded


@pytest.mark.parametrize(
    "media",
    [
        {"kind": "photo", "mime_type": "image/png"},  # Telegram photos are always JPEG
        {"kind": "voice", "content": "not base64!"},
        {"kind": "voice", "content": base64.b64encode(b"abc").decode(), "size": 4},
        {"kind": "document", "size": 0},
        {"kind": "location", "size": 10},
    ],
)
def test_it_refuses_file_options_it_cannot_honour(
    telegram_emulator: TelegramEmulator, telegram_bot: dict, media: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        telegram_emulator.send_media(telegram_bot["token"], **media)


# --------------------------------------------------------------------------- drafts


def test_it_records_message_drafts_without_sending_a_message(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]

    async def body(bot: Bot) -> list[bool]:
        return [
            await bot.send_message_draft(chat_id, 42, "The answer"),
            await bot.send_message_draft(chat_id, 42, "The answer is <b>42</b>", parse_mode="HTML"),
        ]

    assert run_with_bot(telegram_emulator, token, body) == [True, True]

    drafts = telegram_emulator.drafts(token, chat_id=chat_id)
    assert [(d["draft_id"], d["text"]) for d in drafts] == [
        (42, "The answer"),
        (42, "The answer is 42"),
    ]
    assert drafts[1]["entities"] == [{"type": "bold", "offset": 14, "length": 2}]
    assert drafts[0]["at"] <= drafts[1]["at"]
    assert telegram_emulator.sent_messages(token) == []


def test_it_shows_a_thinking_placeholder_for_a_draft_without_text(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]

    run_with_bot(telegram_emulator, token, lambda bot: bot.send_message_draft(chat_id, 7))

    (draft,) = telegram_emulator.drafts(token)
    assert draft["chat_id"] == chat_id and draft["draft_id"] == 7 and draft["text"] == ""


@pytest.mark.parametrize("chat_type", ["group", "supergroup"])
def test_it_refuses_drafts_outside_private_chats(
    telegram_emulator: TelegramEmulator, telegram_bot: dict, chat_type: str
) -> None:
    group_id = telegram_emulator.add_group(chat_type=chat_type)["id"]  # type: ignore[arg-type]

    async def body(bot: Bot) -> None:
        with pytest.raises(BadRequest, match="Textdraft_peer_invalid"):
            await bot.send_message_draft(group_id, 1, "hello")

    run_with_bot(telegram_emulator, telegram_bot["token"], body)

    assert telegram_emulator.drafts(telegram_bot["token"]) == []


@pytest.mark.parametrize(
    ("draft_id", "text", "error"),
    [(0, "hello", "Random_id_invalid"), (1, "x" * 4097, "Message is too long")],
)
def test_it_refuses_a_zero_draft_id_and_overlong_text(
    telegram_emulator: TelegramEmulator, telegram_bot: dict, draft_id: int, text: str, error: str
) -> None:
    chat_id = telegram_emulator.add_user()["id"]

    async def body(bot: Bot) -> None:
        with pytest.raises(BadRequest, match=error):
            await bot.send_message_draft(chat_id, draft_id, text)

    run_with_bot(telegram_emulator, telegram_bot["token"], body)


def test_it_refuses_drafts_to_a_user_who_blocked_the_bot(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]
    telegram_emulator.block_bot(token, chat_id, notify=False)

    async def body(bot: Bot) -> None:
        with pytest.raises(Forbidden):
            await bot.send_message_draft(chat_id, 1, "hello")

    run_with_bot(telegram_emulator, token, body)


def test_it_applies_faults_to_send_message_draft(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]
    telegram_emulator.add_fault(
        token, "too_many_requests", method="sendMessageDraft", retry_after=1
    )

    async def body(bot: Bot) -> None:
        with pytest.raises(RetryAfter):
            await bot.send_message_draft(chat_id, 1, "first")
        await bot.send_message_draft(chat_id, 1, "second")

    run_with_bot(telegram_emulator, token, body)

    assert [d["text"] for d in telegram_emulator.drafts(token)] == ["second"]
    assert telegram_emulator.calls(token, method="sendMessageDraft")[0]["status"] == 429


# --------------------------------------------------------------------------- HTTP control


def test_it_offers_file_contents_downloads_and_drafts_over_the_http_control_api(
    telegram_emulator: TelegramEmulator,
) -> None:
    with EmulatorClient(telegram_emulator.url) as client:
        token = client.add_bot()["token"]
        update = client.send_media(token, "photo", content=base64.b64encode(SMALL_IMAGE).decode())
        largest = update["message"]["photo"][-1]
        chat_id = update["message"]["chat"]["id"]

        async def body(bot: Bot) -> bytes:
            await bot.send_message_draft(chat_id, 5, "typing…")
            file = await bot.get_file(largest["file_id"])
            return bytes(await file.download_as_bytearray())

        assert run_with_bot(telegram_emulator, token, body) == SMALL_IMAGE
        assert largest["file_size"] == len(SMALL_IMAGE)
        assert [d["text"] for d in client.drafts(token, chat_id=chat_id)] == ["typing…"]
        assert [d["bytes"] for d in client.file_downloads(token)] == [len(SMALL_IMAGE)]
