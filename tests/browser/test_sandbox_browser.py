"""The demo in a real browser: chat with a bot on the sandbox page (live server, real
Celery worker, Telegram emulator), then stop it from the dashboard and see it go quiet."""

import time

import httpx
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from bots.services import task_start
from sandbox.conversation import operator_user_id
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


PHONE = {"width": 390, "height": 844}  # an iPhone 12-15's CSS pixels

BOXES_JS = """() => [...document.querySelectorAll('.bubble')].map((b) => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
  return {bubble: box(b), text: box(b.querySelector('.text')), time: box(b.querySelector('.time')),
          label: b.querySelector('.text').textContent.slice(0, 20)};
})"""


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (inner["left"] >= outer["left"] - 0.5 and inner["right"] <= outer["right"] + 0.5
            and inner["top"] >= outer["top"] - 0.5 and inner["bottom"] <= outer["bottom"] + 0.5)


def test_the_sandbox_fits_a_390_px_phone_screen(  # type: ignore[no-untyped-def]
    page: Page, live_server, telegram_api, emulated_bot, settings
) -> None:
    settings.SANDBOX_EMULATOR_URL = telegram_api.url
    bot, info = emulated_bot
    user = User.objects.create_superuser("phone", "phone@example.com", PASSWORD)
    me = operator_user_id(user.pk)
    # A conversation with a one-word line, a line that fills the bubble's width and a
    # long one that wraps, on both sides.
    telegram_api.send_private_message(info["token"], "hi", user_id=me, first_name="phone")
    bot_says(telegram_api, info["token"], me, "ok")
    telegram_api.send_private_message(info["token"], "What are your opening hours on weekdays?", user_id=me)
    bot_says(telegram_api, info["token"], me, "We open at nine and close at six, " * 4 + "except on public holidays.")

    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/admin/login/?next=/sandbox/")
    page.fill("#id_username", "phone")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator(".bubble")).to_have_count(4)
    page.screenshot(path=str(ARTIFACTS / "sandbox-390px.png"))

    # The bot list is folded away: a slim bar above a chat as wide as the screen.
    expect(page.locator("#bot-picker")).to_be_hidden()
    expect(page.locator(".chat-tab").first).to_be_hidden()
    sidebar, chat = page.locator("#sidebar").bounding_box(), page.locator("main.chat").bounding_box()
    assert sidebar is not None and chat is not None
    assert sidebar["height"] <= 64, sidebar
    assert chat["width"] >= PHONE["width"] - 1 and chat["y"] >= sidebar["y"] + sidebar["height"] - 1, chat
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # Every message's time sits inside its bubble, clear of the text.
    for box in page.evaluate(BOXES_JS):
        assert inside(box["time"], box["bubble"]), box
        assert not overlap(box["time"], box["text"]), box

    # Unfolded, it lets you pick the bot and the chat; picking folds it again.
    page.click("#sidebar-toggle")
    expect(page.locator("#bot-picker")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "sandbox-390px-open.png"))
    page.get_by_role("button", name="Botfleet demo group").click()
    expect(page.locator("#bot-picker")).to_be_hidden()
    expect(page.locator("#sidebar-toggle")).to_contain_text("Botfleet demo group")
    expect(page.locator("#send-as")).to_be_visible()


def bot_says(telegram_api, token: str, chat_id: int, text: str) -> None:  # type: ignore[no-untyped-def]
    """The bot's answer, as its sendMessage would put it in the chat."""
    response = httpx.post(f"{telegram_api.base_url}{token}/sendMessage", json={"chat_id": chat_id, "text": text})
    assert response.json()["ok"], response.text
