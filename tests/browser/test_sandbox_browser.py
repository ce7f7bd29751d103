"""The demo in a real browser: chat with a bot on the sandbox page (live server, real
Celery worker, Telegram emulator), then stop it from the dashboard and see it go quiet."""

import time

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from bots.services import task_start
from tests.browser.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(90)]

PASSWORD = "sandbox-browser-password-1"


def test_a_message_typed_on_the_sandbox_gets_a_reply_and_stop_silences_the_bot(  # type: ignore[no-untyped-def]
    page: Page, live_server, celery_worker, telegram_api, emulated_bot, bot_task, settings
) -> None:
    settings.SANDBOX_EMULATOR_URL = telegram_api.url
    task_start(task=bot_task)
    User.objects.create_superuser("demo", "demo@example.com", PASSWORD)
    page.goto(f"{live_server.url}/admin/login/?next=/sandbox/")
    page.fill("#id_username", "demo")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#chat-status")).to_contain_text("running")

    started = time.monotonic()
    page.fill("#text", "Hello from the browser")
    page.press("#text", "Enter")
    expect(page.locator(".bubble.mine").last).to_contain_text("Hello from the browser")
    reply = page.locator(".bubble.bot").last
    expect(reply).to_contain_text("You said: Hello from the browser", timeout=5_000)
    assert time.monotonic() - started < 5
    page.screenshot(path=str(ARTIFACTS / "sandbox.png"))

    page.goto(f"{live_server.url}/dashboard/")
    page.locator(f'tr[data-task-id="{bot_task.pk}"]').get_by_role("button", name="Stop").click()
    expect(page.locator(f'tr[data-task-id="{bot_task.pk}"] [data-role="status"]')).to_have_text("stopped")

    page.goto(f"{live_server.url}/sandbox/")
    page.fill("#text", "Are you still there?")
    page.press("#text", "Enter")
    expect(page.locator(".bubble.mine").last).to_contain_text("Are you still there?")
    page.wait_for_timeout(3_000)  # a poll cycle (1 s in tests) and a reply would fit twice
    expect(page.locator(".bubble.bot")).to_have_count(1)
