"""Project wiring: settings, URLs, the Celery app, WSGI/ASGI, the embedded Redis and
bin/run's process runner. Helpers the apps share live in core/."""

from config.celery import app as celery_app

__all__ = ("celery_app",)
