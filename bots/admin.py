from collections.abc import Callable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

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
            service(task=task)
            done += 1
        except TaskError as error:
            modeladmin.message_user(request, str(error), messages.ERROR)
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


@admin.register(BotTask)
class BotTaskAdmin(admin.ModelAdmin):
    actions = [start_tasks, stop_tasks, restart_failed_tasks]
    list_display = (
        "name", "bot", "status", "messages_processed", "replies_sent", "error_count",
        "last_run_at", "short_error",
    )
    list_filter = ("status", "use_ai")
    list_select_related = ("bot",)
    search_fields = ("name", "bot__name", "bot__username", "last_error")
    readonly_fields = (
        "status", "messages_processed", "replies_sent", "error_count", "last_error",
        "last_error_at", "last_run_at", "started_at", "stopped_at", "created_at", "updated_at",
    )

    @admin.display(description="last error")
    def short_error(self, obj: BotTask) -> str:
        return obj.last_error[:80]
