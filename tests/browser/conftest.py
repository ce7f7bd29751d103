"""A real headless Chromium (Debian's package) driven by Playwright, for browser tests.

Never a browser downloaded by a test tool (no `playwright install`): the tests use
/usr/bin/chromium and skip, saying why, on a machine without it. CI installs it first
(.ci/run), so there they always run.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from playwright.sync_api import Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--disable-sync",
]
# Screenshots and other artefacts a person can look at after the run (git-ignored var/).
ARTIFACTS = settings.VAR_DIR / "test-artifacts"


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"browser tests need Debian's chromium at {CHROMIUM} "
            "(apt-get install chromium); it is not installed on this machine"
        )
    # Playwright's sync API keeps an asyncio loop running in this thread, and Django
    # refuses ORM calls from a thread with a running loop. The test's own ORM calls are
    # plain synchronous ones, so the check is lifted for this test only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1360, "height": 900})
            tab = context.new_page()
            tab.set_default_timeout(10_000)
            yield tab
        finally:
            browser.close()
            # While Playwright's loop runs, Django keeps this thread's connections per
            # async context, out of reach of pytest-django's teardown (which runs after
            # the loop stopped): close them here, or PostgreSQL cannot drop the test
            # database at the end of the run.
            connections.close_all()
