"""Webhook pushes, from Telegram's request to the message log.

The door (bots.views): the secret checked, the body read and kept as it came in a
PushedUpdate row (one insert), then Telegram gets its 200: the push is in the database
before Telegram forgets it. The door then makes sure a drain of that bot is on its way,
one Celery message per bot at a time however many pushes arrive meanwhile (a Redis key
says one is due), so a busy bot's pushes are stored and answered in batches, as a poll's
are, and the web process does as little as a request can.

A drain (bots.tasks.pushes_drain, on a worker) takes the bot's rows in update order, a
batch at a time, stores them through bots.updates.batch_store (the poll's path:
de-duplicated by bot + update id, an unreadable update passed over with the reason),
deletes them in the same transaction, and hands the messages to the sink, which answers
them in this worker. One drain per bot at a time (a Redis lock), so a chat's messages are
stored in Telegram's order.

Nothing is lost: rows no drain came for (the broker was down, a worker died mid-drain)
are found by the supervisor (`sweep`, rows older than SWEEP_AFTER) and drained then; a
push stored twice (Telegram retried it) is one row, and a row drained twice is one
message (the message log's own uniqueness).
"""

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from bots import telegram, updates
from bots.models import BotTask, PushedUpdate
from core import dbwork
from core.redis import redis_client

log = logging.getLogger(__name__)

DRAIN_BATCH = 100  # pushes stored in one transaction: a poll's batch size
# A drain holds its bot's lock at most this long (renewed each batch): a dead worker's
# lock lapses, and the sweep's drain takes over.
DRAIN_LOCK_SECONDS = 60
# A drain said to be due that never came (its message lost) stops holding up others.
DUE_SECONDS = 30
SWEEP_AFTER = timedelta(seconds=15)  # a push older than this is drained by the supervisor
SWEEP_BOTS = 500  # bots per supervisor round


@dataclass(frozen=True)
class Push:
    """A webhook request's body as the door read it."""

    update_id: int | None
    payload: str = ""  # the body, when it is an update to store
    problem: str = ""  # why it is not one, in words ("" when it is)


def push_read(body: bytes) -> Push:
    """Only what the door must know: a JSON object with a valid update id (the rest of
    Telegram's shape is read by the drain, as a poll's batch is)."""
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    if len(body) > limit:
        return Push(None, problem=f"a webhook request of more than {limit} bytes")
    try:
        payload = body.decode("utf-8")
        item = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: nested beyond the parser's depth
        return Push(None, problem="a webhook request that is not JSON")
    if not isinstance(item, dict):
        return Push(None, problem="a webhook request that is not an update")
    update_id, problem = telegram.update_id_of(item)
    return Push(update_id, payload="" if problem else payload, problem=problem)


def push_keep(*, bot_id: int, push: Push) -> None:
    """Keep a readable push for the workers and make sure a drain is due."""
    assert push.update_id is not None and not push.problem, "only a readable push is kept"
    with connection.cursor() as cursor:
        received_at = connection.ops.adapt_datetimefield_value(timezone.now())
        cursor.execute(_KEEP, [bot_id, push.update_id, push.payload, received_at])
    try:
        drain_request(bot_id)
    except Exception:
        # Kept all the same: the supervisor's sweep drains it.
        log.warning("bot %s: could not ask a worker to store a push; the supervisor will",
                    bot_id, exc_info=True)


# Written out, as bots.webhooks' look-up is, for the same reason (every push runs it).
# A push Telegram sent again (it had no 200 for the first) is kept once.
_KEEP = (
    f"INSERT INTO {PushedUpdate._meta.db_table} (bot_id, update_id, payload, received_at) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (bot_id, update_id) DO NOTHING"
)


def push_pass_over(*, task_id: int, push: Push) -> None:
    """A body that is not an update: nothing to store but the trace, as for a poll's
    unreadable update (SkippedUpdate, the reason on the task)."""
    task = BotTask.objects.select_related("bot").get(pk=task_id)
    polled = telegram.Polled(updates=[], unreadable=[(push.update_id, push.problem)], received=1)
    # The same retried transaction as a drain's: it writes the same task row.
    dbwork.transaction_retrying(lambda: updates.batch_store(task=task, polled=polled, claim=False))


def drain_request(bot_id: int) -> None:
    """One drain message per bot at a time: the first push after a drain began asks."""
    client = redis_client()
    if client.set(_due_key(bot_id), 1, nx=True, ex=DUE_SECONDS):
        try:
            _drain_publish(bot_id)
        except Exception:
            client.delete(_due_key(bot_id))  # the next push asks again
            raise


