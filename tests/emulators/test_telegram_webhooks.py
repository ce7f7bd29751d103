"""Webhook delivery of the Telegram Bot API emulator, received by a small aiohttp server.

The receiver runs on the test's loop (with the PTB ``Bot``); the emulator delivers from
its own loop and thread, so the tests wait for what they expect instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from aiohttp import web
from telegram import Bot
from telegram.error import BadRequest, Conflict

from emulators.telegram import TelegramEmulator

pytestmark = [
    pytest.mark.timeout(20),
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]

JSON = dict[str, Any]
T = TypeVar("T")
SECRET_HEADER = "x-telegram-bot-api-secret-token"


@pytest.fixture(scope="module")
def telegram_emulator() -> Iterator[TelegramEmulator]:
    """This module's emulator: retries fast enough for tests (20 ms, doubling up to 100 ms)."""
    with TelegramEmulator(seed=4321) as emulator:
        emulator.configure_webhooks(retry_base=0.02, retry_cap=0.1)
        yield emulator


@pytest.fixture()
def token(telegram_emulator: TelegramEmulator, telegram_bot: dict) -> Iterator[str]:
    """A fresh bot's token; its webhook is deleted afterwards, so nothing retries against
    a receiver that is gone."""
    yield telegram_bot["token"]
    httpx.post(f"{telegram_emulator.base_url}{telegram_bot['token']}/deleteWebhook")


@dataclass
class Received:
    headers: dict[str, str]  # lower-cased names
    body: JSON


@dataclass
class Receiver:
    """A webhook endpoint: records each request and answers ``status`` (after ``delay``,
    and once ``gate`` is open when there is one)."""

    url: str = ""
    status: int = 200
    delay: float = 0.0
    gate: asyncio.Event | None = None
    requests: list[Received] = field(default_factory=list)
    busy: int = 0
    most_busy: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            Received({k.lower(): v for k, v in request.headers.items()}, await request.json())
        )
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.delay)
            return web.Response(status=self.status)
        finally:
            self.busy -= 1

    async def wait_for(self, count: int) -> list[Received]:
        """The requests, once at least ``count`` arrived."""
        deadline = time.monotonic() + 5
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} requests came"
            await asyncio.sleep(0.005)
        return self.requests

    def texts(self) -> list[str]:
        return [r.body["message"]["text"] for r in self.requests]


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield receiver
    finally:
        if receiver.gate is not None:
            receiver.gate.set()
        await runner.cleanup()


def run_with_bot(emu: TelegramEmulator, token: str, body: Callable[[Bot], Awaitable[T]]) -> T:
    """Run ``body(bot)`` on a fresh loop with an initialised PTB Bot."""

    async def main() -> T:
        async with Bot(token, base_url=emu.base_url, base_file_url=emu.base_file_url) as bot:
            return await body(bot)

    return asyncio.run(main())


async def eventually(emu: TelegramEmulator, token: str, check: Callable[[JSON], bool]) -> JSON:
    """The bot's ``bot_status`` once ``check`` holds for it."""
    deadline = time.monotonic() + 5
    while not check(status := await emu.acall("bot_status", token=token)):
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.005)
    return status


def delivered(status: JSON) -> bool:
    return status["pending_update_count"] == 0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- delivery


def test_it_posts_updates_to_the_webhook_with_the_secret_header(
    telegram_emulator: TelegramEmulator, token: str
) -> None:
    async def body(bot: Bot) -> tuple[JSON, list[Received]]:
        async with webhook_receiver() as hook:
            assert await bot.set_webhook(hook.url, secret_token="s3cret_-Token")
            update = await telegram_emulator.acall(
                "send_private_message", token=token, text="over the hook"
            )
            await eventually(telegram_emulator, token, delivered)
            return update, hook.requests

    update, requests = run_with_bot(telegram_emulator, token, body)

    (received,) = requests
    assert received.body == update
    assert received.headers["content-type"] == "application/json"
    assert received.headers[SECRET_HEADER] == "s3cret_-Token"
    (attempt,) = telegram_emulator.webhook_deliveries(token)
    assert attempt["update_id"] == update["update_id"]
    assert (attempt["status"], attempt["error"]) == (200, None)
    assert telegram_emulator.updates(token)[-1]["delivered_at"] is not None


