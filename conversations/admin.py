import logging
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from bots.admin import bdi
from bots.models import Bot
from conversations import broadcasts, memory, scheduling
from conversations.forms import ScheduledMessageForm
from conversations.models import (
    Chat,
    ChatSummary,
    Delivery,
    Message,
    Persona,
    ScheduledMessage,
    ScheduledRun,
    SkippedUpdate,
    TelegramUser,
    UserFact,
)

log = logging.getLogger(__name__)

# Characters of a message's text its changelist row shows (the cell wraps): most
# messages whole, a long answer's first paragraphs.
MESSAGE_TEXT_SHOWN = 600


@admin.register(Persona)
class PersonaAdmin(admin.ModelAdmin):
    list_display = ("persona_name", "temperature", "max_output_tokens", "history_limit", "updated_at")
    search_fields = ("name", "instructions")

    @admin.display(description="name", ordering="name")
    def persona_name(self, obj: Persona) -> SafeString:
        return bdi(obj.name)


class LogAdmin(admin.ModelAdmin):
    """What the bots saw and did, as it happened: listed newest first and opened as a
    read-only page, never added or edited here (an edited log would lie about what was
    said and sent). Superusers may delete rows, as when a person asks to be forgotten
    (deleting a chat deletes its messages); other staff only read."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.is_superuser


class RecordAdmin(LogAdmin):
    """Records a broadcast claims and counts by (a run is the claim on its slot: deleted,
    a re-delivered firing would send the same slot again): never deleted here, only with
    the scheduled message or the chat they belong to."""

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _text(value: str, limit: int, kind: str = "log-note") -> SafeString:
    """A log text in a changelist cell: enough of it to read, isolated like a name; it
    wraps in a column of its own (dashboard/admin.css): "log-text" for a message's text,
    wide; "log-note" for an error or a reason, narrower."""
    cut = value if len(value) <= limit else value[: limit - 1] + "…"
    return format_html('<bdi class="{}">{}</bdi>', kind, cut)


@admin.action(description="Forget selected people (messages, summaries, notes)…", permissions=["delete"])
def forget_users(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[TelegramUser]
) -> TemplateResponse | None:
    """The right to be forgotten: asks first (which bot, or all), then deletes what the
    bot keeps of each person (conversations.memory.user_forget)."""
    bots = Bot.objects.order_by("name")
    if request.POST.get("forget") == "yes":
        bot = bots.filter(pk=request.POST.get("bot") or 0).first()
        for user in queryset:
            gone = memory.user_forget(user=user, bot=bot)
            modeladmin.message_user(
                request,
                f"Forgot {user.display_name}{f' for {bot.name}' if bot else ''}: {gone.messages} "
                f"message(s), {gone.summaries} summary(ies), {gone.notes} note(s).",
                messages.SUCCESS,
            )
        return None
    return TemplateResponse(request, "admin/conversations/forget_users.html", {
        **modeladmin.admin_site.each_context(request),
        "title": "Forget these people?",
        "users": [(user, Message.objects.filter(sender=user).count()) for user in queryset],
        "bots": bots,
        "action": "forget_users",
        "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
    })


@admin.register(TelegramUser)
class TelegramUserAdmin(LogAdmin):
    actions = [forget_users]
    list_display = ("telegram_id", "name", "user_username", "is_bot", "language_code", "last_seen_at")
    list_filter = ("is_bot",)
    search_fields = ("telegram_id", "username", "first_name", "last_name")
    ordering = ("-last_seen_at", "-id")

    @admin.display(description="name", ordering="first_name")
    def name(self, obj: TelegramUser) -> SafeString:
        return bdi(obj.display_name)

    @admin.display(description="username", ordering="username")
    def user_username(self, obj: TelegramUser) -> SafeString:
        return bdi(f"@{obj.username}" if obj.username else "")


@admin.register(Chat)
class ChatAdmin(LogAdmin):
    """`is_active` is read-only too: it is Telegram's word (blocked, removed, added back)
    and the next message in the chat sets it again, so a switch here would be undone."""

    list_display = (
        "chat_name", "bot_name", "type", "telegram_id", "is_active", "reason", "last_message_at",
    )
    list_filter = ("type", "is_active", "bot")
    list_select_related = ("bot",)
    search_fields = ("title", "username", "telegram_id")
    ordering = (F("last_message_at").desc(nulls_last=True), "-created_at", "-id")

    @admin.display(description="chat", ordering="title")
    def chat_name(self, obj: Chat) -> SafeString:
        return bdi(obj)

    @admin.display(description="bot", ordering="bot__name")
    def bot_name(self, obj: Chat) -> SafeString:
        return bdi(obj.bot)

    @admin.display(description="inactive because")
    def reason(self, obj: Chat) -> SafeString:
        return _text(obj.inactive_reason, 200)


@admin.register(SkippedUpdate)
class SkippedUpdateAdmin(LogAdmin):
    """What Telegram delivered that could not be read or stored: seen, never edited."""

    list_display = ("created_at", "bot_name", "update_id", "short_error")
    list_filter = ("bot",)
    list_select_related = ("bot",)
    ordering = ("-created_at", "-id")

    @admin.display(description="bot", ordering="bot__name")
    def bot_name(self, obj: SkippedUpdate) -> SafeString:
        return bdi(obj.bot)

    @admin.display(description="error")
    def short_error(self, obj: SkippedUpdate) -> SafeString:
        return _text(obj.error, 300)


@admin.register(Message)
class MessageAdmin(LogAdmin):
    # Few columns, so the text has room at 1366 px beside the admin's two sidebars: the
    # bot shows under its chat, the direction as who wrote it (the bot or a person), the
    # kind and the bot are filters.
    list_display = ("created_at", "chat_name", "sender_name", "message_text", "state", "ai_time")
    list_filter = ("direction", "kind", "reply_state", "bot")
    list_select_related = ("bot", "chat", "sender")
    search_fields = ("text", "chat__title", "sender__username")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")

    @admin.display(description="chat (bot)", ordering="chat__title")
    def chat_name(self, obj: Message) -> SafeString:
        return format_html('{}<div class="quiet">{}</div>', bdi(obj.chat), bdi(obj.bot))

    @admin.display(description="from", ordering="direction")
    def sender_name(self, obj: Message) -> SafeString | str:
        if obj.direction == Message.Direction.OUT:
            return "→ the bot"
        return format_html("← {}", bdi(obj.sender.display_name if obj.sender else "?"))

    @admin.display(description="state")
    def state(self, obj: Message) -> str:
        if obj.direction == Message.Direction.OUT:
            return obj.get_send_state_display()
        return obj.get_reply_state_display()

    @admin.display(description="AI time", ordering="ai_latency_ms")
    def ai_time(self, obj: Message) -> str:
        return f"{obj.ai_latency_ms / 1000:.1f} s" if obj.ai_latency_ms is not None else ""

    @admin.display(description="text")
    def message_text(self, obj: Message) -> SafeString:
        return _text(obj.text, MESSAGE_TEXT_SHOWN, "log-text")


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
        "scheduled_name", "bot_name", "when", "audience", "content", "enabled", "next_run",
        "last_run_at", "last_status",
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

    @admin.display(description="name", ordering="name")
    def scheduled_name(self, obj: ScheduledMessage) -> SafeString:
        return bdi(obj.name)

    @admin.display(description="bot", ordering="bot__name")
    def bot_name(self, obj: ScheduledMessage) -> SafeString:
        return bdi(obj.bot)

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
class ScheduledRunAdmin(RecordAdmin):
    list_display = ("scheduled_name", "slot", "trigger", "state", "outcome", "finished_at", "short_error")
    list_filter = ("state", "trigger")
    list_select_related = ("scheduled",)
    ordering = ("-slot", "-id")
    readonly_fields = (
        "scheduled", "slot", "trigger", "state", "lanes", "text", "ai_model", "error", "total",
        "sent", "failed", "skipped", "heartbeat_at", "created_at", "finished_at",
    )
    exclude = ("updated_at",)

    @admin.display(description="scheduled message", ordering="scheduled__name")
    def scheduled_name(self, obj: ScheduledRun) -> SafeString:
        return bdi(obj.scheduled)

    @admin.display(description="chats")
    def outcome(self, obj: ScheduledRun) -> str:
        parts = [f"{obj.sent} of {obj.total} sent"]
        parts += [f"{obj.failed} failed"] if obj.failed else []
        parts += [f"{obj.skipped} skipped"] if obj.skipped else []
        return ", ".join(parts)

    @admin.display(description="error")
    def short_error(self, obj: ScheduledRun) -> SafeString:
        return _text(obj.error, 200)


@admin.register(Delivery)
class DeliveryAdmin(RecordAdmin):
    list_display = (
        "run_name", "chat_name", "state", "telegram_message_id", "attempts", "short_error", "sent_at",
    )
    list_filter = ("state",)
    list_select_related = ("run__scheduled", "chat")
    search_fields = ("chat__title", "chat__telegram_id", "error")
    readonly_fields = ("run", "chat", "state", "telegram_message_id", "attempts", "error", "sent_at")
    exclude = ("updated_at",)
    ordering = ("-id",)

    @admin.display(description="run", ordering="run__slot")
    def run_name(self, obj: Delivery) -> SafeString:
        return bdi(obj.run)

    @admin.display(description="chat", ordering="chat__title")
    def chat_name(self, obj: Delivery) -> SafeString:
        return bdi(obj.chat)

    @admin.display(description="error")
    def short_error(self, obj: Delivery) -> SafeString:
        return _text(obj.error, 200)


@admin.register(ChatSummary)
class ChatSummaryAdmin(admin.ModelAdmin):
    """Written by the AI; an operator may correct or delete one (it is rewritten as the
    chat grows)."""

    list_display = ("chat_name", "topic", "covers_up_to", "updated_at", "summary_text")
    list_select_related = ("chat__bot",)
    list_filter = ("chat__bot",)
    search_fields = ("text", "chat__title")
    readonly_fields = ("chat", "topic", "covers_up_to", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="chat", ordering="chat__title")
    def chat_name(self, obj: ChatSummary) -> SafeString:
        return bdi(f"{obj.chat} · {obj.chat.bot.name}")

    @admin.display(description="summary")
    def summary_text(self, obj: ChatSummary) -> SafeString:
        return _text(obj.text, MESSAGE_TEXT_SHOWN, "log-text")


@admin.register(UserFact)
class UserFactAdmin(admin.ModelAdmin):
    list_display = ("person", "bot_name", "text", "created_at")
    list_select_related = ("user", "bot")
    list_filter = ("bot",)
    search_fields = ("text", "user__username", "user__first_name", "user__telegram_id")
    autocomplete_fields = ("user",)

    @admin.display(description="person", ordering="user__first_name")
    def person(self, obj: UserFact) -> SafeString:
        return bdi(obj.user.display_name)

    @admin.display(description="bot", ordering="bot__name")
    def bot_name(self, obj: UserFact) -> SafeString:
        return bdi(obj.bot.name)
