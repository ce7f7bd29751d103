from collections.abc import Callable
from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from bots.forms import BotForm
from bots.models import Bot, BotTask
from bots.services import TaskError, task_restart, task_start, task_stop


def bdi(value: object) -> SafeString:
    """A name as a changelist cell shows it: isolated in <bdi>, so a right-to-left
    override (U+202E) in a chat title or a person's name flips that name only, never
    the text around it; escaped like any value."""
    return format_html("<bdi>{}</bdi>", "" if value is None else value)


@admin.register(Bot)
class BotAdmin(admin.ModelAdmin):
    form = BotForm
    list_display = (
        "bot_name", "bot_username", "telegram_id", "update_mode", "persona_name", "credential_name",
        "token_hint",
    )
    list_select_related = ("persona", "credential")
    list_filter = ("update_mode", "persona", "credential")
    search_fields = ("name", "username")
    readonly_fields = ("username", "telegram_id", "update_offset", "created_at", "updated_at")

    @admin.display(description="name", ordering="name")
    def bot_name(self, obj: Bot) -> SafeString:
        return bdi(obj.name)

    @admin.display(description="username", ordering="username")
    def bot_username(self, obj: Bot) -> SafeString:
        return bdi(obj.username)

    @admin.display(description="persona", ordering="persona__name")
    def persona_name(self, obj: Bot) -> SafeString | str:
        return bdi(obj.persona.name) if obj.persona else "—"

    @admin.display(description="AI credential", ordering="credential__name")
    def credential_name(self, obj: Bot) -> SafeString | str:
        return bdi(obj.credential) if obj.credential else "—"

    @admin.display(description="token")
    def token_hint(self, obj: Bot) -> str:
        return obj.token.hint()


def _apply(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    tasks: QuerySet[BotTask],
    service: Callable[..., BotTask],
    verb: str,
) -> None:
    """Run one service per task and report each outcome; one failure stops no other."""
    done = 0
    for task in tasks.select_related("bot"):
        try:
            task = service(task=task)
        except TaskError as error:
            modeladmin.message_user(request, str(error), messages.ERROR)
            continue
        if task.status == BotTask.Status.SCHEDULED:
            modeladmin.message_user(
                request, f"Scheduled task #{task.pk} “{task.name}”: {task.run_window()}.", messages.SUCCESS
            )
        else:
            done += 1
    if done:
        modeladmin.message_user(request, f"{verb} {done} task(s).", messages.SUCCESS)


@admin.action(description="Start selected tasks")
def start_tasks(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BotTask]) -> None:
    _apply(modeladmin, request, queryset, task_start, "Started")


@admin.action(description="Stop selected tasks")
def stop_tasks(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BotTask]) -> None:
    _apply(modeladmin, request, queryset, task_stop, "Stopped")


@admin.action(description="Restart failed tasks among the selected")
def restart_failed_tasks(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BotTask]
) -> None:
    _apply(modeladmin, request, queryset.filter(status=BotTask.Status.FAILED), task_restart, "Restarted")


class BotTaskForm(forms.ModelForm):
    """The model checks the order of the run window; the form checks that a "run until"
    the operator sets is still to come (an unchanged past one, of a completed task, stays)."""

    class Meta:
        model = BotTask
        fields = (
            "name", "bot", "use_ai", "respond_to_private", "respond_to_mentions",
            "respond_to_replies", "max_response_length", "start_at", "run_until",
            "drop_pending_updates",
        )

    def clean_run_until(self) -> datetime | None:
        run_until: datetime | None = self.cleaned_data.get("run_until")
        if run_until is not None and "run_until" in self.changed_data and run_until <= timezone.now():
            raise forms.ValidationError("“Run until” must be in the future.")
        return run_until


@admin.register(BotTask)
class BotTaskAdmin(admin.ModelAdmin):
    form = BotTaskForm
    actions = [start_tasks, stop_tasks, restart_failed_tasks]
    # One-word headers for the counters (as on the dashboard): room for names and the
    # last error at 1366 px beside the admin's two sidebars.
    list_display = (
        "task_name", "bot_name", "state", "messages", "replies", "errors", "heartbeat_at",
        "short_error",
    )
    list_filter = ("status", "use_ai")
    list_select_related = ("bot",)
    search_fields = ("name", "bot__name", "bot__username", "last_error")
    readonly_fields = (
        "status", "messages_processed", "replies_sent", "error_count", "last_error",
        "last_error_at", "heartbeat_at", "started_at", "stopped_at", "webhook_pending_updates",
        "webhook_last_error", "webhook_last_error_at", "webhook_checked_at", "created_at",
        "updated_at",
    )

    @admin.display(description="name", ordering="name")
    def task_name(self, obj: BotTask) -> SafeString:
        return bdi(obj.name)

    @admin.display(description="bot", ordering="bot__name")
    def bot_name(self, obj: BotTask) -> SafeString:
        return bdi(obj.bot)

    @admin.display(description="status", ordering="status")
    def state(self, obj: BotTask) -> SafeString:
        """The status, and under it the run window when there is one (as the dashboard
        shows them)."""
        window = obj.run_window()
        if not window:
            return format_html("{}", obj.get_status_display())
        return format_html('{}<div class="quiet">{}</div>', obj.get_status_display(), window)

    @admin.display(description="messages", ordering="messages_processed")
    def messages(self, obj: BotTask) -> int:
        return obj.messages_processed

    @admin.display(description="replies", ordering="replies_sent")
    def replies(self, obj: BotTask) -> int:
        return obj.replies_sent

    @admin.display(description="errors", ordering="error_count")
    def errors(self, obj: BotTask) -> int:
        return obj.error_count

    @admin.display(description="last error")
    def short_error(self, obj: BotTask) -> SafeString:
        error = obj.last_error if len(obj.last_error) <= 200 else obj.last_error[:199] + "…"
        return format_html('<bdi class="log-note">{}</bdi>', error)
