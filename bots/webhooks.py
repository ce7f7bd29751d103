"""Webhook mode, the Telegram side: where Telegram pushes a bot's updates, the secret each
push must carry, which running task a push belongs to, and what Telegram says about its
deliveries (getWebhookInfo).

Start sets the webhook (bots.services), Stop deletes it; in between a webhook bot costs
no background work at all: no poller, no lease. The pushes are kept by the webhook view
and drained by the workers (bots.pushes), through the same ingest and reply pipeline as
polled updates.
"""

import asyncio
import hmac
import logging
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from bots import telegram
from bots.models import Bot, BotTask
from core import aio
from credentials.encryption import DecryptionError
from credentials.fields import Secret

log = logging.getLogger(__name__)

PATH_PREFIX = "telegram/webhook/"  # config.urls routes <prefix><bot id>/ to the receiving view
SECRET_HEADER = "HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN"  # as Django's request.META names it
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
TELEGRAM_WEBHOOK_PORTS = (443, 80, 88, 8443)  # the only ones Telegram pushes to
INFO_CHECKS_PER_ROUND = 200  # getWebhookInfo calls per supervisor round, side by side


WEBHOOK_BASE_URL_MISSING = (
    "Webhook mode needs the WEBHOOK_BASE_URL setting: the public HTTPS address Telegram "
    "can reach this site at, e.g. https://bots.example.com. It is not set."
)


def base_url_problem() -> str:
    """Why WEBHOOK_BASE_URL cannot take webhooks, in words for the operator, or ""."""
    base = settings.WEBHOOK_BASE_URL
    if not base:
        return WEBHOOK_BASE_URL_MISSING
    parts = urlsplit(base)
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return ""  # the emulator (bin/run, tests)
    if parts.scheme == "https" and parts.hostname:
        try:
            port = parts.port
        except ValueError:
            port = -1
        if port in (None, *TELEGRAM_WEBHOOK_PORTS):
            return ""
        return (
            f"Telegram pushes only to ports 443, 80, 88 and 8443; WEBHOOK_BASE_URL “{base}” "
            "names another. Put a proxy on one of those ports in front of Botfleet."
        )
    return (
        f"WEBHOOK_BASE_URL must be an https:// address Telegram can reach (plain http only "
        f"on loopback, for the emulator); it is “{base}”."
    )


def url_of(bot_id: int) -> str:
    return f"{settings.WEBHOOK_BASE_URL}/{PATH_PREFIX}{bot_id}/"


def secret_new() -> str:
    # 43 URL-safe characters: within Telegram's 1-256 of A-Z, a-z, 0-9, "_" and "-".
    return secrets.token_urlsafe(32)


def task_for_push(*, bot_id: int, secret: str) -> int | None:
    """The id of the running webhook task a push belongs to, or None: an unknown bot, one
    not in webhook mode or not running, or a secret that is not the bot's (compared in
    constant time)."""
    with connection.cursor() as cursor:
        cursor.execute(_PUSH_TARGET, [bot_id, BotTask.Status.RUNNING, Bot.UpdateMode.WEBHOOK])
        found = cursor.fetchone()
    if found is None or not secret:
        return None
    task_id, ciphertext = found
    try:
        expected = Secret(ciphertext=ciphertext or "").reveal()
    except DecryptionError:
        return None
    if not expected or not hmac.compare_digest(expected.encode(), secret.encode()):
        return None
    return int(task_id)


# Every push runs this: written out, because building the same query through the ORM
# cost ten times the query itself (a sixth of a push, measured).
_PUSH_TARGET = (
    f"SELECT task.id, bot.webhook_secret FROM {BotTask._meta.db_table} task "
    f"JOIN {Bot._meta.db_table} bot ON bot.id = task.bot_id "
    "WHERE task.bot_id = %s AND task.status = %s AND bot.update_mode = %s LIMIT 1"
)


# --- what Telegram says about the webhooks (supervisor, the task's page) ---------------


def infos_due() -> list[BotTask]:
    """Running webhook tasks not asked about for WEBHOOK_INFO_INTERVAL seconds, oldest
    first, a bounded number (the supervisor's round)."""
    due = timezone.now() - timedelta(seconds=settings.WEBHOOK_INFO_INTERVAL)
    return list(
        BotTask.objects.filter(
            Q(webhook_checked_at__isnull=True) | Q(webhook_checked_at__lt=due),
            status=BotTask.Status.RUNNING, bot__update_mode=Bot.UpdateMode.WEBHOOK,
        ).select_related("bot").order_by("webhook_checked_at", "pk")[:INFO_CHECKS_PER_ROUND]
    )


def infos_ask(endpoints: list[telegram.BotEndpoint]) -> list[telegram.WebhookInfo | BaseException]:
    """getWebhookInfo for each bot, side by side; a failure is returned in its place."""

    async def ask_all() -> list[telegram.WebhookInfo | BaseException]:
        return await asyncio.gather(*(telegram.webhook_info(e) for e in endpoints), return_exceptions=True)

    return aio.run(ask_all(), timeout=telegram.SEND_TIMEOUT + 10) if endpoints else []


def info_record(task: BotTask, info: telegram.WebhookInfo) -> str:
    """Store what Telegram said; returns the problem to record on the task, or ""."""
    BotTask.objects.filter(pk=task.pk).update(
        webhook_pending_updates=info.pending_updates,
        webhook_last_error=info.last_error[:300],
        webhook_last_error_at=info.last_error_at,
        webhook_checked_at=timezone.now(),
    )
    if info.url == url_of(task.bot_id):
        return ""
    where = f"now “{info.url}”" if info.url else "removed"
    return (
        f"Telegram's webhook for this bot was {where} by another program: updates do not "
        "reach Botfleet. Restart the task to set it again."
    )