def test_it_delivers_updates_queued_before_the_webhook_in_order(
    telegram_emulator: TelegramEmulator, token: str
) -> None:
    for text in ("one", "two", "three"):
        telegram_emulator.send_private_message(token, text)

    async def body(bot: Bot) -> list[str]:
        async with webhook_receiver() as hook:
            assert await bot.set_webhook(hook.url, max_connections=1)
            await eventually(telegram_emulator, token, delivered)
            return hook.texts()

    assert run_with_bot(telegram_emulator, token, body) == ["one", "two", "three"]


def test_it_uses_the_secret_of_the_latest_set_webhook(
    telegram_emulator: TelegramEmulator, token: str
) -> None:
    async def body(bot: Bot) -> list[str | None]:
        async with webhook_receiver() as hook:
            for secret in ("first", "second", None):
                assert await bot.set_webhook(hook.url, secret_token=secret)
                await telegram_emulator.acall("send_private_message", token=token, text="hi")
                await eventually(telegram_emulator, token, delivered)
            return [r.headers.get(SECRET_HEADER) for r in hook.requests]

    assert run_with_bot(telegram_emulator, token, body) == ["first", "second", None]


def test_it_keeps_at_most_max_connections_requests_in_flight(
    telegram_emulator: TelegramEmulator, token: str
) -> None:
    async def body(bot: Bot) -> tuple[int, JSON, list[str], int]:
        async with webhook_receiver() as hook:
            hook.gate = asyncio.Event()
            assert await bot.set_webhook(hook.url, max_connections=2)
            for text in ("a", "b", "c", "d"):
                await telegram_emulator.acall("send_private_message", token=token, text=text)
            await hook.wait_for(2)
            await asyncio.sleep(0.05)  # room for a third request, were it sent
            held = len(hook.requests)
            status = await telegram_emulator.acall("bot_status", token=token)
            hook.gate.set()
            await eventually(telegram_emulator, token, delivered)
            return held, status, hook.texts(), hook.most_busy

    held, status, texts, most_busy = run_with_bot(telegram_emulator, token, body)

    assert held == 2 and most_busy == 2
    assert status["webhook_in_flight"] == 2 and status["pending_update_count"] == 4
    assert sorted(texts[:2]) == ["a", "b"] and sorted(texts) == ["a", "b", "c", "d"]


# --------------------------------------------------------------------------- failures


def test_it_retries_a_failing_webhook_and_reports_the_last_error(
    telegram_emulator: TelegramEmulator, token: str
) -> None:
    async def body(bot: Bot) -> tuple[Any, Any, list[Received]]:
        async with webhook_receiver() as hook:
            hook.status = 403
            assert await bot.set_webhook(hook.url)
            await telegram_emulator.acall("send_private_message", token=token, text="again")
            await hook.wait_for(2)
            failing = await bot.get_webhook_info()
            hook.status = 200
            await eventually(telegram_emulator, token, delivered)
            return failing, await bot.get_webhook_info(), hook.requests

    failing, after, requests = run_with_bot(telegram_emulator, token, body)

    assert failing.pending_update_count == 1
    assert failing.last_error_message == "Wrong response from the webhook: 403 Forbidden"
    assert abs(failing.last_error_date.timestamp() - time.time()) < 5
    assert after.pending_update_count == 0
    assert len({r.body["update_id"] for r in requests}) == 1  # the same update, again
    statuses = [a["status"] for a in telegram_emulator.webhook_deliveries(token)]
    assert len(statuses) >= 3 and set(statuses[:-1]) == {403} and statuses[-1] == 200


def test_it_reports_a_refused_connection(telegram_emulator: TelegramEmulator, token: str) -> None:
    async def body(bot: Bot) -> tuple[Any, JSON]:
        assert await bot.set_webhook(f"http://127.0.0.1:{closed_port()}/hook")
        await telegram_emulator.acall("send_private_message", token=token, text="anyone?")
        status = await eventually(
            telegram_emulator, token, lambda s: s["webhook_last_error_message"] is not None
        )
        return await bot.get_webhook_info(), status

    info, status = run_with_bot(telegram_emulator, token, body)

    assert info.last_error_message == status["webhook_last_error_message"] == "Connection refused"
    assert info.pending_update_count == 1
    assert telegram_emulator.webhook_deliveries(token)[0]["status"] is None


