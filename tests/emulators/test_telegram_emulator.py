"""Behaviour of the Telegram Bot API emulator, verified with the real python-telegram-bot client.

Every PTB ``Bot`` lives inside one ``asyncio.run`` (PTB binds to the loop it was
initialised on). The emulator runs on its own loop/thread, so blocking control
calls are fine between awaits; inside a coroutine that must keep the PTB loop
running we use ``await emu.acall(...)``.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import inspect
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import telegram
from telegram import Bot
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)

from emulators.telegram import EmulatorClient, EmulatorState, TelegramEmulator
from emulators.telegram.control import ControlAPI

pytestmark = [
    pytest.mark.timeout(20),
    # PTB 22 warns that int durations/retry_after will become timedeltas; not our concern here.
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def ptb(emu: TelegramEmulator | EmulatorClient, token: str) -> Bot:
    return Bot(token, base_url=emu.base_url, base_file_url=emu.base_file_url)


def run_with_bot(emu: TelegramEmulator, token: str, body: Callable[[Bot], Awaitable[T]]) -> T:
    """Run ``body(bot)`` on a fresh loop with an initialised PTB Bot."""

    async def main() -> T:
        async with ptb(emu, token) as bot:
            return await body(bot)

    return asyncio.run(main())


async def wait_until_polling(emu: TelegramEmulator, token: str) -> None:
    """Wait until the emulator holds a waiting getUpdates for ``token``."""
    for _ in range(500):
        if (await emu.acall("bot_status", token=token))["polling"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("bot never started long polling")


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


# --------------------------------------------------------------------------- basics


def test_it_answers_get_me_with_the_bot_user(telegram_emulator: TelegramEmulator) -> None:
    info = telegram_emulator.add_bot(username="shop_helper_bot", first_name="Shop Helper")

    me = run_with_bot(telegram_emulator, info["token"], lambda bot: bot.get_me())

    assert me.id == info["id"] == int(info["token"].split(":")[0])
    assert me.is_bot is True
    assert me.username == "shop_helper_bot"
    assert me.first_name == "Shop Helper"
    assert me.can_join_groups is True
    assert me.can_read_all_group_messages is False
    assert me.supports_inline_queries is False


def test_it_generates_realistic_tokens(telegram_emulator: TelegramEmulator) -> None:
    token = telegram_emulator.add_bot()["token"]

    bot_id, secret = token.split(":")
    assert bot_id.isdigit() and len(secret) == 35


def test_it_rejects_unknown_tokens_with_401(telegram_emulator: TelegramEmulator) -> None:
    async def main() -> None:
        with pytest.raises(InvalidToken):
            async with ptb(telegram_emulator, "123456:AAunknownunknownunknownunknownunkn"):
                pass

    asyncio.run(main())


def test_it_answers_unknown_methods_with_404(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    response = httpx.post(
        f"{telegram_emulator.base_url}{telegram_bot['token']}/sendTelepathy", data={}
    )

    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


def test_it_keeps_the_control_api_and_the_state_in_sync() -> None:
    state_ops = EmulatorState.control_op_names()
    wrapper_ops = sorted(
        name
        for name, fn in inspect.getmembers(ControlAPI, inspect.isfunction)
        if not name.startswith("_")
    )
    assert wrapper_ops == state_ops
    for name in state_ops:
        state_params = list(inspect.signature(getattr(EmulatorState, name)).parameters)
        wrapper_params = list(inspect.signature(getattr(ControlAPI, name)).parameters)
        assert wrapper_params == state_params, name


# --------------------------------------------------------------------------- getUpdates


def test_it_wakes_a_long_poll_as_soon_as_an_update_is_injected(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]

    async def body(bot: Bot) -> tuple[float, tuple[telegram.Update, ...]]:
        poll = asyncio.create_task(bot.get_updates(timeout=10))
        await wait_until_polling(telegram_emulator, token)
        started = time.monotonic()
        await telegram_emulator.acall("send_private_message", token=token, text="wake up")
        updates = await poll
        return time.monotonic() - started, updates

    elapsed, updates = run_with_bot(telegram_emulator, token, body)

    assert elapsed < 0.5  # woken by the injection, not by the 10 s timeout
    assert [u.message.text for u in updates] == ["wake up"]
    assert updates[0].message.chat.type == "private"


def test_it_returns_an_empty_list_when_the_long_poll_times_out(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    async def body(bot: Bot) -> tuple[float, Any]:
        started = time.monotonic()
        updates = await bot.get_updates(timeout=1)
        return time.monotonic() - started, updates

    elapsed, updates = run_with_bot(telegram_emulator, telegram_bot["token"], body)

    assert updates == ()
    assert 0.9 <= elapsed < 2.5


def test_it_forgets_updates_below_the_confirmed_offset(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    first = telegram_emulator.send_private_message(token, "one")
    telegram_emulator.send_private_message(token, "two", user_id=first["message"]["from"]["id"])
    telegram_emulator.send_private_message(token, "three")

    async def body(bot: Bot) -> tuple[list[str], list[str], list[str], list[int]]:
        everything = await bot.get_updates()
        again = await bot.get_updates(limit=2)  # no offset: nothing confirmed yet
        rest = await bot.get_updates(offset=everything[1].update_id + 1)
        after = await bot.get_updates()
        return (
            [u.message.text for u in everything],
            [u.message.text for u in again],
            [u.message.text for u in rest] + [u.message.text for u in after],
            [u.update_id for u in everything],
        )

    everything, again, rest, ids = run_with_bot(telegram_emulator, token, body)

    assert everything == ["one", "two", "three"]
    assert again == ["one", "two"]
    assert rest == ["three", "three"]
    assert ids == list(range(ids[0], ids[0] + 3))
    assert ids[0] == first["update_id"] and ids[0] > 1  # random base, like Telegram


def test_it_returns_only_the_last_updates_for_a_negative_offset(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    for text in ("a", "b", "c"):
        telegram_emulator.send_private_message(token, text)

    texts = run_with_bot(telegram_emulator, token, lambda bot: bot.get_updates(offset=-1))

    assert [u.message.text for u in texts] == ["c"]
    assert telegram_emulator.bot_status(token)["pending_update_count"] == 1


def test_it_answers_the_earlier_poller_409_when_a_second_getupdates_arrives(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]

    async def main() -> tuple[BaseException | None, Any]:
        async with ptb(telegram_emulator, token) as first, ptb(telegram_emulator, token) as second:
            earlier = asyncio.create_task(first.get_updates(timeout=10))
            await wait_until_polling(telegram_emulator, token)
            later = await second.get_updates(timeout=0)
            try:
                await earlier
            except BaseException as exc:  # noqa: BLE001 - we assert on it below
                return exc, later
            return None, later

    error, later = asyncio.run(main())

    assert isinstance(error, Conflict)
    assert "terminated by other getUpdates request" in str(error)
    assert later == ()


def test_it_refuses_getupdates_while_a_webhook_is_set(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    telegram_emulator.send_private_message(token, "queued")

    async def body(bot: Bot) -> tuple[Any, ...]:
        assert await bot.set_webhook("https://bots.example.test/hook", secret_token="s3cret")
        info = await bot.get_webhook_info()
        with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
            await bot.get_updates()
        assert await bot.delete_webhook(drop_pending_updates=True)
        after = await bot.get_webhook_info()
        return info, after, await bot.get_updates()

    info, after, updates = run_with_bot(telegram_emulator, token, body)

    assert info.url == "https://bots.example.test/hook"
    assert info.has_custom_certificate is False
    assert info.pending_update_count == 1
    assert after.url == "" and after.pending_update_count == 0
    assert updates == ()


def test_it_makes_the_next_update_id_jump(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    before = telegram_emulator.send_private_message(token, "before")["update_id"]

    telegram_emulator.jump_update_id(token, by=1_000_000)
    after = telegram_emulator.send_private_message(token, "after")["update_id"]

    assert after == before + 1 + 1_000_000


def test_it_honours_allowed_updates(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]

    async def body(bot: Bot) -> tuple[str, ...]:
        await bot.get_updates(allowed_updates=["callback_query"])
        await telegram_emulator.acall("send_private_message", token=token, text="filtered out")
        return tuple(u.effective_message.text or "" for u in await bot.get_updates())

    assert run_with_bot(telegram_emulator, token, body) == ()
    assert telegram_emulator.updates(token)[-1]["filtered"] is True


# --------------------------------------------------------------------------- faults


def test_it_surfaces_429_as_retry_after_in_ptb(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user(first_name="Ann")["id"]

    async def body(bot: Bot) -> RetryAfter:
        await telegram_emulator.acall(
            "add_fault", token=token, kind="too_many_requests", method="sendMessage", retry_after=7
        )
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(chat_id, "hi")
        return caught.value

    error = run_with_bot(telegram_emulator, token, body)

    assert retry_after_seconds(error) == 7
    call = telegram_emulator.calls(token, method="sendMessage")[-1]
    assert call["status"] == 429 and call["fault"] == "too_many_requests"


def test_it_sends_the_retry_after_header_and_envelope(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    telegram_emulator.add_fault(token, "too_many_requests", retry_after=3)

    response = httpx.post(f"{telegram_emulator.base_url}{token}/getMe")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }


@pytest.mark.parametrize("status", [500, 502, 503])
def test_it_surfaces_5xx_as_network_error(
    telegram_emulator: TelegramEmulator, telegram_bot: dict, status: int
) -> None:
    token = telegram_bot["token"]

    async def body(bot: Bot) -> None:
        await telegram_emulator.acall("add_fault", token=token, kind="server_error", status=status)
        with pytest.raises(NetworkError):
            await bot.get_me()
        assert (await bot.get_me()).id == telegram_bot["id"]  # one-shot fault

    run_with_bot(telegram_emulator, token, body)


def test_it_surfaces_a_dropped_connection_as_network_error(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]

    async def body(bot: Bot) -> None:
        await telegram_emulator.acall("add_fault", token=token, kind="drop", method="getMe")
        with pytest.raises(NetworkError):
            await bot.get_me()
        assert (await bot.get_me()).id == telegram_bot["id"]  # the client recovers

    run_with_bot(telegram_emulator, token, body)


def test_it_answers_slowly_when_asked_to(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]

    async def body(bot: Bot) -> tuple[float, Any]:
        await telegram_emulator.acall(
            "add_fault", token=token, kind="slow", method="getMe", delay=0.4
        )
        started = time.monotonic()
        me = await bot.get_me()
        return time.monotonic() - started, me

    elapsed, me = run_with_bot(telegram_emulator, token, body)

    assert elapsed >= 0.4
    assert me.id == telegram_bot["id"]


def test_it_consumes_faults_in_order_and_repeats_them(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    url = f"{telegram_emulator.base_url}{token}/getMe"
    telegram_emulator.add_fault(token, "server_error", status=502, times=2)
    telegram_emulator.add_fault(token, "unauthorized")
    telegram_emulator.add_fault(token, "conflict", method="getUpdates")

    statuses = [httpx.post(url).status_code for _ in range(4)]

    assert statuses == [502, 502, 401, 200]
    assert [f["kind"] for f in telegram_emulator.pending_faults(token)] == ["conflict"]
    assert httpx.post(f"{telegram_emulator.base_url}{token}/getUpdates").status_code == 409


# --------------------------------------------------------------------------- sendMessage


def test_it_sends_a_plain_message_and_records_it(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user(first_name="Ann", username="ann")["id"]

    async def body(bot: Bot) -> tuple[telegram.Message, telegram.Message]:
        return await bot.send_message(chat_id, "  Hello, Ann!  "), await bot.send_message(
            chat_id, "again"
        )

    first, second = run_with_bot(telegram_emulator, token, body)

    assert first.text == "Hello, Ann!"  # Telegram trims surrounding whitespace
    assert first.from_user.id == telegram_bot["id"] and first.from_user.is_bot
    assert (
        first.chat.id == chat_id and first.chat.type == "private" and first.chat.username == "ann"
    )
    assert second.message_id == first.message_id + 1
    assert abs(first.date.timestamp() - time.time()) < 5
    record = telegram_emulator.sent_messages(token, chat_id=chat_id)[0]
    assert record["text"] == "Hello, Ann!" and record["message_id"] == first.message_id
    assert record["parse_mode"] is None and record["reply_to_message_id"] is None
    assert abs(record["time"] - time.time()) < 5


def test_it_accepts_the_allowed_html_tags(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]
    html = (
        "<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins><s>x</s><strike>k</strike>"
        '<del>d</del><span class="tg-spoiler">p</span><tg-spoiler>q</tg-spoiler>'
        '<a href="https://example.com/x">link</a> <code>c</code> '
        '<pre><code class="language-python">print(1)</code></pre>'
        "<blockquote>quote</blockquote><blockquote expandable>more</blockquote> &lt;&gt;&amp;&quot;"
    )

    message = run_with_bot(
        telegram_emulator, token, lambda bot: bot.send_message(chat_id, html, parse_mode="HTML")
    )

    parsed = {(e.type, text) for e, text in message.parse_entities().items()}
    assert ("bold", "b") in parsed and ("bold", "s") in parsed
    assert ("italic", "e") in parsed and ("underline", "n") in parsed
    assert (
        ("strikethrough", "k") in parsed
        and ("spoiler", "p") in parsed
        and ("spoiler", "q") in parsed
    )
    assert ("text_link", "link") in parsed and ("code", "c") in parsed
    assert ("pre", "print(1)") in parsed
    assert ("blockquote", "quote") in parsed and ("expandable_blockquote", "more") in parsed
    pre = next(e for e in message.entities if e.type == "pre")
    assert pre.language == "python"
    assert message.text.endswith('<>&"')
    assert telegram_emulator.sent_messages(token)[-1]["parse_mode"] == "HTML"


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        ("hello <foo>x</foo>", 'Unsupported start tag "foo" at byte offset 6'),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("2 < 3", 'Unsupported start tag "" at byte offset 2'),
        ("Tom & Jerry", "at byte offset 4"),
        ("😀<br>", 'Unsupported start tag "br" at byte offset 4'),
    ],
)
def test_it_rejects_invalid_html_with_cant_parse_entities(
    telegram_emulator: TelegramEmulator, telegram_bot: dict, html: str, reason: str
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]

    async def body(bot: Bot) -> BadRequest:
        with pytest.raises(BadRequest) as caught:
            await bot.send_message(chat_id, html, parse_mode="HTML")
        return caught.value

    error = run_with_bot(telegram_emulator, token, body)

    assert "can't parse entities" in error.message.lower()
    assert reason.lower() in error.message.lower()  # PTB re-cases the description
    assert telegram_emulator.sent_messages(token) == []


def test_it_validates_markdown_v2(telegram_emulator: TelegramEmulator, telegram_bot: dict) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]

    async def body(bot: Bot) -> telegram.Message:
        with pytest.raises(BadRequest, match="(?i)character '.' is reserved"):
            await bot.send_message(chat_id, "Done.", parse_mode="MarkdownV2")
        return await bot.send_message(chat_id, r"*Done* \- _ok_\.", parse_mode="MarkdownV2")

    message = run_with_bot(telegram_emulator, token, body)

    assert message.text == "Done - ok."
    assert {(e.type, t) for e, t in message.parse_entities().items()} == {
        ("bold", "Done"),
        ("italic", "ok"),
    }


def test_it_rejects_messages_longer_than_4096_utf16_units(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]

    async def body(bot: Bot) -> telegram.Message:
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(chat_id, "😀" * 2049)  # 2049 chars but 4098 UTF-16 units
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(chat_id, "<b>" + "a" * 4097 + "</b>", parse_mode="HTML")
        return await bot.send_message(chat_id, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")

    message = run_with_bot(telegram_emulator, token, body)

    assert len(message.text) == 4096  # the limit is counted after parsing the HTML


def test_it_rejects_empty_text_and_unknown_chats(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]

    async def body(bot: Bot) -> None:
        with pytest.raises(BadRequest, match="Message text is empty"):
            await bot.send_message(chat_id, "<b></b>  ", parse_mode="HTML")
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(987654321987, "hello?")

    run_with_bot(telegram_emulator, token, body)


def test_it_forbids_sending_to_a_user_who_blocked_the_bot(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    user_id = telegram_emulator.add_user(first_name="Grumpy")["id"]
    notice = telegram_emulator.block_bot(token, user_id)

    async def body(bot: Bot) -> tuple[telegram.Update, telegram.Message]:
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(user_id, "please come back")
        with pytest.raises(Forbidden):
            await bot.send_chat_action(user_id, "typing")
        (update,) = await bot.get_updates()
        await telegram_emulator.acall("unblock_bot", token=token, user_id=user_id)
        return update, await bot.send_message(user_id, "welcome back")

    update, message = run_with_bot(telegram_emulator, token, body)

    assert notice is not None and update.update_id == notice["update_id"]
    assert update.my_chat_member.new_chat_member.status == "kicked"
    assert update.my_chat_member.from_user.id == user_id
    assert message.text == "welcome back"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("javascript:alert(1)", "Wrong port number specified in the URL"),
        ("data:text/html;base64,PHNjcmlwdD4=", "Wrong port number specified in the URL"),
        ("ftp://files.example.org/a", "Unsupported URL protocol"),
        ("docs/readme.md", "Wrong HTTP URL"),
        ("/home/ann/notes.txt", "URL host is empty"),
    ],
)
def test_it_rejects_text_links_with_urls_telegram_refuses(
    telegram_emulator: TelegramEmulator, telegram_bot: dict, url: str, reason: str
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]
    link = telegram.MessageEntity("text_link", 0, 5, url=url)

    async def body(bot: Bot) -> BadRequest:
        with pytest.raises(BadRequest) as caught:
            await bot.send_message(chat_id, "click here", entities=[link])
        return caught.value

    error = run_with_bot(telegram_emulator, token, body)
    raw = httpx.post(
        f"{telegram_emulator.base_url}{token}/sendMessage",
        json={"chat_id": chat_id, "text": "click here", "entities": [link.to_dict()]},
    )

    assert raw.status_code == 400
    assert raw.json()["description"] == f"Bad Request: entity URL '{url}' is invalid: {reason}"
    assert reason.lower() in error.message.lower()
    assert telegram_emulator.sent_messages(token) == []


def test_it_normalises_accepted_text_link_urls(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]
    friend = telegram_emulator.add_user(first_name="Zoë")
    entities = [
        telegram.MessageEntity("text_link", 0, 4, url="HTTPS://Example.COM"),
        telegram.MessageEntity("text_link", 5, 4, url="example.org/a b"),
        telegram.MessageEntity("text_link", 10, 3, url=f"tg://user?id={friend['id']}"),
    ]

    message = run_with_bot(
        telegram_emulator,
        token,
        lambda bot: bot.send_message(chat_id, "site docs Zoë", entities=entities),
    )

    first, second, third = message.entities
    assert first.url == "https://example.com/"  # what Telegram echoes back
    assert second.url == "http://example.org/a%20b"
    assert third.type == "text_mention" and third.user.id == friend["id"]


def test_it_accepts_form_and_json_encoded_parameters(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]
    url = f"{telegram_emulator.base_url}{token}/sendMessage"
    first = httpx.post(url, json={"chat_id": chat_id, "text": "123"}).json()["result"]

    as_json = httpx.post(
        url,
        json={
            "chat_id": chat_id,
            "text": "json",
            "reply_parameters": {"message_id": first["message_id"]},
        },
    ).json()
    as_form = httpx.post(
        url,
        data={
            "chat_id": str(chat_id),
            "text": "[1]",
            "entities": '[{"type": "bold", "offset": 0, "length": 3}]',
            "reply_parameters": json.dumps({"message_id": first["message_id"]}),
        },
    ).json()
    as_query = httpx.get(url, params={"chat_id": chat_id, "text": "query"}).json()

    assert first["text"] == "123"  # free text is never JSON-decoded
    assert as_json["result"]["reply_to_message"]["message_id"] == first["message_id"]
    assert as_form["result"]["text"] == "[1]"
    assert as_form["result"]["entities"] == [{"type": "bold", "offset": 0, "length": 3}]
    assert as_form["result"]["reply_to_message"]["text"] == "123"
    assert as_query["ok"] is True and as_query["result"]["text"] == "query"


def test_it_records_chat_actions(telegram_emulator: TelegramEmulator, telegram_bot: dict) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]

    async def body(bot: Bot) -> bool:
        with pytest.raises(BadRequest):
            await bot.send_chat_action(chat_id, "dancing")
        return await bot.send_chat_action(chat_id, "typing")

    assert run_with_bot(telegram_emulator, token, body) is True
    (action,) = telegram_emulator.chat_actions(token)
    assert action["chat_id"] == chat_id and action["action"] == "typing"


def test_it_logs_calls_without_the_token(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    run_with_bot(telegram_emulator, token, lambda bot: bot.get_me())

    calls = telegram_emulator.calls(token)

    assert [c["method"] for c in calls] == ["getMe", "getMe"]  # initialize() + get_me()
    assert all(c["bot_id"] == telegram_bot["id"] and c["status"] == 200 for c in calls)
    assert token not in repr(calls)


def test_it_waits_for_sent_messages_and_times_out_with_a_clear_message(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]

    async def body(bot: Bot) -> list[dict]:
        waiting = asyncio.ensure_future(
            telegram_emulator.acall("wait_for_sent", token=token, count=2, timeout=5)
        )
        await bot.send_message(chat_id, "one")
        await bot.send_message(chat_id, "two")
        return await waiting

    records = run_with_bot(telegram_emulator, token, body)

    assert [r["text"] for r in records] == ["one", "two"]
    with pytest.raises(TimeoutError, match="waiting for 3 message"):
        telegram_emulator.wait_for_sent(token, 3, timeout=0.2)


# --------------------------------------------------------------------------- injected updates


def test_it_computes_mention_offsets_in_utf16_units(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    update = telegram_emulator.send_group_message(
        token, "😀🎉 hey {bot}, 👍 what's up?", mention_bot="username", title="Fans"
    )

    (received,) = run_with_bot(telegram_emulator, token, lambda bot: bot.get_updates())

    message = received.message
    assert (
        message.chat.type == "supergroup" and message.chat.title == "Fans" and message.chat.id < 0
    )
    mention = update["message"]["entities"][0]
    assert mention == {"type": "mention", "offset": 9, "length": len(telegram_bot["username"]) + 1}
    assert message.parse_entities(["mention"]) == {
        message.entities[0]: "@" + telegram_bot["username"]
    }


def test_it_builds_text_mentions_that_carry_the_user(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    friend = telegram_emulator.add_user(first_name="Zoë 🌸")  # no username
    telegram_emulator.send_group_message(
        token,
        "🙂 {bot} say hi to {user}!",
        mention_bot="text_mention",
        text_mention_user_id=friend["id"],
    )

    (received,) = run_with_bot(telegram_emulator, token, lambda bot: bot.get_updates())

    mentions = received.message.parse_entities(["text_mention"])
    assert sorted(mentions.values()) == sorted([telegram_bot["first_name"], "Zoë 🌸"])
    users = {e.user.id for e in mentions}
    assert users == {telegram_bot["id"], friend["id"]}


def test_it_delivers_the_start_command_with_a_bot_command_entity(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    group = telegram_emulator.add_group(title="Team")
    telegram_emulator.send_command(token, "start", args="ref42")
    telegram_emulator.send_command(token, "help", chat_id=group["id"])

    private, in_group = run_with_bot(telegram_emulator, token, lambda bot: bot.get_updates())

    assert private.message.text == "/start ref42"
    assert private.message.parse_entities(["bot_command"]) == {
        private.message.entities[0]: "/start"
    }
    command = f"/help@{telegram_bot['username']}"
    assert in_group.message.text == command
    assert list(in_group.message.parse_entities(["bot_command"]).values()) == [command]


def test_it_delivers_replies_to_the_bots_messages(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]

    async def body(bot: Bot) -> tuple[telegram.Message, telegram.Update]:
        sent = await bot.send_message(chat_id, "What is your name?")
        await telegram_emulator.acall("reply_to_bot", token=token, chat_id=chat_id, text="Ann")
        (update,) = await bot.get_updates()
        return sent, update

    sent, update = run_with_bot(telegram_emulator, token, body)

    assert update.message.text == "Ann"
    assert update.message.reply_to_message.message_id == sent.message_id
    assert update.message.reply_to_message.text == "What is your name?"
    assert update.message.reply_to_message.from_user.id == telegram_bot["id"]
    assert update.message.message_id == sent.message_id + 1


def test_it_delivers_edited_messages_with_edit_date(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    original = telegram_emulator.send_private_message(token, "helo")["message"]
    telegram_emulator.edit_message(token, original["chat"]["id"], original["message_id"], "hello")

    first, edited = run_with_bot(telegram_emulator, token, lambda bot: bot.get_updates())

    assert first.message.text == "helo"
    assert edited.message is None
    assert edited.edited_message.text == "hello"
    assert edited.edited_message.message_id == original["message_id"]
    assert edited.edited_message.edit_date is not None


def test_it_delivers_a_photo_without_text(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    telegram_emulator.send_media(token, "photo")
    telegram_emulator.send_media(token, "photo", caption="look @ this #cat")
    telegram_emulator.send_media(token, "sticker")
    telegram_emulator.send_media(token, "voice")

    photo, captioned, sticker, voice = run_with_bot(
        telegram_emulator, token, lambda bot: bot.get_updates()
    )

    assert photo.message.text is None and photo.message.caption is None
    assert len(photo.message.photo) == 3 and photo.message.photo[-1].width == 800
    assert captioned.message.caption == "look @ this #cat"
    assert list(captioned.message.parse_caption_entities(["hashtag"]).values()) == ["#cat"]
    assert sticker.message.sticker.emoji == "😀" and sticker.message.text is None
    assert voice.message.voice.duration == 3


def test_it_marks_messages_sent_by_other_bots(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    telegram_emulator.send_bot_message(token, "beep boop", sender_username="other_helper_bot")

    (update,) = run_with_bot(telegram_emulator, token, lambda bot: bot.get_updates())

    assert update.message.from_user.is_bot is True
    assert update.message.from_user.username == "other_helper_bot"
    assert update.message.chat.type == "supergroup"


def test_it_delivers_service_messages(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    newcomer = telegram_emulator.add_user(first_name="New")
    group = telegram_emulator.add_group(title="Club", chat_type="group")
    telegram_emulator.send_service_message(
        token, group["id"], user_ids=[newcomer["id"]], include_bot=True
    )

    added, joined = run_with_bot(telegram_emulator, token, lambda bot: bot.get_updates())

    assert added.my_chat_member.new_chat_member.status == "member"
    assert joined.message.text is None
    assert [u.id for u in joined.message.new_chat_members] == [newcomer["id"], telegram_bot["id"]]
    assert joined.message.chat.type == "group"


def test_it_delivers_button_presses_and_accepts_answers(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]
    keyboard = telegram.InlineKeyboardMarkup(
        [[telegram.InlineKeyboardButton("Yes", callback_data="yes")]]
    )

    async def body(bot: Bot) -> tuple[telegram.Message, telegram.Update, bool]:
        sent = await bot.send_message(chat_id, "Sure?", reply_markup=keyboard)
        await telegram_emulator.acall("press_button", token=token, chat_id=chat_id, data="yes")
        (update,) = await bot.get_updates()
        return sent, update, await update.callback_query.answer("ok")

    sent, update, answered = run_with_bot(telegram_emulator, token, body)

    assert sent.reply_markup.inline_keyboard[0][0].callback_data == "yes"
    assert update.callback_query.data == "yes"
    assert update.callback_query.message.message_id == sent.message_id
    assert answered is True


# --------------------------------------------------------------------------- groups


@pytest.mark.parametrize(
    ("chat_type", "kicked", "description"),
    [
        ("supergroup", True, "Forbidden: bot was kicked from the supergroup chat"),
        ("group", True, "Forbidden: bot was kicked from the group chat"),
        ("supergroup", False, "Forbidden: bot is not a member of the supergroup chat"),
        ("group", False, "Forbidden: bot is not a member of the group chat"),
    ],
)
def test_it_forbids_sending_to_a_group_the_bot_was_removed_from(
    telegram_emulator: TelegramEmulator,
    telegram_bot: dict,
    chat_type: str,
    kicked: bool,
    description: str,
) -> None:
    token = telegram_bot["token"]
    group = telegram_emulator.add_group(title="Club", chat_type=chat_type)
    admin = telegram_emulator.add_user(first_name="Admin")
    notice = telegram_emulator.remove_bot_from_group(token, group["id"], admin["id"], kicked=kicked)

    async def body(bot: Bot) -> tuple[telegram.Update, str, str]:
        with pytest.raises(Forbidden) as sending:
            await bot.send_message(group["id"], "anyone here?")
        with pytest.raises(Forbidden) as typing:
            await bot.send_chat_action(group["id"], "typing")
        (update,) = await bot.get_updates()
        return update, sending.value.message, typing.value.message

    update, send_error, action_error = run_with_bot(telegram_emulator, token, body)

    assert send_error == action_error == description
    assert notice is not None and update.update_id == notice["update_id"]
    change = update.my_chat_member
    assert change.chat.id == group["id"] and change.from_user.id == admin["id"]
    assert change.old_chat_member.status == "member"
    assert change.new_chat_member.status == ("kicked" if kicked else "left")
    assert change.new_chat_member.user.id == telegram_bot["id"]
    assert telegram_emulator.remove_bot_from_group(token, group["id"]) is None  # already out
    with pytest.raises(ValueError, match="not in chat"):
        telegram_emulator.send_group_message(token, "hello?", chat_id=group["id"])


def test_it_lets_the_bot_write_again_once_added_back(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    club = telegram_emulator.add_group(title="Club")
    team = telegram_emulator.add_group(title="Team", chat_type="group")
    telegram_emulator.remove_bot_from_group(token, club["id"])
    telegram_emulator.remove_bot_from_group(token, team["id"], kicked=False)
    telegram_emulator.add_bot_to_group(token, club["id"], status="administrator")
    telegram_emulator.send_service_message(token, team["id"], include_bot=True)

    async def body(bot: Bot) -> tuple[tuple[telegram.Update, ...], list[telegram.Message]]:
        updates = await bot.get_updates()
        sent = [await bot.send_message(c["id"], "I'm back") for c in (club, team)]
        return updates, sent

    updates, sent = run_with_bot(telegram_emulator, token, body)

    changes = [u.my_chat_member for u in updates if u.my_chat_member]
    assert [(c.chat.id, c.old_chat_member.status, c.new_chat_member.status) for c in changes] == [
        (club["id"], "member", "kicked"),
        (team["id"], "member", "left"),
        (club["id"], "kicked", "administrator"),
        (team["id"], "left", "member"),
    ]
    promoted = changes[2].new_chat_member
    assert isinstance(promoted, telegram.ChatMemberAdministrator)
    assert promoted.can_manage_chat and promoted.can_delete_messages
    joins = [u.message for u in updates if u.message and u.message.new_chat_members]
    assert [m.chat.id for m in joins] == [club["id"], team["id"]]
    assert all(m.new_chat_members[-1].id == telegram_bot["id"] for m in joins)
    assert [m.text for m in sent] == ["I'm back", "I'm back"]


def test_it_keeps_forum_topic_messages_in_their_thread(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    forum = telegram_emulator.add_group(title="Support", is_forum=True)
    thread_id = telegram_emulator.create_forum_topic(token, forum["id"], "Billing")
    telegram_emulator.send_group_message(
        token, "my invoice is wrong", chat_id=forum["id"], message_thread_id=thread_id
    )
    telegram_emulator.send_group_message(token, "hi all", chat_id=forum["id"])  # General
    telegram_emulator.send_command(token, "help", chat_id=forum["id"], message_thread_id=thread_id)

    async def body(bot: Bot) -> tuple[tuple[telegram.Update, ...], telegram.Message, Any]:
        updates = await bot.get_updates()
        answer = await bot.send_message(forum["id"], "Looking into it", message_thread_id=thread_id)
        with pytest.raises(BadRequest, match="Message thread not found"):
            await bot.send_message(forum["id"], "lost", message_thread_id=thread_id + 1000)
        await telegram_emulator.acall(
            "reply_to_bot", token=token, chat_id=forum["id"], text="thanks"
        )
        return updates, answer, await bot.get_updates(offset=updates[-1].update_id + 1)

    (created, question, general, command), answer, (reply,) = run_with_bot(
        telegram_emulator, token, body
    )

    assert created.message.chat.is_forum is True and forum["is_forum"] is True
    assert created.message.forum_topic_created.name == "Billing"
    assert created.message.message_id == created.message.message_thread_id == thread_id
    assert thread_id != 1  # 1 is the General topic
    for message in (question.message, command.message, answer, reply.message):
        assert message.message_thread_id == thread_id and message.is_topic_message is True
    # Telegram shows a topic's messages as replies to the topic's creation.
    assert question.message.reply_to_message.forum_topic_created.name == "Billing"
    assert answer.reply_to_message.message_id == thread_id
    assert reply.message.reply_to_message.message_id == answer.message_id
    assert general.message.message_thread_id is None and not general.message.is_topic_message
    assert command.message.text == f"/help@{telegram_bot['username']}"
    records = telegram_emulator.sent_messages(token, chat_id=forum["id"])
    assert [(r["text"], r["message_thread_id"]) for r in records] == [
        ("Looking into it", thread_id)
    ]
    with pytest.raises(LookupError, match="create_forum_topic"):
        telegram_emulator.send_group_message(
            token, "?", chat_id=forum["id"], message_thread_id=thread_id + 1000
        )


def test_it_migrates_a_group_to_a_supergroup(
    telegram_emulator: TelegramEmulator, telegram_bot: dict
) -> None:
    token = telegram_bot["token"]
    group = telegram_emulator.add_group(title="Family", chat_type="group")
    new_id = telegram_emulator.migrate_group(token, group["id"])
    telegram_emulator.send_group_message(token, "we moved", chat_id=new_id)

    async def body(bot: Bot) -> tuple[tuple[telegram.Update, ...], ChatMigrated, telegram.Message]:
        updates = await bot.get_updates()
        with pytest.raises(ChatMigrated) as caught:
            await bot.send_message(group["id"], "hello?")
        return updates, caught.value, await bot.send_message(new_id, "hello!")

    (to_msg, from_msg, moved), error, sent = run_with_bot(telegram_emulator, token, body)
    raw = httpx.post(
        f"{telegram_emulator.base_url}{token}/sendMessage",
        json={"chat_id": group["id"], "text": "hello?"},
    )

    assert str(new_id).startswith("-100") and new_id != group["id"]
    assert to_msg.message.chat.id == group["id"] and to_msg.message.chat.type == "group"
    assert to_msg.message.migrate_to_chat_id == new_id
    assert from_msg.message.chat.id == new_id and from_msg.message.chat.type == "supergroup"
    assert from_msg.message.migrate_from_chat_id == group["id"]
    assert from_msg.message.chat.title == "Family"
    assert moved.message.chat.id == new_id and moved.message.text == "we moved"
    assert error.new_chat_id == new_id
    assert raw.status_code == 400 and raw.json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": new_id},
    }
    assert sent.chat.id == new_id and sent.chat.type == "supergroup"
    with pytest.raises(ValueError, match="migrated to supergroup"):
        telegram_emulator.send_group_message(token, "old chat", chat_id=group["id"])


# --------------------------------------------------------------------------- out of process


def test_it_runs_standalone_and_is_driven_over_http() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "emulators.telegram", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert "listening on http://" in line, line
        url = line.strip().rsplit(" ", 1)[-1]
        with EmulatorClient(url) as client:
            client.wait_until_up()
            token = client.add_bot(username="remote_bot")["token"]
            user = client.add_user(first_name="Remote")
            client.send_command(token, "start", user_id=user["id"])

            async def main() -> str:
                async with ptb(client, token) as bot:
                    (update,) = await bot.get_updates(timeout=5)
                    await bot.send_message(
                        update.message.chat.id, f"Hi {update.message.from_user.first_name}"
                    )
                    return update.message.text

            assert asyncio.run(main()) == "/start"
            (record,) = client.wait_for_sent(token, 1, chat_id=user["id"], timeout=5)
            assert record["text"] == "Hi Remote"
            with pytest.raises(TimeoutError):
                client.wait_for_sent(token, 2, timeout=0.2)
            with pytest.raises(KeyError):
                client.sent_messages("1:AAnot-registered")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0
