"""The one reaper for claims that expired (beat runs it every SUPERVISOR_INTERVAL).

The message log is the source of truth, not the broker: a killed worker's in-memory
work is gone, so every claimed row carries an expiry its process renews while alive
(conversations.claims). When it lapses:

- an incoming message being answered (GENERATING) is taken over and answered from the
  start, in this process; after REPLY_MAX_ATTEMPTS take-overs it is failed visibly (a
  message that kills its worker must not kill every worker in turn);
- an outgoing part is the outbox's: never re-sent once handed to Telegram, otherwise
  taken over and sent (conversations.outbox.takeover / interrupted_fail). Parts whose
  back-off or flood wait is over are taken the same way.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from conversations import claims, outbox, replies
from conversations.models import Message

log = logging.getLogger(__name__)

TAKEOVER_LIMIT = 500  # rows of each kind per round; the next round takes the rest


@dataclass
class Reaped:
    answers: list[tuple[int, int]] = field(default_factory=list)  # (message, chat) taken over
    parts: list[outbox.Part] = field(default_factory=list)  # outgoing rows taken over
    given_up: int = 0
    interrupted: int = 0


def claims_reap(*, now: datetime | None = None) -> Reaped:
    """Take over what nobody works on any more; the caller starts the work."""
    now = now or timezone.now()
    reaped = Reaped()
    reaped.given_up = _answers_give_up(now)
    reaped.answers = _answers_take_over(now)
    reaped.interrupted = outbox.interrupted_fail(now=now)
    reaped.parts = outbox.parts_load(outbox.takeover(now=now, limit=TAKEOVER_LIMIT))
    if reaped.answers or reaped.parts or reaped.given_up or reaped.interrupted:
        log.warning(
            "reaper: took over %s answer(s) and %s part(s); gave up %s; %s interrupted",
            len(reaped.answers), len(reaped.parts), reaped.given_up, reaped.interrupted,
        )
    return reaped


def claims_reap_and_resume() -> Reaped:
    """What the beat task runs: reap, then do the work in this process."""
    reaped = claims_reap()
    if reaped.answers:
        replies.answer_soon(reaped.answers)
    outbox.parts_send_soon(reaped.parts)
    return reaped


def _lapsed(now: datetime) -> QuerySet[Message]:
    """Incoming messages waiting for an answer that no live process is working on: the
    claim expired, or there never was one (a message left waiting by an older version)."""
    unclaimed_since = now - timedelta(seconds=settings.CLAIM_SECONDS)
    return Message.objects.filter(
        Q(claim_expires_at__lt=now) | Q(claim_expires_at__isnull=True, updated_at__lt=unclaimed_since),
        direction=Message.Direction.IN,
        reply_state__in=[Message.ReplyState.PENDING, Message.ReplyState.GENERATING],
    )


def _answers_give_up(now: datetime) -> int:
    return _lapsed(now).filter(attempts__gte=settings.REPLY_MAX_ATTEMPTS - 1).update(
        reply_state=Message.ReplyState.FAILED, updated_at=now,
        error=f"Gave up after {settings.REPLY_MAX_ATTEMPTS} attempts to answer (the worker "
        "answering it stopped each time; see the worker logs).",
        **claims.RELEASED,
    )


def _answers_take_over(now: datetime) -> list[tuple[int, int]]:
    taken = claims.take(
        _lapsed(now), now=now, limit=TAKEOVER_LIMIT,
        reply_state=Message.ReplyState.GENERATING, attempts=F("attempts") + 1,
    )
    return list(taken.values_list("pk", "chat_id"))
