"""The admin's log pages, the dashboard and the task page in a real browser at 1366 px:
long unbroken names and texts wrap (the page never scrolls sideways, no table is
stretched past it), a message's text is readable, and a right-to-left override in a
name flips that name only."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from bots.models import Bot, BotTask
from conversations.models import (
    Chat,
    Delivery,
    Message,
    ScheduledMessage,
    ScheduledRun,
    SkippedUpdate,
    TelegramUser,
)
from dashboard import health
from tests.browser.conftest import ARTIFACTS
from tests.factories import make_bot, make_task

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

PASSWORD = "browser-test-password-2"
WIDTH = 1366
RLO = "\u202e"
# As long as each column takes (PostgreSQL refuses longer; SQLite would store them).
LONG_BOT = "B" * 100
LONG_TASK = "T" * 100
LONG_TITLE = RLO + "G" * 254
LONG_PERSON = RLO + "P" * 254
LONG_WORD = "W" * 300  # an unbroken word in a message: a URL, a hash, a prank
SENTENCE = (
    "Could you remind everyone that the meeting moved to Thursday at seven, in the small "
    "room upstairs, and that we are reading the second half of the book this time?"
)


@pytest.fixture(autouse=True)
def _no_live_workers() -> Iterator[None]:
    cache.set(health.WORKERS_CACHE_KEY, {"names": []}, 300)
    yield
    cache.clear()


def seed() -> tuple[Bot, BotTask]:
    bot = make_bot(name=LONG_BOT)
    Bot.objects.filter(pk=bot.pk).update(username="flipbot")
    bot.refresh_from_db()
    task = make_task(bot, name=LONG_TASK, last_error="E" * 300, last_error_at=timezone.now())
    person = TelegramUser.objects.create(telegram_id=424242, first_name=LONG_PERSON)
    chat = Chat.objects.create(bot=bot, telegram_id=-100777, type=Chat.Type.SUPERGROUP, title=LONG_TITLE,
                               inactive_reason="R" * 255, last_message_at=timezone.now())
    incoming = Message.objects.create(bot=bot, chat=chat, sender=person, direction=Message.Direction.IN,
                                      text=LONG_WORD, error="X" * 300)
    Message.objects.create(bot=bot, chat=chat, direction=Message.Direction.OUT, text=SENTENCE,
                           reply_to=incoming, send_state=Message.SendState.SENT)
    scheduled = ScheduledMessage.objects.create(
        name="S" * 100, bot=bot, text=LONG_WORD, run_at=timezone.now() + timedelta(days=1)
    )
    run = ScheduledRun.objects.create(scheduled=scheduled, slot=timezone.now(), error="F" * 300)
    Delivery.objects.create(run=run, chat=chat, error="D" * 300)
    SkippedUpdate.objects.create(bot=bot, update_id=7, error="U" * 300)
    return bot, task


def log_in(page: Page, base_url: str) -> None:
    User.objects.create_superuser("operator", "operator@example.com", PASSWORD)
    page.set_viewport_size({"width": WIDTH, "height": 900})
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page).to_have_url(f"{base_url}/admin/")


def overflow(page: Page, selector: str) -> int:
    """How many whole pixels the element's content sticks out sideways (0: none; a
    pixel of rounding is none too)."""
    return max(0, int(page.eval_on_selector(selector, "e => e.scrollWidth - e.clientWidth")) - 1)


def assert_no_sideways_scroll(page: Page, name: str, inner: str | None = None) -> None:
    page.screenshot(path=str(ARTIFACTS / f"wrap-{name}.png"), full_page=True)
    assert page.evaluate("window.innerWidth") == WIDTH
    assert overflow(page, "html") <= 0, f"{name}: the page scrolls sideways"
    if inner:
        assert overflow(page, inner) <= 0, f"{name}: {inner} is stretched past the page"


ADMIN_LISTS = [
    "conversations_message", "conversations_chat", "conversations_telegramuser",
    "conversations_delivery", "conversations_scheduledrun", "conversations_skippedupdate",
    "conversations_scheduledmessage", "bots_bot", "bots_bottask",
]


def test_it_wraps_long_names_in_every_admin_list_at_1366_px(page: Page, live_server) -> None:  # type: ignore[no-untyped-def]
    seed()
    log_in(page, live_server.url)

    for model in ADMIN_LISTS:
        page.goto(live_server.url + reverse(f"admin:{model}_changelist"))
        expect(page.locator("#result_list")).to_be_visible()
        assert_no_sideways_scroll(page, model, "#changelist-form .results")


def test_it_shows_a_message_s_text_readably_at_1366_px(page: Page, live_server) -> None:  # type: ignore[no-untyped-def]
    seed()
    log_in(page, live_server.url)

    page.goto(live_server.url + reverse("admin:conversations_message_changelist"))

    sentence = page.locator(".log-text", has_text="Could you remind everyone")
    expect(sentence).to_have_text(SENTENCE)  # all of it, not the first 80 characters
    box = sentence.bounding_box()
    assert box and box["width"] >= 200 and box["x"] + box["width"] <= WIDTH
    # Newest first: the answer above the message it answers.
    texts = page.locator("#result_list .log-text").all_inner_texts()
    assert texts[0] == SENTENCE and texts[1].startswith("WWW")


def test_it_wraps_a_log_row_s_own_page_at_1366_px(page: Page, live_server) -> None:  # type: ignore[no-untyped-def]
    seed()
    log_in(page, live_server.url)
    message = Message.objects.get(direction=Message.Direction.IN)

    page.goto(live_server.url + reverse("admin:conversations_message_change", args=[message.pk]))

    expect(page.locator("h1")).to_have_text("View message")
    assert_no_sideways_scroll(page, "message-view")


def test_it_wraps_long_names_on_the_dashboard_and_the_task_page_at_1366_px(page: Page, live_server) -> None:  # type: ignore[no-untyped-def]
    _, task = seed()
    log_in(page, live_server.url)

    page.goto(f"{live_server.url}/dashboard/")
    expect(page.locator(f'tr[data-task-id="{task.pk}"]')).to_be_visible()
    assert_no_sideways_scroll(page, "dashboard", ".dash-table-wrap")

    page.goto(live_server.url + reverse("dashboard:task", args=[task.pk]))
    expect(page.locator("#conversation")).to_contain_text("Could you remind everyone")
    assert_no_sideways_scroll(page, "task-page")


def test_it_flips_a_right_to_left_name_without_flipping_what_follows(page: Page, live_server) -> None:  # type: ignore[no-untyped-def]
    """On the task page the bot's name is followed by its username on the same line:
    an override (U+202E) in the name must not carry the username over to its left."""
    bot, task = seed()
    Bot.objects.filter(pk=bot.pk).update(name=RLO + "Evil bot")
    log_in(page, live_server.url)

    page.goto(live_server.url + reverse("dashboard:task", args=[task.pk]))

    cell = page.locator(".dash-settings tr", has_text="flipbot").locator("td")
    name_right, username_left = cell.evaluate(
        """td => {
            const name = td.querySelector("bdi").getBoundingClientRect();
            const after = td.querySelector("bdi").nextSibling;  // the text " (@"
            const range = document.createRange();
            range.selectNodeContents(after);
            return [name.right, range.getBoundingClientRect().left];
        }"""
    )
    assert username_left >= name_right - 1
