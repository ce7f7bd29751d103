"""Claims on message rows: which worker process answers an incoming message or sends an
outgoing part, and until when.

A claim is `claimed_by` (core.workers.worker_id) and `claim_expires_at` on the row.
While a process works on rows it renews their claims every CLAIM_RENEW_INTERVAL
seconds (one UPDATE for all of them). A process that dies stops renewing; after
CLAIM_SECONDS its claims expire and the reaper (conversations.reaper) takes the rows
over. Rows a process claimed but is not working on (a coroutine that ended early) are
not renewed either, so they too are taken over instead of staying stuck.
"""

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from conversations.models import Message
from core import dbwork
from core.workers import chore_start, worker_id

RENEW_CHUNK = 500  # ids per UPDATE (SQLite's and PostgreSQL's parameter limits are far)


def expiry(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=settings.CLAIM_SECONDS)


def taken(now: datetime | None = None) -> dict[str, Any]:
    """The fields of a row claimed by this process now."""
    return {"claimed_by": worker_id(), "claim_expires_at": expiry(now)}


RELEASED: dict[str, Any] = {"claimed_by": "", "claim_expires_at": None}


def mine(rows: QuerySet[Message]) -> QuerySet[Message]:
    return rows.filter(claimed_by=worker_id())


def take(lapsed: QuerySet[Message], *, now: datetime, limit: int, **changes: Any) -> QuerySet[Message]:
    """Claim for this process up to `limit` rows nobody works on (`lapsed`), applying
    `changes`; the rows it got, in id order. Conditional on the same filter, so two
    reapers never both take a row."""
    ids = list(lapsed.values_list("pk", flat=True)[: max(0, limit)])
    lapsed.filter(pk__in=ids).update(**changes, **taken(now))
    return mine(Message.objects.filter(pk__in=ids)).order_by("id")


class _Working:
    """The rows this process works on now (on the I/O loop only: no lock needed)."""

    def __init__(self) -> None:
        self.rows: Counter[int] = Counter()
        self._renewer: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def on(self, ids: Iterable[int]) -> Iterator[None]:
        ids = list(ids)
        self.rows.update(ids)
        if self._renewer is None or self._renewer.done():
            self._renewer = chore_start(
                lambda: settings.CLAIM_RENEW_INTERVAL, self.renew, "claim renewal"
            )
        try:
            yield
        finally:
            self.rows.subtract(ids)
            for pk in set(ids):
                if self.rows[pk] <= 0:
                    self.rows.pop(pk, None)

    async def renew(self) -> None:
        if self.rows:
            await dbwork.write(_renew, list(self.rows))


def _renew(ids: list[int]) -> None:
    until = expiry()
    for start in range(0, len(ids), RENEW_CHUNK):
        mine(Message.objects.filter(pk__in=ids[start : start + RENEW_CHUNK])).update(
            claim_expires_at=until
        )


working = _Working()
