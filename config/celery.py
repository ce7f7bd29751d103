"""The Celery app. All configuration lives in settings (CELERY_* names)."""

import os
import sys
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("botfleet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="config.ping", ignore_result=False)
def ping() -> str:
    """Round trip through the broker and a worker; used by readiness checks and tests."""
    return "pong"


@worker_init.connect
@beat_init.connect
def _redis_configured(**kwargs: Any) -> None:
    """A worker or beat with no Redis configured says so in one line and stops, instead
    of retrying a connection for ever."""
    from django.conf import settings

    if settings.REDIS_URL_MISSING:
        print(f"celery: {settings.REDIS_URL_MISSING}", file=sys.stderr, flush=True)
        os._exit(1)  # the signal's caller would turn SystemExit into a traceback
