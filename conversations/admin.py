import logging
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from conversations import broadcasts, scheduling
from conversations.forms import ScheduledMessageForm
from conversations.models import (
    Chat,
    Delivery,
    Message,
    Persona,
    ScheduledMessage,
    ScheduledRun,
    SkippedUpdate,
    TelegramUser,
)

log = logging.getLogger(__name__)


@admin.register(Persona)
class PersonaAdmin(admin.ModelAdmin):
    list_display = ("name", "temperature", "max_output_tokens", "history_limit", "updated_at")
    search_fields = ("name", "instructions")


@admin.register(TelegramUser)
class TelegramUserAdmin(admin.ModelAdmin):
    list_display = ("telegram_id", "display_name", "username", "is_bot", "last_seen_at")
    list_filter = ("is_bot",)
    search_fields = ("telegram_id", "username", "first_name", "last_name")


@admin.register(Chat)
class ChatAdmin(admin.ModelAdmin):
    list_display = (
        "__str__", "bot", "type", "telegram_id", "is_active", "inactive_reason", "last_message_at",
    )
    list_filter = ("type", "is_active", "bot")
    list_select_related = ("bot",)
    search_fields = ("title", "username", "telegram_id")


@admin.register(SkippedUpdate)
class SkippedUpdateAdmin(admin.ModelAdmin):
    """What Telegram delivered that could not be read or stored: seen, never edited."""

    list_display = ("created_at", "bot", "update_id", "error")
    list_filter = ("bot",)
    list_select_related = ("bot",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "created_at", "bot", "chat", "direction", "kind", "sender", "short_text", "reply_state",
        "ai_latency_ms",
    )
    list_filter = ("direction", "kind", "reply_state", "bot")
    list_select_related = ("bot", "chat", "sender")
    search_fields = ("text", "chat__title", "sender__username")
    raw_id_fields = ("chat", "sender", "reply_to")
    date_hierarchy = "created_at"

    @admin.display(description="text")
    def short_text(self, obj: Message) -> str:
        return obj.text[:80]


# --- scheduled messages --------------------------------------------------------------

PREVIEW_RUNS = 5


@admin.action(description="Send now (to its chats, whatever the schedule)")
def send_now(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ScheduledMessage]) -> None:
    for scheduled in queryset:
        run = broadcasts.scheduled_send_now(scheduled=scheduled)
        modeladmin.message_user(
            request, f"“{scheduled.name}”: sending now (run #{run.pk}).", messages.SUCCESS
        )


def _enable(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ScheduledMessage],
            enabled: bool) -> None:
    for scheduled in queryset:
        scheduling.schedule_enable(scheduled=scheduled, enabled=enabled)
    verb = "Enabled" if enabled else "Disabled"
    modeladmin.message_user(request, f"{verb} {len(queryset)} scheduled message(s).", messages.SUCCESS)


@admin.action(description="Enable selected scheduled messages")
def enable(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ScheduledMessage]) -> None:
    _enable(modeladmin, request, queryset, True)


@admin.action(description="Disable selected scheduled messages")
def disable(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ScheduledMessage]) -> None:
    _enable(modeladmin, request, queryset, False)