def test_it_reports_a_webhook_that_answers_too_late(
    telegram_emulator: TelegramEmulator, token: str
) -> None:
    async def body(bot: Bot) -> JSON:
        async with webhook_receiver() as hook:
            hook.delay = 0.3
            assert await bot.set_webhook(hook.url)
            await telegram_emulator.acall("send_private_message", token=token, text="slow")
            status = await eventually(
                telegram_emulator, token, lambda s: s["webhook_last_error_message"] is not None
            )
            assert await bot.delete_webhook()
            return status

    telegram_emulator.configure_webhooks(timeout=0.05)
    try:
        status = run_with_bot(telegram_emulator, token, body)
    finally:
        telegram_emulator.configure_webhooks(timeout=10.0)

    assert status["webhook_last_error_message"] == "Read timeout expired"


# --------------------------------------------------------------------------- getUpdates


def test_it_refuses_getupdates_while_a_loopback_webhook_is_set(
    telegram_emulator: TelegramEmulator, token: str
) -> None:
    async def body(bot: Bot) -> None:
        assert await bot.set_webhook(f"http://127.0.0.1:{closed_port()}/hook")
        with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
            await bot.get_updates()

    run_with_bot(telegram_emulator, token, body)


def test_it_keeps_undelivered_updates_for_getupdates_after_delete_webhook(
    telegram_emulator: TelegramEmulator, token: str
) -> None:
    async def body(bot: Bot) -> tuple[int, int, JSON, list[str]]:
        async with webhook_receiver() as hook:
            hook.status = 500
            assert await bot.set_webhook(hook.url)
            await telegram_emulator.acall("send_private_message", token=token, text="kept")
            await hook.wait_for(1)
            assert await bot.delete_webhook()
            await asyncio.sleep(0.05)  # a request already on the wire may still land
            attempts = len(hook.requests)
            await asyncio.sleep(0.15)  # several retry delays: no new attempt may come now
            status = await telegram_emulator.acall("bot_status", token=token)
            updates = await bot.get_updates()
            return attempts, len(hook.requests), status, [u.message.text for u in updates]

    attempts, later, status, texts = run_with_bot(telegram_emulator, token, body)

    assert later == attempts
    assert status["webhook_url"] == "" and status["webhook_in_flight"] == 0
    assert texts == ["kept"]


def test_it_drops_pending_updates_when_asked(
    telegram_emulator: TelegramEmulator, token: str
) -> None:
    telegram_emulator.send_private_message(token, "stale")

    async def body(bot: Bot) -> list[str]:
        async with webhook_receiver() as hook:
            assert await bot.set_webhook(hook.url, drop_pending_updates=True)
            await telegram_emulator.acall("send_private_message", token=token, text="fresh")
            await eventually(telegram_emulator, token, delivered)
            return hook.texts()

    assert run_with_bot(telegram_emulator, token, body) == ["fresh"]


# --------------------------------------------------------------------------- setWebhook


def test_it_refuses_plain_http_webhooks_outside_loopback(
    telegram_emulator: TelegramEmulator, token: str
) -> None:
    async def body(bot: Bot) -> None:
        for url in ("http://bots.example.test/hook", "http://10.0.0.5/hook", "ftp://127.0.0.1/"):
            with pytest.raises(BadRequest, match="(?i)bad webhook: an https url must be provided"):
                await bot.set_webhook(url)
        for url in ("http://localhost:1/hook", "http://[::1]:1/hook", "https://bots.example.test"):
            assert await bot.set_webhook(url)
            assert (await bot.get_webhook_info()).url == url

    run_with_bot(telegram_emulator, token, body)


def test_it_rejects_secret_tokens_telegram_refuses(
    telegram_emulator: TelegramEmulator, token: str
) -> None:
    # (?i): PTB capitalises Telegram's descriptions ("Bad Request: secret token ...").
    async def body(bot: Bot) -> str:
        for secret in ("bot:token", "with space", "plus+slash/", "секрет"):
            with pytest.raises(BadRequest, match="(?i)secret token contains unallowed characters"):
                await bot.set_webhook("https://bots.example.test/hook", secret_token=secret)
        with pytest.raises(BadRequest, match="(?i)secret token is too long"):
            await bot.set_webhook("https://bots.example.test/hook", secret_token="a" * 257)
        assert await bot.set_webhook("https://bots.example.test/hook", secret_token="a" * 256)
        return (await bot.get_webhook_info()).url

    assert run_with_bot(telegram_emulator, token, body) == "https://bots.example.test/hook"
