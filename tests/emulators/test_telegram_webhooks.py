"""Webhook delivery of the Telegram emulator, received by a small aiohttp server on the
test's loop (the emulator delivers from its own loop and thread)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from emulators.telegram import TelegramEmulator

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(scope="module")
def telegram_emulator() -> Iterator[TelegramEmulator]:
    """Retries fast enough for tests: 20 ms, doubling."""
    with TelegramEmulator(seed=4321, webhook_retry_base=0.02) as emulator:
        yield emulator


@dataclass
class Receiver:
    """Records each push and answers the next of ``statuses`` (then 200), after ``delay``."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    pushes: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    busy: int = 0
    most_busy: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.pushes.append(
            ({k.lower(): v for k, v in request.headers.items()}, await request.json())
        )
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            await asyncio.sleep(self.delay)
            return web.Response(status=self.statuses.pop(0) if self.statuses else 200)
        finally:
            self.busy -= 1

    async def wait_for(self, count: int) -> list[str]:
        deadline = time.monotonic() + 5
        while len(self.pushes) < count:
            assert time.monotonic() < deadline, f"{len(self.pushes)} of {count} pushes came"
            await asyncio.sleep(0.005)
        return [body["message"]["text"] for _, body in self.pushes]


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield hook
    finally:
        await runner.cleanup()


async def bot_api(emu: TelegramEmulator, token: str, method: str, **params: Any) -> Any:
    async with httpx.AsyncClient() as client:
        return (await client.post(f"{emu.base_url}{token}/{method}", json=params)).json()


async def say(emu: TelegramEmulator, token: str, *texts: str) -> None:
    for text in texts:
        await asyncio.to_thread(emu.send_private_message, token, text)


async def status_once(emu: TelegramEmulator, token: str, check: Any) -> dict:
    deadline = time.monotonic() + 5
    while not check(status := await asyncio.to_thread(emu.bot_status, token)):
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.01)
    return status


def test_it_pushes_in_order_one_at_a_time_with_the_secret(telegram_emulator, telegram_bot) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]

    async def main() -> tuple[Receiver, list[str], dict]:
        async with receiver() as hook:
            hook.delay = 0.02
            await say(telegram_emulator, token, "queued before")
            set_ = await bot_api(
                telegram_emulator,
                token,
                "setWebhook",
                url=hook.url,
                secret_token="s3cret",
                max_connections=1,
            )
            assert set_["ok"], set_
            await say(telegram_emulator, token, "one", "two", "three")
            texts = await hook.wait_for(4)
            await status_once(telegram_emulator, token, lambda s: s["pending_update_count"] == 0)
            info = await bot_api(telegram_emulator, token, "getWebhookInfo")
            await bot_api(telegram_emulator, token, "deleteWebhook")
            return hook, texts, info["result"]

    hook, texts, info = asyncio.run(main())

    assert texts == ["queued before", "one", "two", "three"]
    assert hook.most_busy == 1  # max_connections=1: a chat's messages stay in order
    assert {headers["x-telegram-bot-api-secret-token"] for headers, _ in hook.pushes} == {"s3cret"}
    assert (info["max_connections"], info["pending_update_count"]) == (1, 0)
    assert all(
        d["status"] == 200 and d["error"] is None
        for d in telegram_emulator.webhook_deliveries(token)
    )


def test_it_retries_a_failing_webhook_and_reports_the_last_error(
    telegram_emulator, telegram_bot
) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]

    async def main() -> tuple[list[str], dict]:
        async with receiver() as hook:
            hook.statuses = [502, 500]
            await bot_api(telegram_emulator, token, "setWebhook", url=hook.url)
            await say(telegram_emulator, token, "hello")
            texts = await hook.wait_for(3)
            await status_once(telegram_emulator, token, lambda s: s["pending_update_count"] == 0)
            info = (await bot_api(telegram_emulator, token, "getWebhookInfo"))["result"]
            await bot_api(telegram_emulator, token, "deleteWebhook")
            return texts, info

    texts, info = asyncio.run(main())

    assert texts == ["hello"] * 3  # the same update until it was taken
    assert (
        info["last_error_message"] == "Wrong response from the webhook: 500 Internal Server Error"
    )
    assert [d["status"] for d in telegram_emulator.webhook_deliveries(token)] == [502, 500, 200]


def test_it_keeps_undelivered_updates_for_polling_unless_told_to_drop_them(
    telegram_emulator, telegram_bot
) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]

    async def main() -> tuple[dict, list[str], int]:
        await bot_api(
            telegram_emulator, token, "setWebhook", url=f"http://127.0.0.1:{closed_port}/hook"
        )
        await say(telegram_emulator, token, "nobody listens")
        status = await status_once(
            telegram_emulator, token, lambda s: s["webhook_last_error_message"]
        )
        await bot_api(telegram_emulator, token, "deleteWebhook")
        polled = (await bot_api(telegram_emulator, token, "getUpdates"))["result"]
        await bot_api(telegram_emulator, token, "deleteWebhook", drop_pending_updates=True)
        return (
            status,
            [u["message"]["text"] for u in polled],
            (await asyncio.to_thread(telegram_emulator.bot_status, token))["pending_update_count"],
        )

    status, polled, left = asyncio.run(main())

    assert status["webhook_last_error_message"] == "Connection refused"
    assert polled == ["nobody listens"]
    assert left == 0


def test_it_refuses_webhooks_telegram_refuses(telegram_emulator, telegram_bot) -> None:  # type: ignore[no-untyped-def]
    token = telegram_bot["token"]

    async def main() -> list[str]:
        answers = [
            await bot_api(
                telegram_emulator, token, "setWebhook", url="http://bots.example.com/hook"
            ),
            await bot_api(
                telegram_emulator,
                token,
                "setWebhook",
                url="https://bots.example.com/hook",
                secret_token="no spaces",
            ),
        ]
        return [a["description"] for a in answers]

    assert asyncio.run(main()) == [
        "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
        "Bad Request: secret token contains unallowed characters or is too long",
    ]
    assert telegram_emulator.bot_status(token)["webhook_url"] == ""
