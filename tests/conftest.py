import gc
import logging
import shutil
import time
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from bots import polling
from bots.models import Bot, BotTask
from core import workers
from credentials.models import AICredential
from emulators.gemini import GeminiEmulator
from emulators.telegram import TelegramEmulator
from tests.factories import make_persona, make_task
from tests.support.worker import LOG_DIR, RUNTIME_SETTINGS, WorkerProcess


@pytest.fixture(autouse=True)
def _runtime_settings(settings) -> None:  # type: ignore[no-untyped-def]
    """The test process uses the same short poll/lease times as the test workers."""
    for name, value in RUNTIME_SETTINGS.items():
        setattr(settings, name, value)


@pytest.fixture(scope="session", autouse=True)
def _stop_pollers(django_db_setup: None, django_db_blocker) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Pollers, answers and sends run in this process write from database threads that
    keep a connection (CONN_MAX_AGE); stop them before the test database is dropped,
    which PostgreSQL refuses while any session is connected."""
    yield
    polling.pollers_stop()
    gc.collect()  # the threads' connection objects close when collected


@pytest.fixture(autouse=True)
def _end_local_pollers() -> Iterator[None]:
    """A poller (or a lease or claim renewal) a test started in this process ends with
    the test: the next test starts with its own settings and database."""
    yield
    if polling.pollers_running() or workers.chores_running():
        polling.pollers_stop()


@pytest.fixture
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """Rate-limit windows and flood blocks are keyed by bot id, which a new test
    database reuses: start every test with none."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter("botfleet:*"):
        client.delete(key)
    yield


@pytest.fixture
def celery_worker(transactional_db: None) -> Iterator[WorkerProcess]:
    """A real worker process (threads pool) on the real Redis and the test database.

    Function-scoped with transactional_db: the worker sees committed rows only.
    """
    worker = WorkerProcess().start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="session")
def telegram_api() -> Iterator[TelegramEmulator]:
    """The Telegram Bot API emulator on loopback, shared by the session's tests."""
    with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture
def emulated_bot(telegram_api: TelegramEmulator) -> Iterator[tuple[Bot, dict]]:
    """A bot known to the emulator and stored in the database (with a persona)."""
    from tests.factories import make_bot

    info = telegram_api.add_bot(first_name="Helper")
    bot = make_bot(
        token=info["token"], api_base_url=telegram_api.base_url,
        persona=make_persona(greeting="Hello from the persona!"),
    )
    yield bot, info


@pytest.fixture
def bot_task(emulated_bot: tuple[Bot, dict]) -> BotTask:
    return make_task(emulated_bot[0])


GEMINI_TEST_KEY = "AIzaSyTEST-gemini-key-for-the-emulator-0001"
OPENAI_TEST_KEY = "sk-test-openai-compatible-key-000000000001"


@pytest.fixture(scope="session")
def gemini_api() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(valid_keys=[GEMINI_TEST_KEY]) as emulator:
        yield emulator


@pytest.fixture
def gemini_credential(gemini_api: GeminiEmulator) -> AICredential:
    gemini_api.reset()
    gemini_api.set_valid_keys([GEMINI_TEST_KEY])
    return AICredential.objects.create(
        name="Gemini (emulated)", provider=AICredential.Provider.GEMINI, api_key=GEMINI_TEST_KEY,
        base_url=gemini_api.base_url, model="gemini-2.5-flash", requests_per_minute=1000,
    )


# --- no secret in any log of the whole run -------------------------------------------

_PROCESS_LOG = LOG_DIR / "test-process.log"


def pytest_configure(config: pytest.Config) -> None:
    """Every record of the test process, at DEBUG, goes to a file that the end-of-run
    check reads (next to the worker logs)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for stale in LOG_DIR.parent.glob("run-*"):
        if stale != LOG_DIR and time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    handler = logging.FileHandler(_PROCESS_LOG)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


_session_tokens: set[str] = set()


@pytest.fixture(autouse=True)
def _remember_tokens(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "telegram_api" in request.fixturenames:
        emulator = request.getfixturevalue("telegram_api")
        _session_tokens.update(b["token"] for b in emulator.bots())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _session_tokens.update({GEMINI_TEST_KEY, OPENAI_TEST_KEY})
    leaks = [
        path.name
        for path in LOG_DIR.glob("*.log")
        for token in _session_tokens
        if token in path.read_text(errors="replace")
    ]
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nSECRET LEAK: a bot token or API key appears in the logs: {sorted(set(leaks))}")
    elif _session_tokens:
        print(f"\nlog check: none of {len(_session_tokens)} bot tokens and API keys appears in "
              f"{len(list(LOG_DIR.glob('*.log')))} log file(s)")
