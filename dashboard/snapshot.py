"""What the dashboard shows, as one JSON-ready dict.

The page renders it on the server at first, and its script re-renders the same dict
from the JSON endpoint every few seconds, so both say exactly the same thing. Values
meant for people are formatted here ("12 s ago", "850 ms"), once.
"""

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.core.paginator import Page
from django.urls import reverse
from django.utils import timezone

from bots.models import Bot, BotTask
from dashboard import health, selectors

ACTION_LABELS = {"start": "Start", "stop": "Stop", "restart": "Restart"}
ERROR_PREVIEW = 200  # characters of the last error shown in the table
# What "last heartbeat" means for each way of getting updates.
HEARTBEAT_HINTS = {
    Bot.UpdateMode.POLLING.value: "when the bot's poller last checked in",
    Bot.UpdateMode.WEBHOOK.value: "when Telegram last pushed a message",
}


def dashboard_snapshot(
    *, user: AbstractUser | AnonymousUser, status: str = "", search: str = "", page: int | str = 1
) -> dict[str, Any]:
    now = timezone.now()
    summary = selectors.fleet_summary(now=now)
    tasks = selectors.tasks_page(
        status=status, search=search, page=page, per_page=settings.DASHBOARD_TASKS_PER_PAGE
    )
    queues = health.queue_depths()
    workers = health.live_workers()
    can_act = user.has_perm("bots.change_bottask")
    return {
        "generated_at": now.isoformat(),
        "summary": _summary(summary, queues, workers),
        "cards": _cards(summary, queues, workers),
        "statuses": [
            {"value": "", "label": "All", "count": summary.tasks_total},
            *({"value": s.value, "label": s.label, "count": summary.tasks_by_status[s.value]}
              for s in BotTask.Status),
        ],
        "filter": {"status": status if status in selectors.STATUS_FILTERS else "", "q": search},
        "tasks": [task_row(task, now=now, can_act=can_act) for task in tasks],
        "page": _page(tasks),
    }


def _summary(
    summary: selectors.FleetSummary, queues: dict[str, int] | None, workers: list[str] | None
) -> dict[str, Any]:
    return {
        "tasks_running": summary.tasks_by_status[BotTask.Status.RUNNING],
        "tasks_failed": summary.tasks_by_status[BotTask.Status.FAILED],
        "messages_today": summary.messages_today,
        "replies_today": summary.replies_today,
        "errors_today": summary.errors_today,
        "refused_today": summary.refused_today,
        "ai_latency_p50_ms": summary.latency_p50_ms,
        "ai_latency_p95_ms": summary.latency_p95_ms,
        "queues": queues,
        "workers": workers,
    }


def _cards(
    summary: selectors.FleetSummary, queues: dict[str, int] | None, workers: list[str] | None
) -> list[dict[str, str]]:
    running = summary.tasks_by_status[BotTask.Status.RUNNING]
    scheduled = summary.tasks_by_status[BotTask.Status.SCHEDULED]
    failed = summary.tasks_by_status[BotTask.Status.FAILED]
    return [
        _card(
            "running", "Tasks running", str(running),
            f"of {summary.tasks_total}" + (f" · {scheduled} scheduled to start" if scheduled else ""),
        ),
        _card("failed", "Tasks failed", str(failed), "", alert=failed > 0),
        _card("messages", "Messages today", str(summary.messages_today), "received"),
        _card("replies", "Replies today", str(summary.replies_today), "sent"),
        _card(
            "errors", "Errors today", str(summary.errors_today),
            "messages with an error + tasks with a new error", alert=summary.errors_today > 0,
        ),
        _card("refused", "Refused today", str(summary.refused_today), "access rules, pause, quotas"),
        _card(
            "latency", "AI latency (1 h)",
            _durations(summary.latency_p50_ms, summary.latency_p95_ms), "p50 / p95",
        ),
        _card(
            "queues", "Queued",
            "?" if queues is None else str(sum(queues.values())),
            "Redis unavailable" if queues is None
            else " · ".join(f"{name} {depth}" for name, depth in queues.items()),
            alert=queues is None,
        ),
        _card(
            "workers", "Live workers", "?" if workers is None else str(len(workers)),
            "broker unavailable" if workers is None else ", ".join(workers) or "none answered",
            alert=not workers,
        ),
    ]


def _card(key: str, label: str, value: str, hint: str, *, alert: bool = False) -> dict[str, Any]:
    return {"key": key, "label": label, "value": value, "hint": hint, "alert": alert}


def _durations(first_ms: int | None, second_ms: int | None) -> str:
    """Both percentiles, short enough for a card: 850 ms / 1.9 s, or 0.9 / 1.9 s."""
    if first_ms is None or second_ms is None:
        return "—"
    (first, first_unit), (second, second_unit) = _duration(first_ms), _duration(second_ms)
    if first_unit == second_unit:
        return f"{first} / {second} {second_unit}"
    return f"{first} {first_unit} / {second} {second_unit}"


def _duration(ms: int) -> tuple[str, str]:
    return (str(ms), "ms") if ms < 1000 else (f"{ms / 1000:.1f}", "s")


def task_row(task: BotTask, *, now: datetime, can_act: bool) -> dict[str, Any]:
    age = int((now - task.heartbeat_at).total_seconds()) if task.heartbeat_at else None
    return {
        "id": task.pk,
        "name": task.name,
        "status": task.status,
        # When a scheduled task starts, until when a running one runs, when one completed.
        "window": task.run_window(),
        "bot": task.bot.name,
        "bot_username": task.bot.username,
        "mode": task.bot.update_mode,
        "detail_url": reverse("dashboard:task", args=[task.pk]),
        "heartbeat_age_s": age,
        "heartbeat": ago(age),
        "heartbeat_hint": HEARTBEAT_HINTS[task.bot.update_mode],
        # Running, yet past the time the poller promised to check in by.
        "heartbeat_late": bool(
            task.status == BotTask.Status.RUNNING and task.lease_expires_at
            and task.lease_expires_at < now
        ),
        "messages_processed": task.messages_processed,
        "replies_sent": task.replies_sent,
        "error_count": task.error_count,
        "last_error": _preview(task.last_error),
        "last_error_ago": ago(int((now - task.last_error_at).total_seconds())) if task.last_error_at else "",
        "actions": _actions(task) if can_act else [],
    }


def _actions(task: BotTask) -> list[dict[str, str]]:
    names = {
        BotTask.Status.RUNNING.value: ["stop", "restart"],
        BotTask.Status.SCHEDULED.value: ["stop"],  # cancels the start
    }.get(task.status, ["start"])
    return [
        {"name": name, "label": ACTION_LABELS[name],
         "url": reverse("dashboard:task-action", args=[task.pk, name])}
        for name in names
    ]


def _preview(text: str) -> str:
    return text if len(text) <= ERROR_PREVIEW else text[: ERROR_PREVIEW - 1] + "…"


def ago(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _page(page: Page) -> dict[str, Any]:
    return {
        "number": page.number,
        "num_pages": page.paginator.num_pages,
        "count": page.paginator.count,
        "previous": page.previous_page_number() if page.has_previous() else None,
        "next": page.next_page_number() if page.has_next() else None,
    }
