"""Where stored updates go: one path for polled and pushed (webhook) updates.

Both doors (bots.polling's getUpdates, bots.pushes' drain of webhook pushes) read
Telegram's JSON with bots.telegram.updates_read and store it here, inside the caller's
transaction: the registered sink stores the messages (de-duplicated by bot + update id), the task's
counters move, and updates that could not be stored are recorded on the task.

Dependencies point one way: conversations stores and answers updates, so it registers
itself here as the sink (`sink_register`, from its AppConfig.ready); bots never imports
it.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import telegram as ptb
from django.db.models import F
from django.utils import timezone

from bots import telegram
from bots.models import BotTask
from bots.services import task_error_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredBatch:
    """What the sink stored of one batch of updates."""

    new_messages: int = 0  # counted into the task's messages_processed
    # What the sink needs to answer the messages that want an answer (opaque here).
    to_answer: list[Any] = field(default_factory=list)
    # Updates that could not be stored, in words: recorded on the task, and passed over.
    skipped: list[str] = field(default_factory=list)


class UpdateSink(Protocol):
    def store(
        self, *, task: BotTask, updates: Sequence[ptb.Update],
        unreadable: Sequence[tuple[int | None, str]], claim: bool,
    ) -> StoredBatch:
        """Store the batch (inside the caller's transaction), and keep a trace of the
        updates that could not be read (update id or None, why). `claim`: the messages
        to answer are claimed by this process, which answers them next (a poller);
        otherwise they wait unclaimed (a webhook drain's, for hand_off)."""
        ...

    def answer(self, batch: StoredBatch) -> None:
        """Answer a batch stored claimed, in this process; called on the I/O loop, must
        not block."""
        ...

    def hand_off(self, batch: StoredBatch) -> None:
        """Answer a batch stored unclaimed (a webhook drain's), in this worker, after
        the transaction; each chat's order kept across workers."""
        ...


_sink: UpdateSink | None = None


def sink_register(sink: UpdateSink) -> None:
    global _sink
    _sink = sink


def sink() -> UpdateSink | None:
    return _sink


def batch_store(*, task: BotTask, polled: telegram.Polled, claim: bool) -> StoredBatch:
    """Store what came from Telegram for this running task; counters and passed-over
    updates recorded. Runs inside the caller's transaction."""
    batch = StoredBatch()
    if _sink is not None:
        batch = _sink.store(task=task, updates=polled.updates, unreadable=polled.unreadable, claim=claim)
    if batch.new_messages:
        BotTask.objects.filter(pk=task.pk).update(
            messages_processed=F("messages_processed") + batch.new_messages,
            # A webhook task's heartbeat is its last drained push; a poller's, its lease renewal.
            **({} if claim else {"heartbeat_at": timezone.now()}),
        )
    if batch.skipped:
        passed_over = ", ".join(batch.skipped)
        log.warning("task %s: passed over %s", task.pk, passed_over)
        task_error_record(task_id=task.pk, error=f"Could not store {passed_over}; passed over.")
    return batch
