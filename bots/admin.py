from collections.abc import Callable
from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from bots.models import Bot, BotTask
from bots.services import TaskError, task_restart, task_start, task_stop
from credentials.forms import SecretFieldsFormMixin


class BotForm(SecretFieldsFormMixin):
    class Meta:
        model = Bot
        fields = "__all__"


@admin.register(Bot)
class BotAdmin(admin.ModelAdmin):
    form = BotForm
    list_display = ("name", "username", "telegram_id", "persona", "credential", "token_hint")
    list_select_related = ("persona", "credential")
    list_filter = ("persona", "credential")
    search_fields = ("name", "username")
    readonly_fields = ("username", "telegram_id", "update_offset", "created_at", "updated_at")

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
    list_display = (
        "name", "bot", "status", "window", "messages_processed", "replies_sent", "error_count",
        "last_run_at", "short_error",
    )
    list_filter = ("status", "use_ai")
    list_select_related = ("bot",)
    search_fields = ("name", "bot__name", "bot__username", "last_error")
    readonly_fields = (
        "status", "messages_processed", "replies_sent", "error_count", "last_error",
        "last_error_at", "last_run_at", "started_at", "stopped_at", "created_at", "updated_at",
    )

    @admin.display(description="run window")
    def window(self, obj: BotTask) -> str:
        return obj.run_window() or "—"

    @admin.display(description="last error")
    def short_error(self, obj: BotTask) -> str:
        return obj.last_error[:80]
