from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from tests.support.worker import WorkerProcess


@pytest.fixture
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


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