def drain(bot_id: int) -> int:
    """Store the bot's waiting pushes; the number of rows taken. A drain that finds
    another holding the bot's lock leaves the work to it: a holder looks again after
    letting go, so a push that came meanwhile is never left behind."""
    taken = 0
    while True:
        lock = _lock_take(bot_id)
        if lock is None:
            return taken
        try:
            taken += _drain_held(bot_id, lock)
        finally:
            _lock_release(bot_id, lock)
        if not PushedUpdate.objects.filter(bot_id=bot_id).exists():
            return taken


def sweep(*, now: datetime | None = None) -> list[int]:
    """Bots with pushes no drain came for within SWEEP_AFTER: a drain each, now."""
    since = (now or timezone.now()) - SWEEP_AFTER
    bot_ids = list(
        PushedUpdate.objects.filter(received_at__lt=since)
        .values_list("bot_id", flat=True).order_by("bot_id").distinct()[:SWEEP_BOTS]
    )
    for bot_id in bot_ids:
        _drain_publish(bot_id)
    if bot_ids:
        log.warning("pushes of %s bot(s) waited over %s s for a drain; drains sent", len(bot_ids),
                    SWEEP_AFTER.total_seconds())
    return bot_ids


def _drain_held(bot_id: int, lock: str) -> int:
    taken = 0
    while True:
        # From here on, a push asks for a drain of its own: it may come after this
        # batch's read, and this drain may end before it is kept.
        redis_client().delete(_due_key(bot_id))
        rows = list(
            PushedUpdate.objects.filter(bot_id=bot_id).order_by("update_id")
            .values_list("pk", "payload")[:DRAIN_BATCH]
        )
        if not rows:
            return taken
        _batch_drain(bot_id, rows)
        taken += len(rows)
        if len(rows) < DRAIN_BATCH:
            # That was all of them when read. Not reading again saves a busy fleet's
            # drains (mostly one or two pushes) a query each: drain() looks once more
            # after letting go, which finds a push that came meanwhile all the same.
            # The due key goes first, as a read would have taken it: a push kept
            # before this batch's read may have set it since, and its drain found the
            # lock held; left set, the bot's next push would not ask for a drain.
            redis_client().delete(_due_key(bot_id))
            return taken
        _lock_renew(bot_id, lock)


def _batch_drain(bot_id: int, rows: list[tuple[int, str]]) -> None:
    task = _task_of(bot_id)
    polled = telegram.updates_read([_parsed(payload) for _, payload in rows])

    def store() -> updates.StoredBatch | None:
        batch = updates.batch_store(task=task, polled=polled, claim=False) if task else None
        PushedUpdate.objects.filter(pk__in=[pk for pk, _ in rows]).delete()
        return batch

    batch = dbwork.transaction_retrying(store)  # its counters are rows other writers hold
    sink = updates.sink()
    if batch is not None and batch.to_answer and sink is not None:
        sink.hand_off(batch)


def _task_of(bot_id: int) -> BotTask | None:
    """The running task, or (stopped since the push came in) the bot's latest: a push
    Telegram delivered is logged either way. None only for a bot with no task left."""
    tasks = BotTask.objects.filter(bot_id=bot_id).select_related("bot").order_by("-pk")
    task = tasks.filter(status=BotTask.Status.RUNNING).first() or tasks.first()
    if task is None:
        log.warning("bot %s: pushes for a bot with no task are dropped", bot_id)
    return task


def _parsed(payload: str) -> object:
    try:
        return json.loads(payload)
    except ValueError:  # the door read it; a row written by hand may not be
        return None


def _drain_publish(bot_id: int) -> None:
    # Imported here: bots.tasks imports the supervisor, which imports this module.
    from bots.tasks import pushes_drain

    pushes_drain.delay(bot_id)


def _due_key(bot_id: int) -> str:
    return f"botfleet:pushes:due:{bot_id}"


def _lock_key(bot_id: int) -> str:
    return f"botfleet:pushes:draining:{bot_id}"


def _lock_take(bot_id: int) -> str | None:
    token = uuid.uuid4().hex
    taken = redis_client().set(_lock_key(bot_id), token, nx=True, ex=DRAIN_LOCK_SECONDS)
    return token if taken else None


# Only the holder renews or lets go: a lock that lapsed may be another drain's now.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def _lock_renew(bot_id: int, token: str) -> None:
    redis_client().eval(_RENEW, 1, _lock_key(bot_id), token, DRAIN_LOCK_SECONDS)


def _lock_release(bot_id: int, token: str) -> None:
    redis_client().eval(_RELEASE, 1, _lock_key(bot_id), token)
