"""The Telegram emulator's contract: what Botfleet relies on, checked with python-telegram-bot.

A PTB ``Bot`` lives inside one ``asyncio.run``; the emulator runs on its own loop and
thread, so a control call made while PTB waits goes through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
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
from telegram import Bot, Message, MessageEntity, ReplyParameters
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)

from emulators.telegram import EmulatorClient, TelegramEmulator

pytestmark = [
    pytest.mark.timeout(20),
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]

T = TypeVar("T")


def ptb(emu: TelegramEmulator | EmulatorClient, token: str) -> Bot:
    return Bot(token, base_url=emu.base_url, base_file_url=emu.base_file_url)


def run_with_bot(emu: TelegramEmulator, token: str, body: Callable[[Bot], Awaitable[T]]) -> T:
    async def main() -> T:
        async with ptb(emu, token) as bot:
            return await body(bot)

    return asyncio.run(main())


def call(emu: TelegramEmulator, token: str, method: str, **params: Any) -> httpx.Response:
    return httpx.post(f"{emu.base_url}{token}/{method}", json=params, timeout=10)


async def polling(emu: TelegramEmulator, token: str) -> None:
    """Return once the emulator holds a waiting getUpdates of the bot."""
    deadline = time.monotonic() + 5
    while not (await asyncio.to_thread(emu.bot_status, token))["polling"]:
        assert time.monotonic() < deadline, "the bot never long-polled"
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- the door


def test_it_answers_get_me_and_refuses_unknown_tokens_and_methods(
    telegram_emulator, telegram_bot
) -> None:  # type: ignore[no-untyped-def]
    me = run_with_bot(telegram_emulator, telegram_bot["token"], lambda bot: bot.get_me())
    assert (me.id, me.username, me.is_bot) == (telegram_bot["id"], telegram_bot["username"], True)

    with pytest.raises(InvalidToken):
        run_with_bot(
            telegram_emulator, "123456:AAunknownunknownunknownunknownunkn", lambda bot: bot.get_me()
        )
    answer = call(telegram_emulator, telegram_bot["token"], "sendTelepathy")
    assert (answer.status_code, answer.json()) == (
        404,
        {"ok": False, "error_code": 404, "description": "Not Found"},
    )
    assert (
        call(telegram_emulator, telegram_bot["token"], "deleteMessage").status_code == 404
    )  # not emulated


def test_it_refuses_parse_mode(telegram_emulator, telegram_bot) -> None:  # type: ignore[no-untyped-def]
    chat_id = telegram_emulator.add_user()["id"]

    answer = call(
        telegram_emulator,
        telegram_bot["token"],
        "sendMessage",
        chat_id=chat_id,
        text="<b>hi</b>",
        parse_mode="HTML",
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: parse_mode is not emulated; send entities",
    }
    assert telegram_emulator.sent_messages(telegram_bot["token"]) == []


def test_it_keeps_connections_alive_between_requests(telegram_emulator, telegram_bot) -> None:  # type: ignore[no-untyped-def]
    connection = http.client.HTTPConnection("127.0.0.1", telegram_emulator.port, timeout=5)
    path = f"/bot{telegram_bot['token']}/getUpdates?timeout=0.3"
    sockets = []
    for _ in range(3):
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200 and response.read()
        sockets.append(connection.sock)
        time.sleep(0.5)

    assert sockets[0] is not None and sockets == [sockets[0]] * 3  # one connection, never reopened
    connection.close()


# --------------------------------------------------------------------------- sending


def test_it_stores_a_message_as_telegram_does(telegram_emulator, telegram_bot) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]
    asked = telegram_emulator.send_private_message(token, "question")["message"]
    chat_id = asked["chat"]["id"]

    async def body(bot: Bot) -> Any:
        return await bot.send_message(
            chat_id,
            "  😀 bold, see https://example.com/docs  ",
            entities=[MessageEntity("bold", 5, 4)],
            reply_parameters=ReplyParameters(asked["message_id"], allow_sending_without_reply=True),
        )

    sent = run_with_bot(telegram_emulator, token, body)

    assert sent.text == "😀 bold, see https://example.com/docs"  # trimmed, the entities moved along
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 3, 4),
        ("url", 13, 24),
    ]
    assert sent.reply_to_message.message_id == asked["message_id"]
    (record,) = telegram_emulator.sent_messages(token, chat_id=chat_id)
    assert (record["message_id"], record["reply_to_message_id"], record["text"]) == (
        sent.message_id,
        asked["message_id"],
        sent.text,
    )


def test_it_refuses_what_telegram_refuses(telegram_emulator, telegram_bot) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]
    user = telegram_emulator.add_user()["id"]
    blocked = telegram_emulator.add_user()["id"]
    telegram_emulator.block_bot(token, blocked)

    async def body(bot: Bot) -> list[str]:
        refusals = []
        for chat_id, text in ((user, "x" * 4097), (user, "   "), (-42, "hi"), (blocked, "hi")):
            try:
                await bot.send_message(chat_id, text)
            except (BadRequest, Forbidden) as exc:
                refusals.append(f"{type(exc).__name__}: {exc.message}")
        return refusals

    assert run_with_bot(telegram_emulator, token, body) == [
        "BadRequest: Message is too long",
        "BadRequest: Message text is empty",
        "BadRequest: Chat not found",
        "Forbidden: Forbidden: bot was blocked by the user",
    ]
    assert telegram_emulator.send_private_message(
        token, "back", user_id=blocked
    )  # writing unblocks
    assert call(telegram_emulator, token, "sendMessage", chat_id=blocked, text="hi").json()["ok"]


def test_it_follows_groups_topics_and_migrations(telegram_emulator, telegram_bot) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]
    forum = telegram_emulator.add_group(title="Forum", is_forum=True)
    thread = telegram_emulator.create_forum_topic(token, forum["id"], "Ships")
    asked = telegram_emulator.send_group_message(
        token,
        "😀 {bot} ships?",
        chat_id=forum["id"],
        mention_bot="username",
        message_thread_id=thread,
    )
    group = telegram_emulator.add_group(title="Old", chat_type="group")
    telegram_emulator.send_group_message(token, "hello", chat_id=group["id"])
    new_id = telegram_emulator.migrate_group(token, group["id"])
    gone = telegram_emulator.add_group(title="Gone")
    telegram_emulator.remove_bot_from_group(token, gone["id"])

    async def body(bot: Bot) -> list[Any]:
        reply = await bot.send_message(
            forum["id"],
            "in the topic",
            reply_parameters=ReplyParameters(asked["message"]["message_id"]),
        )
        outcomes: list[Any] = [reply.message_thread_id]
        for chat_id in (group["id"], gone["id"]):
            try:
                await bot.send_message(chat_id, "hi")
            except (ChatMigrated, Forbidden) as exc:
                outcomes.append(getattr(exc, "new_chat_id", None) or exc.message)
        await asyncio.to_thread(telegram_emulator.add_bot_to_group, token, gone["id"])
        outcomes.append((await bot.send_message(gone["id"], "back")).chat.id)
        return outcomes

    message = asked["message"]
    assert message["message_thread_id"] == thread and message["is_topic_message"]
    assert message["entities"] == [
        {"type": "mention", "offset": 3, "length": len(telegram_bot["username"]) + 1}
    ]  # UTF-16
    assert run_with_bot(telegram_emulator, token, body) == [
        thread,
        new_id,
        "Forbidden: bot was kicked from the supergroup chat",
        gone["id"],
    ]
    kinds = [u["type"] for u in telegram_emulator.updates(token)]
    assert kinds.count("my_chat_member") == 2 and kinds[-1] == "message"  # kicked, added (+ joined)


def test_it_keeps_commands_by_scope(telegram_emulator, telegram_bot) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]
    operator = {"type": "chat", "chat_id": 42}
    call(
        telegram_emulator,
        token,
        "setMyCommands",
        commands=[{"command": "help", "description": "Help"}],
    )
    call(
        telegram_emulator,
        token,
        "setMyCommands",
        commands=[{"command": "pause", "description": "Pause"}],
        scope=operator,
    )

    everyone = call(telegram_emulator, token, "getMyCommands").json()["result"]
    operators = call(telegram_emulator, token, "getMyCommands", scope=operator).json()["result"]
    refused = call(
        telegram_emulator,
        token,
        "setMyCommands",
        commands=[{"command": "Bad Name", "description": "x"}],
    )

    assert ([c["command"] for c in everyone], [c["command"] for c in operators]) == (
        ["help"],
        ["pause"],
    )
    assert refused.json()["description"] == "Bad Request: BOT_COMMAND_INVALID"


def test_it_shows_drafts_in_private_chats_only(telegram_emulator, telegram_bot) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]
    group = telegram_emulator.add_group()

    def draft(chat: int, draft_id: int, text: str) -> dict:
        return call(
            telegram_emulator, token, "sendMessageDraft", chat_id=chat, draft_id=draft_id, text=text
        ).json()

    assert draft(chat_id, 7, "Thinking about it")["result"] is True
    assert draft(group["id"], 7, "no")["description"] == "Bad Request: TEXTDRAFT_PEER_INVALID"
    assert draft(chat_id, 0, "no")["description"] == "Bad Request: RANDOM_ID_INVALID"
    assert [(d["draft_id"], d["text"]) for d in telegram_emulator.drafts(token)] == [
        (7, "Thinking about it")
    ]
    assert telegram_emulator.sent_messages(token) == []  # a draft is no message


# --------------------------------------------------------------------------- editing


def test_it_edits_the_bots_message_in_place(telegram_emulator, telegram_bot) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]
    group = telegram_emulator.add_group()["id"]

    async def body(bot: Bot) -> tuple[Message, Message, Message]:
        sent = await bot.send_message(group, "Draft")
        grown = await bot.edit_message_text("Draft, then more", group, sent.message_id)
        bold = await bot.edit_message_text(  # the same text: new entities are a change
            "Draft, then more", group, sent.message_id, entities=[MessageEntity("bold", 0, 5)]
        )
        return sent, grown, bold

    sent, grown, bold = run_with_bot(telegram_emulator, token, body)

    assert isinstance(grown, Message) and grown.message_id == sent.message_id
    assert (grown.text, grown.entities, sent.edit_date) == ("Draft, then more", (), None)
    assert grown.edit_date is not None
    assert [(e.type, e.offset, e.length) for e in bold.entities] == [("bold", 0, 5)]
    (record,) = telegram_emulator.sent_messages(token, chat_id=group)  # reads as it does now
    assert (record["text"], record["entities"], record["edits"]) == (
        "Draft, then more",
        [{"type": "bold", "offset": 0, "length": 5}],
        2,
    )
    assert record["message"]["edit_date"] and record["edited_at"] >= record["time"]
    assert [
        (e["message_id"], e["text"], e["entities"]) for e in telegram_emulator.edits(token)
    ] == [
        (sent.message_id, "Draft, then more", []),
        (sent.message_id, "Draft, then more", record["entities"]),
    ]
    assert telegram_emulator.edits(token, chat_id=telegram_emulator.add_group()["id"]) == []
    assert telegram_emulator.wait_for_calls(token, "editMessageText", 2, timeout=1) == 2
    reply = telegram_emulator.reply_to_bot(token, group, "ok")["message"]
    assert reply["reply_to_message"]["text"] == "Draft, then more"  # the world has the new text


NOT_MODIFIED = (
    "BadRequest: Message is not modified: specified new message content and reply markup"
    " are exactly the same as a current content and reply markup of the message"
)


@pytest.mark.parametrize(
    ("edit", "refusal"),
    [
        ({"message_id": "mine", "text": "Mine"}, NOT_MODIFIED),
        ({"message_id": 999, "text": "New"}, "BadRequest: Message to edit not found"),
        ({"message_id": "theirs", "text": "New"}, "BadRequest: Message can't be edited"),
        ({"message_id": "mine", "text": "  "}, "BadRequest: Message text is empty"),
        ({"text": "New"}, "BadRequest: Message identifier is not specified"),
        (
            {"message_id": "mine", "text": "<b>New</b>", "parse_mode": "HTML"},
            "BadRequest: Parse_mode is not emulated; send entities",
        ),
        (
            {"message_id": "mine", "text": "New", "kicked": True},
            "Forbidden: Forbidden: bot was kicked from the supergroup chat",
        ),
    ],
    ids=["not-modified", "unknown", "theirs", "empty", "no-id", "parse-mode", "kicked"],
)
def test_it_refuses_edits_as_telegram_does(telegram_emulator, telegram_bot, edit, refusal) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]
    group = telegram_emulator.add_group()["id"]
    theirs = telegram_emulator.send_group_message(token, "Theirs", chat_id=group)["message"]
    mine = call(telegram_emulator, token, "sendMessage", chat_id=group, text="Mine").json()
    ids = {"mine": mine["result"]["message_id"], "theirs": theirs["message_id"]}
    edit = dict(edit)
    if edit.pop("kicked", False):
        telegram_emulator.remove_bot_from_group(token, group)
    if "message_id" in edit:
        edit["message_id"] = ids.get(edit["message_id"], edit["message_id"])

    async def body(bot: Bot) -> str:
        try:
            await bot.edit_message_text(chat_id=group, **edit)
        except (BadRequest, Forbidden) as exc:
            return f"{type(exc).__name__}: {exc.message}"
        return "edited"

    assert run_with_bot(telegram_emulator, token, body) == refusal
    assert [m["text"] for m in telegram_emulator.sent_messages(token)] == ["Mine"]
    assert telegram_emulator.edits(token) == []


# --------------------------------------------------------------------------- getUpdates


def test_it_wakes_a_long_poll_at_once_and_confirms_by_offset(
    telegram_emulator, telegram_bot
) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]

    async def body(bot: Bot) -> tuple[float, list[str], list[str], list[str], float]:
        poll = asyncio.create_task(bot.get_updates(timeout=10))
        await polling(telegram_emulator, token)
        started = time.monotonic()
        await asyncio.to_thread(telegram_emulator.send_private_message, token, "one")
        first = await poll
        woke = time.monotonic() - started
        await asyncio.to_thread(telegram_emulator.send_private_message, token, "two")
        again = await bot.get_updates()  # nothing confirmed yet
        rest = await bot.get_updates(offset=first[0].update_id + 1)
        idle = time.monotonic()
        empty = await bot.get_updates(offset=rest[-1].update_id + 1, timeout=1)
        return (
            woke,
            [u.message.text for u in first],
            [u.message.text for u in again],
            [u.message.text for u in rest] + list(empty),
            time.monotonic() - idle,
        )

    woke, first, again, rest, idle = run_with_bot(telegram_emulator, token, body)

    assert woke < 0.5  # the update ended the 10 s poll
    assert (first, again, rest) == (["one"], ["one", "two"], ["two"])
    assert 0.9 <= idle < 2.5  # an empty long poll waits its timeout


def test_it_ends_the_earlier_poll_with_409_and_refuses_polls_while_a_webhook_is_set(
    telegram_emulator, telegram_bot
) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]

    async def main() -> None:
        async with ptb(telegram_emulator, token) as first, ptb(telegram_emulator, token) as second:
            earlier = asyncio.create_task(first.get_updates(timeout=10))
            await polling(telegram_emulator, token)
            assert await second.get_updates(timeout=0) == ()
            with pytest.raises(Conflict, match="terminated by other getUpdates request"):
                await earlier
            await first.set_webhook("https://bots.example.test/hook")
            with pytest.raises(
                Conflict, match="can't use getUpdates method while webhook is active"
            ):
                await first.get_updates()
            await first.delete_webhook()

    asyncio.run(main())


def test_it_jumps_update_ids_redelivers_and_filters_by_allowed_updates(
    telegram_emulator, telegram_bot
) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]
    first = telegram_emulator.send_private_message(token, "before")
    assert telegram_emulator.jump_update_id(token, to=2**40) == 2**40
    after = telegram_emulator.send_private_message(token, "after")

    async def body(bot: Bot) -> tuple[list[int], list[int]]:
        polled = [u.update_id for u in await bot.get_updates()]
        await bot.get_updates(offset=polled[-1] + 1, allowed_updates=["my_chat_member"])
        await asyncio.to_thread(telegram_emulator.redeliver_update, token, first)
        await asyncio.to_thread(telegram_emulator.send_private_message, token, "filtered out")
        return polled, [u.update_id for u in await bot.get_updates()]

    polled, redelivered = run_with_bot(telegram_emulator, token, body)

    assert polled == [first["update_id"], 2**40] and after["update_id"] == 2**40
    assert redelivered == [first["update_id"]]  # the same id again; the filtered one never comes
    assert telegram_emulator.updates(token)[-1]["filtered"] is True


# --------------------------------------------------------------------------- faults


def test_it_answers_faults_the_way_telegram_and_its_proxies_fail(
    telegram_emulator, telegram_bot
) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]
    chat_id = telegram_emulator.add_user()["id"]
    for kind, options in [
        ("too_many_requests", {"retry_after": 7}),
        ("server_error", {"status": 503}),
        ("drop_connection", {}),
        ("html", {}),
        ("error", {"description": "Bad Request: message is too long"}),
        ("slow", {"delay": 0.5, "times": 2}),
    ]:
        telegram_emulator.add_fault(token, kind, **{"method": "sendMessage", **options})

    async def body(bot: Bot) -> list[str]:
        outcomes = []
        for _ in range(5):
            try:
                await bot.send_message(chat_id, "hi")
            except RetryAfter as exc:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    outcomes.append(f"RetryAfter {exc.retry_after}")
            except (BadRequest, NetworkError) as exc:
                outcomes.append(type(exc).__name__)
        started = time.monotonic()
        await bot.send_message(chat_id, "slow")
        await bot.send_message(chat_id, "slow")
        outcomes.append(f"slow {time.monotonic() - started >= 1.0}")
        await asyncio.to_thread(telegram_emulator.add_fault, token, "unauthorized", method="getMe")
        try:
            await bot.get_me()
        except InvalidToken:
            outcomes.append("InvalidToken")
        return outcomes

    outcomes = run_with_bot(telegram_emulator, token, body)

    assert outcomes[0] in ("RetryAfter 7", "RetryAfter 0:00:07")
    # a 503, a dropped connection and a proxy's HTML page are network errors to PTB
    assert outcomes[1:] == [
        "NetworkError",
        "NetworkError",
        "NetworkError",
        "BadRequest",
        "slow True",
        "InvalidToken",
    ]
    calls = telegram_emulator.calls(token, method="sendMessage")
    assert [c["fault"] for c in calls[:5]] == [
        "too_many_requests",
        "server_error",
        "drop_connection",
        "html",
        "error",
    ]
    assert [c["status"] for c in calls[:5]] == [429, 503, 0, 502, 400]
    assert all(token not in str(c) for c in telegram_emulator.calls(token))  # only the bot id


def test_it_sends_retry_after_in_the_header_and_the_envelope(
    telegram_emulator, telegram_bot
) -> None:  # type: ignore[no-untyped-def]
    telegram_emulator.add_fault(telegram_bot["token"], "too_many_requests", retry_after=3)

    answer = call(telegram_emulator, telegram_bot["token"], "getMe")

    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "3")
    assert answer.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }


# --------------------------------------------------------------------------- files


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"pixels" * 50).decode()


def test_it_serves_the_files_of_a_bots_updates_and_only_to_it(
    telegram_emulator, telegram_bot
) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]
    photo = telegram_emulator.send_media(token, kind="photo", caption="label", content=PNG)[
        "message"
    ]
    huge = telegram_emulator.send_media(token, kind="video", size=21 * 1024 * 1024)["message"]

    async def body(bot: Bot) -> tuple[bytes, list[str]]:
        file = await bot.get_file(photo["photo"][-1]["file_id"])
        data = bytes(await file.download_as_bytearray())
        refusals = []
        for file_id in (huge["video"]["file_id"], "AgACnope"):
            try:
                await bot.get_file(file_id)
            except BadRequest as exc:
                refusals.append(exc.message)
        return data, refusals

    data, refusals = run_with_bot(telegram_emulator, token, body)

    assert data == base64.b64decode(PNG)
    assert refusals == ["File is too big", "Invalid file_id"]
    assert [d["bytes"] for d in telegram_emulator.file_downloads(token)] == [len(data)]
    (path,) = [d["file_path"] for d in telegram_emulator.file_downloads(token)]
    other = telegram_emulator.add_bot()["token"]
    assert httpx.get(f"{telegram_emulator.base_file_url}{other}/{path}").status_code == 404


# --------------------------------------------------------------------------- out of process


def test_it_runs_standalone_and_is_driven_over_http() -> None:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "emulators.telegram", "--port", "0"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert "listening on http://" in line, line
        with EmulatorClient(line.split()[-1]) as client:
            token = client.add_bot(username="remote_bot")["token"]
            client.send_command(token, "start", user_id=client.add_user(first_name="Remote")["id"])

            async def main() -> str:
                async with ptb(client, token) as bot:
                    (update,) = await bot.get_updates(timeout=5)
                    sent = await bot.send_message(
                        update.message.chat.id, f"Hi {update.message.from_user.first_name}"
                    )
                    await bot.edit_message_text(f"{sent.text}!", sent.chat.id, sent.message_id)
                    return f"{update.message.text} {update.message.entities[0].type}"

            assert asyncio.run(main()) == "/start bot_command"
            assert [m["text"] for m in client.wait_for_sent(token, 1, timeout=5)] == ["Hi Remote!"]
            assert [e["text"] for e in client.edits(token)] == ["Hi Remote!"]
            with pytest.raises(TimeoutError):
                client.wait_for_sent(token, 2, timeout=0.2)
            with pytest.raises(KeyError):
                client.sent_messages("1:AAnot-registered")
            with pytest.raises(TypeError):
                client.send_private_message(token)  # bound to the state's signature before sending
            with pytest.raises(AttributeError):
                client.press_button  # noqa: B018 - not an operation
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
    assert code == 0
