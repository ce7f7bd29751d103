"""The dashboard in a real browser, against the live server, a real Celery worker and
the Telegram emulator: log in, watch a running task, stop it, open its page."""

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from playwright.sync_api import Page, expect

from bots.models import BotTask
from bots.services import task_start
from tests.browser.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(60)]

PASSWORD = "browser-test-password-1"


def log_in(page: Page, base_url: str, next_path: str) -> None:
    User.objects.create_superuser("operator", "operator@example.com", PASSWORD)
    page.goto(f"{base_url}/admin/login/?next={next_path}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def test_it_stops_a_running_task_from_the_dashboard_without_a_reload(  # type: ignore[no-untyped-def]
    page: Page, live_server, celery_worker, telegram_api, emulated_bot, bot_task, settings
) -> None:
    settings.DASHBOARD_REFRESH_SECONDS = 1
    cache.clear()
    bot, info = emulated_bot
    task_start(task=bot_task)

    log_in(page, live_server.url, "/dashboard/")
    expect(page).to_have_url(f"{live_server.url}/dashboard/")
    row = page.locator(f'tr[data-task-id="{bot_task.pk}"]')
    expect(row.locator('[data-role="status"]')).to_have_text("running")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads

    # Work done by the worker shows up on its own, from the JSON feed.
    update = telegram_api.send_private_message(info["token"], "Hello dashboard")
    telegram_api.wait_for_sent(info["token"], 1, chat_id=update["message"]["chat"]["id"], timeout=20)
    expect(row.locator("td.num").nth(1)).to_have_text("1")  # replies sent
    expect(page.locator('[data-card="replies"] .dash-card-value')).to_have_text("1")
    expect(page.locator('[data-card="workers"] .dash-card-value')).to_have_text("1")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    row.get_by_role("button", name="Stop").click()

    expect(row.locator('[data-role="status"]')).to_have_text("stopped")
    expect(page.locator("#dash-flash")).to_contain_text(f"Stopped task #{bot_task.pk}")
    expect(row.get_by_role("button", name="Start")).to_be_visible()
    assert page.evaluate("window.sameDocument") is True, "the page reloaded"
    assert BotTask.objects.get(pk=bot_task.pk).status == BotTask.Status.STOPPED

    row.get_by_role("link", name=bot_task.name).click()
    expect(page.locator("h1")).to_have_text(bot_task.name)
    expect(page.locator("#replies-chart")).to_be_visible()
    expect(page.locator("#conversation")).to_contain_text("Hello dashboard")
    page.screenshot(path=str(ARTIFACTS / "task-detail.png"), full_page=True)
