"""The dashboard's reads: fleet-wide figures, a page of tasks, one task's history.

Every function here runs a fixed number of queries, whatever the number of tasks or
messages: aggregates in the database, counters kept on BotTask, one page of rows with
its bot joined in.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from bots.models import BotTask
from conversations.models import Message

STATUS_FILTERS = [status.value for status in BotTask.Status]


@dataclass(frozen=True)
class FleetSummary:
    tasks_by_status: dict[str, int]
    messages_today: int
    replies_today: int
    errors_today: int
    refused_today: int
    latency_p50_ms: int | None
    latency_p95_ms: int | None

    @property
    def tasks_total(self) -> int:
        return sum(self.tasks_by_status.values())


def today_start() -> datetime:
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def fleet_summary(*, now: datetime | None = None) -> FleetSummary:
    now = now or timezone.now()
    start = today_start()
    tasks = BotTask.objects.aggregate(
        **{status: Count("pk", filter=Q(status=status)) for status in STATUS_FILTERS},
        # Poll failures leave no message behind, only the task's last error and its time.
        errors_today=Count("pk", filter=Q(last_error_at__gte=start)),
    )
    messages = Message.objects.filter(created_at__gte=start).aggregate(
        incoming=Count("pk", filter=Q(direction=Message.Direction.IN)),
        # A long reply goes out in several parts: count the messages answered.
        replies=Count("reply_to", distinct=True, filter=_sent_reply()),
        errors=Count("pk", filter=~Q(error="") & Q(refusal="")),
        refused=Count("pk", filter=~Q(refusal="")),
    )
    p50, p95 = latency_percentiles(since=now - timedelta(hours=1), percentiles=(50, 95))
    return FleetSummary(
        tasks_by_status={status: tasks[status] for status in STATUS_FILTERS},
        messages_today=messages["incoming"],
        replies_today=messages["replies"],
        errors_today=messages["errors"] + tasks["errors_today"],
        refused_today=messages["refused"],
        latency_p50_ms=p50,
        latency_p95_ms=p95,
    )


def _sent_reply() -> Q:
    return Q(direction=Message.Direction.OUT, telegram_message_id__isnull=False)


def latency_percentiles(*, since: datetime, percentiles: tuple[int, ...]) -> list[int | None]:
    """Nearest-rank percentiles of AI latency of outgoing messages since `since`.

    Done in the database (a count, then one ranked row per percentile) rather than by
    loading every latency: SQLite has no percentile function, and an hour of a busy
    fleet is many rows.
    """
    rows = Message.objects.filter(
        direction=Message.Direction.OUT, created_at__gte=since, ai_latency_ms__isnull=False
    )
    total = rows.count()
    ranked = rows.order_by("ai_latency_ms").values_list("ai_latency_ms", flat=True)
    # Always one query per percentile, even with no rows, so the count stays fixed.
    return [_value_at(ranked, _rank(p, total)) for p in percentiles]


def _value_at(ranked: QuerySet[Message, int | None], index: int) -> int | None:
    return next(iter(ranked[index:index + 1]), None)


def _rank(percentile: int, total: int) -> int:
    """Zero-based index of the nearest-rank percentile among `total` sorted values."""
    return max(0, -(-percentile * total // 100) - 1)


def tasks_page(*, status: str = "", search: str = "", page: int | str = 1, per_page: int = 50) -> Page:
    tasks: QuerySet[BotTask] = BotTask.objects.select_related("bot").order_by("name", "id")
    if status in STATUS_FILTERS:
        tasks = tasks.filter(status=status)
    if search:
        tasks = tasks.filter(
            Q(name__icontains=search) | Q(bot__name__icontains=search)
            | Q(bot__username__icontains=search)
        )
    return Paginator(tasks, per_page).get_page(page)


# --- one task -----------------------------------------------------------------------


def task_for_detail(*, task_id: int) -> BotTask:
    return BotTask.objects.select_related("bot__persona", "bot__credential").get(pk=task_id)


def recent_messages(*, task: BotTask, limit: int = 50) -> list[Message]:
    """The bot's latest messages, oldest first (messages belong to the bot, whichever of
    its tasks was running)."""
    latest = (
        Message.objects.filter(bot_id=task.bot_id).select_related("chat", "sender")
        .order_by("-created_at", "-id")[:limit]
    )
    return list(reversed(latest))


def recent_errors(*, task: BotTask, limit: int = 20) -> list[Message]:
    return list(
        Message.objects.filter(bot_id=task.bot_id).exclude(error="").select_related("chat")
        .order_by("-created_at", "-id")[:limit]
    )


def replies_per_hour(*, task: BotTask, hours: int = 24, now: datetime | None = None) -> list[tuple[datetime, int]]:
    """(hour, replies sent) for each of the last `hours` hours, oldest first, zeros kept."""
    # Hours are cut in UTC: every UTC hour is a whole local hour only in zones whose
    # offset is whole hours, and DST makes local hours repeat or vanish.
    now = (now or timezone.now()).astimezone(UTC)
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    counts = dict(
        Message.objects.filter(_sent_reply(), bot_id=task.bot_id, created_at__gte=first_hour)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC)).order_by().values_list("hour")
        .annotate(n=Count("reply_to", distinct=True))
    )
    counts = {hour.astimezone(UTC): n for hour, n in counts.items()}
    slots = [first_hour + timedelta(hours=i) for i in range(hours)]
    return [(slot, counts.get(slot, 0)) for slot in slots]
