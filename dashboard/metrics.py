"""Prometheus metrics for the whole fleet, computed from the database at scrape time.

Why not prometheus_client's in-process Counter/Histogram: the work happens in the
Celery worker processes (any number of them, on other hosts), and the scrape hits a
web process that did none of it. In-process counters would show only that one
process's share, and would reset on every restart. The database already holds every
worker's work (BotTask counters, the Message log), so a custom collector reads it
there, and any web process answers for the whole fleet.

Counters restart from zero when their rows go away (a task or old messages deleted);
Prometheus' rate() treats a drop as a counter reset, which is what it is.
"""

from collections.abc import Iterator, Mapping
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from bots.models import BotTask
from conversations.models import Message
from dashboard import health

# Upper bounds of the AI latency buckets, in seconds (model calls take 0.3-30 s).
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class FleetCollector(Collector):
    """Reads the fleet's figures from the database on every scrape (a few aggregate
    queries, however many bots and tasks)."""

    def collect(self) -> Iterator[Metric]:
        yield from self._task_counters()
        yield self._ai_latency()
        yield self._errors()
        yield self._tasks_by_status()
        queues = self._queue_depths()
        if queues is not None:
            yield queues

    def _task_counters(self) -> Iterator[Metric]:
        updates = CounterMetricFamily(
            "botfleet_updates_received", "Telegram updates stored, per bot.", labels=["bot"]
        )
        replies = CounterMetricFamily(
            "botfleet_replies_sent", "Replies delivered to Telegram, per bot.", labels=["bot"]
        )
        rows = BotTask.objects.order_by().values("bot__name").annotate(
            updates=Sum("messages_processed"), replies=Sum("replies_sent")
        )
        for row in rows:
            updates.add_metric([row["bot__name"]], row["updates"] or 0)
            replies.add_metric([row["bot__name"]], row["replies"] or 0)
        yield updates
        yield replies

    def _ai_latency(self) -> Metric:
        family = HistogramMetricFamily(
            "botfleet_ai_latency_seconds", "Time the AI provider took per reply, per bot.",
            labels=["bot"],
        )
        buckets = {
            f"le_{i}": Count("pk", filter=Q(ai_latency_ms__lte=bound * 1000))
            for i, bound in enumerate(LATENCY_BUCKETS)
        }
        # Rows as plain mappings: the bucket columns are named at run time, which the
        # type checker's TypedDict of the row cannot know.
        rows: QuerySet[Message, Mapping[str, Any]] = Message.objects.filter(
            direction=Message.Direction.OUT, ai_latency_ms__isnull=False
        ).order_by().values("bot__name").annotate(n=Count("pk"), total=Sum("ai_latency_ms"), **buckets)
        for row in rows:
            family.add_metric(
                [row["bot__name"]],
                buckets=[(str(bound), row[f"le_{i}"]) for i, bound in enumerate(LATENCY_BUCKETS)]
                + [("+Inf", row["n"])],
                sum_value=(row["total"] or 0) / 1000,
            )
        return family

    def _errors(self) -> Metric:
        family = CounterMetricFamily(
            "botfleet_errors",
            "Errors per bot and kind: 'task' = recorded on the bot's tasks (polling and "
            "delivery failures); 'ai' = AI call failed, the fallback line was sent; "
            "'reply_failed' = an incoming message that never got its reply.",
            labels=["bot", "kind"],
        )
        task_rows = BotTask.objects.order_by().values("bot__name").annotate(n=Sum("error_count"))
        for task_row in task_rows:
            family.add_metric([task_row["bot__name"], "task"], task_row["n"] or 0)
        rows = Message.objects.order_by().values("bot__name").annotate(
            ai=Count("pk", filter=Q(direction=Message.Direction.OUT) & ~Q(error="")),
            reply_failed=Count(
                "pk", filter=Q(direction=Message.Direction.IN, reply_state=Message.ReplyState.FAILED)
            ),
        )
        for row in rows:
            family.add_metric([row["bot__name"], "ai"], row["ai"])
            family.add_metric([row["bot__name"], "reply_failed"], row["reply_failed"])
        return family

    def _tasks_by_status(self) -> Metric:
        family = GaugeMetricFamily("botfleet_tasks", "Bot tasks by status.", labels=["status"])
        counts = dict(BotTask.objects.order_by().values_list("status").annotate(n=Count("pk")))
        for status in BotTask.Status:
            family.add_metric([status.value], counts.get(status.value, 0))
        return family

    def _queue_depths(self) -> Metric | None:
        depths = health.queue_depths()
        if depths is None:  # Redis down: leave the series out rather than report zeros
            return None
        family = GaugeMetricFamily(
            "botfleet_queue_messages", "Messages waiting in each Celery queue.", labels=["queue"]
        )
        for queue, depth in depths.items():
            family.add_metric([queue], depth)
        return family


def fleet_registry() -> CollectorRegistry:
    """A registry of our collector only. Built per scrape, nothing at import; the web
    process's own process metrics would say nothing about the fleet."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector())
    return registry