@admin.register(ScheduledMessage)
class ScheduledMessageAdmin(admin.ModelAdmin):
    form = ScheduledMessageForm
    actions = [send_now, enable, disable]
    list_display = (
        "name", "bot", "when", "audience", "content", "enabled", "next_run", "last_run_at",
        "last_status",
    )
    list_filter = ("enabled", "kind", "content", "audience", "bot")
    list_select_related = ("bot",)
    search_fields = ("name", "text")
    autocomplete_fields = ("bot", "chats")
    readonly_fields = (
        "schedule_preview", "last_run_at", "last_status", "last_result", "recent_runs",
        "periodic_task_link",
    )
    fieldsets = (
        (None, {"fields": ("name", "bot", "enabled")}),
        ("Message", {"fields": ("content", "text")}),
        ("To whom", {"fields": ("audience", "chats")}),
        ("When", {"fields": (
            "kind", "run_at", "cron", "timezone", "start_at", "end_at", "schedule_preview",
        )}),
        ("Last run", {"fields": (
            "last_run_at", "last_status", "last_result", "recent_runs", "periodic_task_link",
        )}),
    )

    def save_model(self, request: HttpRequest, obj: ScheduledMessage, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        # In the admin's transaction: the message and its PeriodicTask change together.
        scheduling.schedule_sync(scheduled=obj)

    @admin.display(description="when")
    def when(self, obj: ScheduledMessage) -> str:
        if obj.kind == ScheduledMessage.Kind.ONCE:
            return f"once, {obj.run_at:%Y-%m-%d %H:%M %Z}" if obj.run_at else "once"
        return f"{obj.cron} ({obj.timezone})"

    @admin.display(description="next run")
    def next_run(self, obj: ScheduledMessage) -> str:
        if not obj.enabled:
            return "—"
        runs = _runs_next(obj, 1)
        return f"{runs[0]:%Y-%m-%d %H:%M %Z}" if runs else "never"

    @admin.display(description="next runs")
    def schedule_preview(self, obj: ScheduledMessage) -> str:
        if obj.pk is None:
            return "Shown after saving."
        runs = _runs_next(obj, PREVIEW_RUNS)
        described = (
            scheduling.cron_describe(expression=obj.cron) if obj.kind == ScheduledMessage.Kind.CRON else ""
        )
        lines = format_html_join(
            "", "<li>{}</li>", ((f"{run:%a %Y-%m-%d %H:%M %Z} ({obj.timezone})",) for run in runs)
        )
        return format_html(
            "{}<ul>{}</ul>{}", f"{described}." if described else "",
            lines or format_html("<li>{}</li>", "none to come"),
            "" if obj.enabled else "Disabled: none of these is sent until it is enabled.",
        )

    @admin.display(description="recent runs")
    def recent_runs(self, obj: ScheduledMessage) -> str:
        runs = obj.runs.order_by("-created_at")[:10] if obj.pk else []
        return format_html_join(
            "", "<div>{} · {} · {} · {}</div>",
            ((f"{run.slot:%Y-%m-%d %H:%M:%S %Z}", run.get_trigger_display(), run.state,
              broadcasts.run_summary(run=run) if run.state == ScheduledRun.State.DONE else run.error)
             for run in runs),
        ) or "—"

    @admin.display(description="beat task")
    def periodic_task_link(self, obj: ScheduledMessage) -> str:
        task = obj.periodic_task
        if task is None:
            return "—"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
        state = "enabled" if task.enabled else "disabled"
        return format_html('<a href="{}">{}</a> ({})', url, task.name, state)


def _runs_next(obj: ScheduledMessage, count: int) -> list[datetime]:
    """None to come, as far as a page can tell: a schedule that cannot be computed (a
    bad expression saved before it was refused, a time zone gone) must not take the
    whole page down with it."""
    try:
        return scheduling.runs_next(scheduled=obj, count=count)
    except ValidationError:
        return []  # a bad cron expression is reported on its field
    except Exception:
        log.exception("scheduled message %s: cannot compute its next runs", obj.pk)
        return []


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ("chat", "state", "telegram_message_id", "attempts", "error", "sent_at")
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    show_change_link = False


@admin.register(ScheduledRun)
class ScheduledRunAdmin(admin.ModelAdmin):
    list_display = ("scheduled", "slot", "trigger", "state", "total", "sent", "failed", "skipped",
                    "finished_at")
    list_filter = ("state", "trigger")
    list_select_related = ("scheduled",)
    readonly_fields = (
        "scheduled", "slot", "trigger", "state", "lanes", "text", "ai_model", "error", "total",
        "sent", "failed", "skipped", "heartbeat_at", "created_at", "finished_at",
    )
    exclude = ("updated_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("run", "chat", "state", "telegram_message_id", "attempts", "short_error", "sent_at")
    list_filter = ("state",)
    list_select_related = ("run__scheduled", "chat")
    search_fields = ("chat__title", "chat__telegram_id", "error")
    readonly_fields = ("run", "chat", "state", "telegram_message_id", "attempts", "error", "sent_at")
    exclude = ("updated_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="error")
    def short_error(self, obj: Delivery) -> str:
        return obj.error[:80]
