"""Shared bits of the task management commands."""

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.timesince import timesince

from bots.models import BotTask


def task_get(task_id: int) -> BotTask:
    try:
        return BotTask.objects.select_related("bot").get(pk=task_id)
    except BotTask.DoesNotExist:
        raise CommandError(
            f"No bot task with id {task_id}. See the ids with: manage.py start_bot_background_task --list"
        ) from None


def task_line(task: BotTask) -> str:
    heartbeat = f"{timesince(task.heartbeat_at, timezone.now())} ago" if task.heartbeat_at else "never"
    bot = f"@{task.bot.username}" if task.bot.username else task.bot.name
    line = (
        f"#{task.pk:<5} {task.name[:30]:<30} {bot[:24]:<24} {task.status:<9} "
        f"in={task.messages_processed} out={task.replies_sent} errors={task.error_count} "
        f"heartbeat={heartbeat}"
    )
    window = task.run_window()
    if window:
        line += f"\n       {window}"
    if task.last_error:
        line += f"\n       last error: {task.last_error[:200]}"
    return line
